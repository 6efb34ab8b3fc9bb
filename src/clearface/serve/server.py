"""``clearface serve``: take the port first, then load the model, then say where it serves.

The listening socket is bound before anything is printed, so a port in use (or a bad host or
port) is one ``clearface: error: ...`` line and exit 2, never "serving on ..." followed by a
crash. uvicorn then serves on that very socket (no second bind, no race).
"""

from __future__ import annotations

import socket
import sys
from contextlib import contextmanager

from ..errors import ClearfaceError

KEEP_ALIVE_S = 5        # idle keep-alive connections are closed after this
MAX_CONNECTIONS = 64    # uvicorn answers 503 beyond this many open connections


def tune_malloc() -> None:
    """Keep a long-running server's memory flat under glibc: few arenas, big buffers straight from mmap.

    Photos decode into buffers of tens of MB on worker threads. With glibc's defaults every thread
    may get its own arena and the mmap threshold rises after the first big free, so such buffers
    end up in arenas that never shrink: RSS climbs with each new thread and stays up. Two arenas
    and a fixed 1 MB mmap threshold return the big buffers to the system when freed.
    """
    from .limits import libc
    try:
        c = libc()
        c.mallopt(-8, 2)            # M_ARENA_MAX
        c.mallopt(-3, 1024 * 1024)  # M_MMAP_THRESHOLD (also stops its dynamic growth)
        c.mallopt(-1, 4 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc (macOS, musl): their allocators behave differently
        pass


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; ClearfaceError naming what is wrong."""
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ClearfaceError(f"--port {port}: not a TCP port (0-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ClearfaceError(f"--host {host}: cannot resolve ({exc})") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        why = "port already in use" if exc.errno in (98, 48, 10048) else (exc.strerror or str(exc))
        raise ClearfaceError(f"cannot serve on {host}:{port}: {why}") from None
    sock.set_inheritable(True)
    return sock


def run_server(model_path=None, host: str = "127.0.0.1", port: int = 8000, engine: str = "auto",
               log_level: str = "info", preprocess: str | None = None) -> None:
    """Bind, load the model (its errors surface before serving), print where, serve until interrupted."""
    import uvicorn

    from .app import create_app
    sock = bind(host, port)
    tune_malloc()
    try:
        app = create_app(model_path, engine=engine, preprocess=preprocess)
        svc = app.state.service
        shown_port = sock.getsockname()[1]
        print(f"clearface: serving {svc.info.get('model')} ({svc.info.get('engine')}; tau {svc.threshold:.6f}) "
              f"on http://{host}:{shown_port}/", file=sys.stderr)
        config = uvicorn.Config(app, log_level=log_level, timeout_keep_alive=KEEP_ALIVE_S,
                                limit_concurrency=MAX_CONNECTIONS, timeout_graceful_shutdown=5)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def spawned(args=(), log_path=None, env=None, startup_timeout: float = 180):
    """``clearface serve ARGS`` in a subprocess on a free loopback port, for tests and benchmarks.

    Yields ``(base_url, health, process)`` once ``/health`` answers; the server is stopped on exit.
    Output goes to ``log_path`` (default: discarded). Raises RuntimeError, with the log's tail,
    when the server exits or does not come up in ``startup_timeout`` seconds.
    """
    import json
    import subprocess
    import time
    import urllib.error
    import urllib.request
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "clearface.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    finally:
        if log_path:
            out.close()

    def tail() -> str:
        return open(log_path, errors="replace").read()[-2000:] if log_path else ""

    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited ({proc.returncode}): {tail()}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    health = json.loads(r.read())
                break
            except (urllib.error.URLError, OSError, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not come up in {startup_timeout:.0f} s: {tail()}") from None
                time.sleep(0.3)
        yield base, health, proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
