"""Limits before work: a request body is refused on its size before it is read, and must
arrive within a time limit, so one client can neither fill memory nor hold the service.

Provider webhooks are small (a Twilio form is a few hundred bytes; a SendGrid batch at most a
few MB), so the limits are generous for them and tiny for anyone else.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

from starlette.requests import Request

TWILIO_FORM_LIMIT = 64 * 1024
SENDGRID_BATCH_LIMIT = 5 * 1024 * 1024
PAGE_FORM_LIMIT = 16 * 1024  # the rating page's comment and the unsubscribe button
# Bodies above this are parsed and checked on a worker thread, away from the event loop.
OFF_LOOP_ABOVE = 8 * 1024


class RequestRefusedError(Exception):
    """A request refused before any work, with the status it gets and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, or RequestRefusedError: 413 over ``limit`` (by its Content-Length,
    before reading, else as it streams), 408 when it does not arrive within ``timeout``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit() or len(declared) > 12:
            raise RequestRefusedError(400, "malformed Content-Length")
        if int(declared) > limit:
            raise RequestRefusedError(413, f"body over {limit} bytes")
    try:
        async with asyncio.timeout(timeout):
            return await _gather(request, limit)
    except TimeoutError:
        raise RequestRefusedError(408, f"body not received within {timeout:g} s") from None


async def _gather(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestRefusedError(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_form(body: bytes, max_fields: int) -> dict[str, str]:
    """A urlencoded form of UTF-8 fields, or 400: never a 500 for what a client sent."""
    try:
        text = body.decode("utf-8")
        return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=max_fields))
    except (UnicodeDecodeError, ValueError):
        raise RequestRefusedError(400, "not a form of UTF-8 fields") from None
