"""A small HTTP server on a daemon thread for operators: ``/metrics``, ``/healthz`` and ``/readyz``."""

from __future__ import annotations

import json
import selectors
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Self, TypeAlias

from prometheus_client.exposition import choose_encoder

from worker.errors import ConfigError

if TYPE_CHECKING:
    from types import TracebackType

    from prometheus_client import CollectorRegistry

__all__ = ["HealthServer", "Readiness", "ReadinessCheck"]

ReadinessCheck: TypeAlias = Callable[[], tuple[bool, str]]
"""Answers (ready, detail); ``detail`` is a short operator-facing reason and must carry no record data."""


class Readiness:
    """A ``ReadinessCheck`` answering "connecting to Kafka" until ``check`` is set (to the worker's own)."""

    def __init__(self) -> None:
        self.check: ReadinessCheck = lambda: (False, "connecting to Kafka")

    def __call__(self) -> tuple[bool, str]:
        """Answer (ready, detail) with the current check."""
        return self.check()


_READY_DETAIL_MAX = 200


class _Server(ThreadingHTTPServer):
    """The stdlib server, carrying what the handler serves."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], registry: CollectorRegistry, readiness: ReadinessCheck
    ) -> None:
        # ``serve_forever`` wakes every ``poll_interval`` to look for a stop request: 20 wake-ups a
        # second at 50 ms, each taking the GIL from the claims loop while nobody calls the server.
        # ``serve`` instead blocks until a connection or ``wake`` (a byte on this pair) arrives.
        # Made first: a failed bind closes the server (and this pair) inside ``super().__init__``.
        self._wake_read, self._wake_write = socket.socketpair()
        super().__init__(address, _Handler)
        self.registry = registry
        self.readiness = readiness
        # Non-blocking listener: ``handle_request`` then never waits on its own (a client gone before
        # the accept must not keep ``serve`` from seeing ``wake``); each answer's socket has its own timeout.
        self.socket.settimeout(0)

    def serve(self) -> None:
        """Answer connections until ``wake`` is called; sleeps (no timeout) between them."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_read in ready:
                    return
                self.handle_request()  # the listening socket is readable: accept and answer one

    def wake(self) -> None:
        """Make ``serve`` return (from any thread)."""
        self._wake_write.send(b"\0")

    def server_close(self) -> None:
        """Close the listening socket and the wake-up pair."""
        super().server_close()
        self._wake_read.close()
        self._wake_write.close()


class _Handler(BaseHTTPRequestHandler):
    """Serves the three endpoints; anything else is 404."""

    # A stalled client must not hold a handler thread for ever.
    timeout = 10
    server: _Server

    def do_GET(self) -> None:
        """Route a GET request by path (query strings are ignored)."""
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._metrics()
        elif path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/readyz":
            self._readyz()
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _metrics(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        self._send(HTTPStatus.OK, encoder(self.server.registry), content_type)

    def _readyz(self) -> None:
        try:
            ready, detail = self.server.readiness()
        except Exception as exc:  # noqa: BLE001 - a failing check means "not ready", never a crash
            ready, detail = False, f"readiness check raised {type(exc).__name__}"
        body = json.dumps({"ready": ready, "detail": detail[:_READY_DETAIL_MAX]}).encode() + b"\n"
        status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
        self._send(status, body, "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's parameter name
        """Stay quiet: scrapes and probes every few seconds would flood stderr."""


class HealthServer:
    """Serves ``/metrics`` from ``registry``, ``/healthz`` and ``/readyz`` (from ``readiness``).

    ``port=0`` binds a free port; ``port`` tells which one after ``start``. Use ``start``/``stop``
    or a ``with`` block.
    """

    __slots__ = ("_host", "_port", "_readiness", "_registry", "_server", "_thread")

    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: ReadinessCheck,
        host: str = "127.0.0.1",
        port: int = 9400,
    ) -> None:
        self._registry = registry
        self._readiness = readiness
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port once started, else the requested one."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._port

    def start(self) -> int:
        """Bind, start serving on a daemon thread and return the bound port.

        Raises ``ConfigError`` (exit 2) when the address cannot be bound, e.g. the port is in use, and
        ``RuntimeError`` when already started.
        """
        if self._server is not None:
            msg = "health server already started"
            raise RuntimeError(msg)
        try:
            self._server = _Server((self._host, self._port), self._registry, self._readiness)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            msg = (
                f"cannot serve metrics on {self._host}:{self._port}: {reason}"
                " (set CLAIMS_METRICS_HOST / CLAIMS_METRICS_PORT; 0 picks a free port)"
            )
            raise ConfigError(msg) from None
        self._thread = threading.Thread(target=self._server.serve, name="health-server", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop serving and close the socket; a no-op when not started."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None:
            return
        server.wake()
        if thread is not None:
            thread.join()
        server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
