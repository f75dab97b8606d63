"""Connections that cannot pin the service: a head (request line and headers) must arrive in
time, and one client address holds a bounded number of connections.

uvicorn limits the body only through the app (service.limits) and idle keep-alive connections
(``timeout_keep_alive``); it has no limit on how long a head may take, nor a per-client one, so
a client trickling header lines held a connection for as long as it liked. Its HTTP protocol
(httptools) is extended here, at the socket, where the head is read.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TOO_SLOW = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 33\r\nconnection: close\r\n\r\nrequest head not received in time"
)


def guarded_http(head_timeout: float, per_client: int) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP protocol with the head timeout and the per-client connection limit."""
    held: Counter[str] = Counter()  # connections open per client address, in this process

    class GuardedHttp(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _head_begun = False
        _counted: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            address = self.client[0] if self.client else ""
            if held[address] >= per_client:
                transport.close()  # before reading a byte: the client sees the close
                return
            held[address] += 1
            self._counted = address
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            if self._counted is not None:
                held[self._counted] -= 1
                if held[self._counted] <= 0:
                    del held[self._counted]
                self._counted = None
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            self._head_begun = True
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._stop_waiting()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            next_is_here = bool(self.pipeline)  # a pipelined head was read already
            super().on_response_complete()
            if not next_is_here and not self.transport.is_closing():
                self._await_head()

        def _await_head(self) -> None:
            self._stop_waiting()
            self._head_begun = False
            self._head_timer = self.loop.call_later(head_timeout, self._head_too_slow)

        def _stop_waiting(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self._head_begun:  # a head in progress gets its answer; an idle one just ends
                self.transport.write(TOO_SLOW)
            self.transport.close()

    return GuardedHttp
