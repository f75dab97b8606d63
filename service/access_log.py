"""One line per request: client, method, path, status, time taken, with nothing personal.

Link tokens in paths are cut to their first characters (a whole token is a working link) and
phone numbers and addresses anywhere in the line are masked. Lines go through a queue to a
thread that writes them, so a slow terminal or disk never stalls the event loop.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from logging.handlers import QueueHandler, QueueListener
from queue import SimpleQueue
from typing import Any

from core.masking import mask_phone, mask_text

log = logging.getLogger("careloop.access")
TOKEN_PATH = re.compile(r"^/(r|unsubscribe|m/login)/([^/]{8})[^/]*")

Scope = dict[str, Any]


# What would end a line, forge its fields or turn its text around (a decoded %0A, %00, %20,
# a space that looks like one, or a bidi or invisible format character in the path): written
# as escapes.
CONTROL = re.compile(
    "[\x00-\x20\x7f-\xa0\u00ad\u061c\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f"
    "\u3000\ufeff\U000e0000-\U000e007f]"
)


# A phone in a path however it is written: 7 digits or more, each group of them joined to the
# next by up to two of the separators people and forms put in a number (138-1234-5678,
# (212) 555-0123, +1(212)555-0123, 138_1234_5678, 86_138…, full-width or no-break spaces),
# after letters too ("tel13812345678", a double-encoded "%2B86…"). An action id's date
# (ca_20270301…) stays readable; a date and a time next to each other would be masked.
_NUMBER_SEPARATORS = "\\-\u2010-\u2015\uff0d.:,/_+() \t\u00a0\u2000-\u200a\u202f\u3000"
BARE_NUMBER = re.compile(
    rf"(?<![0-9])(?<!ca_)\+?\(?[0-9](?:[{_NUMBER_SEPARATORS}]{{0,2}}[0-9]){{6,}}\)?"
)


def shown_path(path: str) -> str:
    """The request's path as the log shows it: link tokens cut, phones and emails masked,
    control characters escaped so a request is one line, whatever its path holds."""
    # masked before the escapes, whose hex digits would join a number that follows them
    bare_masked = BARE_NUMBER.sub(lambda found: mask_phone(found.group()), path)
    escaped = CONTROL.sub(_escape, bare_masked)
    return mask_text(TOKEN_PATH.sub(r"/\1/\2…", escaped))


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class AccessLog:
    """ASGI middleware writing the access log (HTTP requests only)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def record_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            client = scope.get("client") or ("-", 0)
            log.info(
                "%s %s %s %d %.1fms",
                client[0],
                scope["method"],
                shown_path(scope["path"]),
                status,
                (time.perf_counter() - started) * 1000,
            )


@contextmanager
def access_logging() -> Iterator[None]:
    """Access lines to standard error, written by a thread of their own."""
    queue: SimpleQueue[logging.LogRecord] = SimpleQueue()
    writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    listener = QueueListener(queue, writer)
    log.addHandler(QueueHandler(queue))
    log.setLevel(logging.INFO)
    log.propagate = False
    listener.start()
    try:
        yield
    finally:
        listener.stop()
