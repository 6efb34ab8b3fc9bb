"""The service on a real socket (uvicorn in a thread): stalled and abandoned bodies, a port already in use."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def live(tiny_model_file, tmp_path_factory):
    """``(host, port)`` of the app with a 1 s body idle timeout, served by uvicorn in a thread."""
    from clearface.serve.app import create_app
    from clearface.serve.server import bind
    app = create_app(tiny_model_file, cache_dir=tmp_path_factory.mktemp("live_cache"), body_timeout=1.0)
    sock = bind("127.0.0.1", 0)
    config = uvicorn.Config(app, log_config=None, log_level="info", timeout_keep_alive=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    try:
        yield sock.getsockname()[:2]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _partial_post(addr, declared: int, sent: bytes) -> socket.socket:
    s = socket.create_connection(addr, timeout=10)
    s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
              + f"Content-Length: {declared}\r\n\r\n".encode() + sent)
    return s


def _read_all(s: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _no_tracebacks(caplog):
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


def test_stalled_body_is_cut_off(live, caplog):
    caplog.set_level(logging.INFO)
    t0 = time.monotonic()
    with _partial_post(live, 100_000, b"\x89PNG" + b"\x00" * 96) as s:
        answer = _read_all(s)  # the server answers and closes; it does not wait for the other 99 900 bytes
    waited = time.monotonic() - t0
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"stalled" in answer and b"nosniff" in answer.lower()
    assert waited < 5, waited
    _no_tracebacks(caplog)


def test_abandoned_body_logs_no_traceback(live, caplog):
    import httpx
    caplog.set_level(logging.INFO)
    for _ in range(3):
        s = _partial_post(live, 50_000, b"\x00" * 1000)
        s.close()  # the client gives up mid-body
    time.sleep(1.5)
    assert httpx.get(f"http://{live[0]}:{live[1]}/health", timeout=10).status_code == 200
    _no_tracebacks(caplog)


def test_port_in_use_is_one_line_and_exit_2(capsys):
    from clearface.cli import main
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        t0 = time.monotonic()
        assert main(["serve", "--host", "127.0.0.1", "--port", str(port)]) == 2
        assert time.monotonic() - t0 < 10  # refused before the model is even loaded
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clearface: error: ") and "serving" not in err
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0]
