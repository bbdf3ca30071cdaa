"""Serving from inside a Python process (a notebook, a test, a benchmark): the app on uvicorn
in a background thread, for as long as a ``with`` block runs."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def serving(application, host: str = "127.0.0.1", port: int | None = None, timeout_s: float = 30):
    """Run ``application`` (e.g. :func:`autotts.serving.app`) on ``host:port`` (a free port by
    default) in a thread; yields its base URL (``http://HOST:PORT``, the API under ``/v1``)."""
    import uvicorn

    port = port or free_port(host)
    config = uvicorn.Config(application, host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="autotts-serve")
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)


__all__ = ["free_port", "serving"]
