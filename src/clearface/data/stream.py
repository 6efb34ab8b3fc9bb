"""Decode a zip/folder chunk by chunk in a background thread while the caller uses the chunks done.

``predict`` used to decode every file, then score them: on 2 cores the decoding (zip read, JPEG
decode, checks) was ~20 % of its time. Here chunk k+1 decodes while chunk k scores.

Why a thread, not a worker process of :mod:`clearface.data.pool`: onnxruntime (and torch) release
the GIL while they score, so the thread decodes meanwhile; it writes straight into the caller's
array (a process would pickle every chunk back, measured slower on 2 cores), opens the zip once,
and cannot outlive the command whatever ends it. Memory stays flat: at most ``ahead`` chunks are
decoded beyond the one in use, all into the final array (no queue of copies).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from .ingest import decode_into, decode_step, entry_reader


def decode_while(path, names: list[str], step: str, out: np.ndarray, consume: Callable,
                 chunk: int = 512, ahead: int = 2) -> list:
    """Decode ``names`` into ``out`` (``len(names) x 3 x 64 x 64`` uint8) in chunks of ``chunk``,
    calling ``consume(out[span])`` on each, in order, while the next ``ahead`` chunks decode.
    Returns ``consume``'s results, in order.

    A file that does not decode raises its :class:`ClearfaceError` (naming the file) when its chunk
    is reached, the first bad file first, as the one-pass decode does. If ``consume`` raises, the
    chunks not started are dropped and the one decoding is waited for (a fraction of a second).
    """
    from concurrent.futures import ThreadPoolExecutor
    step = decode_step(step)
    chunk, ahead = max(1, int(chunk)), max(1, int(ahead))
    spans = [slice(a, min(a + chunk, len(names))) for a in range(0, len(names), chunk)]
    results = []
    with entry_reader(path) as read, ThreadPoolExecutor(1, thread_name_prefix="clearface-decode") as pool:
        def submit(span: slice):
            return pool.submit(decode_into, read, names[span], step, out[span])

        pending = deque(submit(s) for s in spans[:ahead])
        try:
            for k, span in enumerate(spans):
                pending.popleft().result()
                if k + ahead < len(spans):
                    pending.append(submit(spans[k + ahead]))
                results.append(consume(out[span]))
        finally:
            for fut in pending:
                fut.cancel()
    return results
