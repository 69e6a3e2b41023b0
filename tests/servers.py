"""The one way the tests serve an ASGI app on a real socket: uvicorn in a thread on 127.0.0.1.

    with serve(app) as url: ...                                  # a free port, stopped on exit
    server = ThreadedServer(app, name="fake-qdrant"); server.start(); server.stop(); server.start()
    with serve(app, config=uvicorn_config(app, settings, "127.0.0.1", 0)) as url: ...   # sanad serve's config
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


def free_port() -> int:
    """A port nothing listens on (closed again: for a process that binds it itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadedServer:
    """``app`` served by uvicorn in a daemon thread. ``port=0`` takes a free port the first time and
    keeps it across :meth:`stop` / :meth:`start` (a restarted fake is found where it was)."""

    def __init__(self, app: Any = None, *, config: uvicorn.Config | None = None, host: str = "127.0.0.1",
                 port: int = 0, name: str = "server", **options: Any) -> None:
        if config is None:
            options = {"log_level": "warning", "lifespan": "off", "http": "h11", "ws": "none",
                       "timeout_graceful_shutdown": 1, **options}
            config = uvicorn.Config(app, **options)
        self.config = config
        self.host = host
        self.port = port
        self.name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, timeout: float = 10.0) -> str:
        if self._server is not None:
            return self.url
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(self.config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"{self.name}-{self.port}",
                                  daemon=True)
        thread.start()
        self._server, self._thread, self._sock = server, thread, sock
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start on {self.url}")
            time.sleep(0.01)
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        server, thread, sock = self._server, self._thread, self._sock
        self._server = self._thread = self._sock = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=timeout)
        if sock is not None:
            sock.close()


@contextlib.contextmanager
def serve(app: Any = None, *, timeout: float = 10.0, **kwargs: Any) -> Iterator[str]:
    """``app`` served for the ``with`` block; yields its URL."""
    server = ThreadedServer(app, **kwargs)
    server.start(timeout)
    try:
        yield server.url
    finally:
        server.stop()
