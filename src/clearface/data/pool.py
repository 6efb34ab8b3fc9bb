"""Worker processes that never outlive the command that started them.

A decode pool's workers are forked children. Three ways they could be left behind, and what ends them:

- the parent is killed (kill -9, OOM killer, SIGTERM without Python clean-up): each worker asked
  the kernel for SIGKILL on its parent's death (Linux ``prctl(PR_SET_PDEATHSIG)``), and checks at
  start that the parent it was forked for is still there (the parent may die before the prctl);
- the parent gets an exception, e.g. KeyboardInterrupt on SIGINT, or a worker's ClearfaceError:
  :func:`process_pool` kills the workers instead of waiting for their queued work;
- the parent is stopped by SIGTERM while Python still runs: :func:`process_pool` turns SIGTERM
  into an exception for the duration (main thread only), so the point above applies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Pool initializer: SIGKILL this worker when its parent dies (Linux), and never outlive it."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the prctl took effect
        os._exit(1)
    # The parent handles Ctrl-C; a worker hit by the terminal's SIGINT just stops with it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        with contextlib.suppress(Exception):
            p.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(timeout=5)


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread while a pool runs."""


@contextlib.contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    """Only where SIGTERM would kill outright (default handler, main thread); others keep theirs."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def raise_terminated(signum, frame):
        raise _Terminated()

    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # the workers are gone: now end as SIGTERM would have
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def process_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A fork-based ``ProcessPoolExecutor`` whose workers end with the caller, however it ends."""
    import multiprocessing as mp
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with _sigterm_as_exception():
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_die_with_parent,
                                   initargs=(os.getpid(),))
        try:
            yield pool
        except BaseException:
            _kill_workers(pool)
            raise
        pool.shutdown(wait=True)
