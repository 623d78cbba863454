"""The HTTP server around the app: uvicorn with the limits a service exposed to hostile clients needs.

uvicorn's httptools protocol buffers a request line and headers of any size for as long as the client
takes, and on shutdown closes idle keep-alive connections under the feet of clients about to reuse them.
``GuardedHttpToolsProtocol`` adds what nginx and Envoy do:

- a request's line and headers may take at most SENTIMENT_MAX_HEADER_BYTES bytes and SENTIMENT_MAX_HEADERS
  fields (431, then the connection closes: nothing more is buffered), and at most SENTIMENT_HEADER_TIMEOUT_S
  seconds to arrive (408, closed); the body's own deadline is the request lifecycle's (service.lifecycle);
- on shutdown an idle keep-alive connection stays open for DRAIN_IDLE_S: a request that arrives on it is
  answered (503 from a draining engine) with ``Connection: close`` instead of meeting a reset.

``Server`` exits 0 after a SIGTERM (uvicorn re-raises the signal after its shutdown, which makes the
process exit 143). Several processes are supervised by ``service.supervisor``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Generator
from dataclasses import dataclass
from functools import cache
from typing import Any

import httptools
from uvicorn import Server as UvicornServer
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import HANDLED_SIGNALS

from service.config import Settings

DRAIN_IDLE_S = 2.0  # how long an idle keep-alive connection stays open once the server shuts down


@dataclass(frozen=True)
class HeaderLimits:
    max_bytes: int
    max_fields: int
    timeout_s: float


@cache
def header_limits() -> HeaderLimits:
    """From the SENTIMENT_* environment, once per process (every connection asks)."""
    s = Settings()
    return HeaderLimits(s.max_header_bytes, s.max_headers, s.header_timeout_s)


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a request that is being refused."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = header_limits()
        self._in_headers = True  # bytes now arriving belong to a request's line and headers
        self._header_bytes = 0
        self._header_fields = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._draining = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._in_headers:
            self._header_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if not self.transport.is_closing():  # a refusal has answered and closed already
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        if self._in_headers and self._header_bytes > self.limits.max_bytes:
            self._refuse(431, f"request line and headers over {self.limits.max_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_fields += 1
        if self._header_fields > self.limits.max_fields:
            self._refuse(431, f"more than {self.limits.max_fields} header fields")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm_header_timer()
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered with Connection: close

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_headers, self._header_bytes, self._header_fields = True, 0, 0

    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._draining = True
            self.loop.call_later(DRAIN_IDLE_S, self._close_if_idle)
        else:
            self.cycle.keep_alive = False

    def _close_if_idle(self) -> None:
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()
        elif self.cycle is not None:
            self.cycle.keep_alive = False

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.limits.timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._in_headers and self._header_bytes and not self.transport.is_closing():
            self._refuse(408, f"the request's headers did not arrive within {self.limits.timeout_s} s")
        elif self._in_headers and not self.transport.is_closing():
            self.transport.close()  # connected and sent nothing: nobody to answer

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with a plain-text reason and close the connection."""
        if self.transport.is_closing():
            return
        body = message.encode()
        head = b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        self.transport.write(STATUS_LINE[status] + head % len(body) + body)
        self.transport.close()
        self.logger.info("refused a request: %s", message)


class Server(UvicornServer):
    """uvicorn's server, without re-raising the signal that stopped it (a SIGTERM'd service exits 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
