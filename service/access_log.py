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
# or a bidi or invisible format character in the path): written as escapes.
CONTROL = re.compile(
    "[\x00-\x20\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff"
    "\U000e0000-\U000e007f]"
)


# A phone in a path however it is written: a run of 7 digits or more (13812345678, with its
# 0086 or after a letter, as "tel13812345678" or a double-encoded "%2B86…" leaves it), or
# groups split by dashes, dots or spaces (138-1234-5678, +86 138 1234 5678). Ids that carry
# digits are joined by an underscore (ca_20270301…) and stay readable; a date's or an
# address's groups of one or two digits are not a phone's.
BARE_NUMBER = re.compile(r"(?<![0-9_])(?:\d{7,}|\d{2,4}(?:[-. ]\d{3,4}){2,3})(?![0-9])")


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
