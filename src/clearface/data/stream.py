"""Decode a zip/folder chunk by chunk in a background thread while the caller uses the chunks done.

``predict`` used to decode every file, then score them: on 2 cores the decoding (zip read, JPEG
decode, checks) was ~20 % of its time. Here chunk k+1 decodes while chunk k scores.

Why a thread, not a worker process of :mod:`clearface.data.pool`: onnxruntime (and torch) release
the GIL while they score, so the thread decodes meanwhile; it writes straight into the caller's
array (a process would pickle every chunk back, measured slower on 2 cores), opens the zip once,
and cannot outlive the command whatever ends it. Memory stays flat: at most ``ahead`` chunks are
decoded beyond the one in use, all into the final array (no queue of copies).

On 2 cores both are busy scoring, so the decoder's CPU is taken from the scoring: the decoding is
kept cheap (simplejpeg, about 25 us a crop instead of PIL's 90, :func:`clearface.data.ingest.decode_image`)
and the scoring session does not spin (``load_engine(..., spin_wait=False)``), so that its idle
threads leave the core to the decoder instead of busy-waiting on it.
"""

from __future__ import annotations

import mmap
from collections import deque
from collections.abc import Callable

import numpy as np

from .ingest import SIZE, decode_into, decode_step, entry_reader


def prefaulted_images(n: int) -> np.ndarray:
    """An ``n x 3 x 64 x 64`` uint8 array (contents undefined) whose pages are mapped at once
    (``MAP_POPULATE``), not one page fault at a time while the decoder first writes them: on this
    VM those faults, taken beside the scoring threads, cost a fresh ``predict`` 1.7 s of system
    time on 20,000 images, and mapping the 245 MB up front costs 0.08 s (stream 17.0 vs 18.7 s)."""
    shape = (int(n), 3, SIZE, SIZE)
    size = int(np.prod(shape))
    if not size or not hasattr(mmap, "MAP_POPULATE"):  # empty, or not Linux
        return np.empty(shape, np.uint8)
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE)
    return np.frombuffer(buf, np.uint8).reshape(shape)  # the array keeps the mapping alive


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
