"""The headers every answer carries, and redirects that name our public URL.

Every page runs no script and may not be framed: the Content-Security-Policy allows our own
stylesheet and forms, nothing else (no inline style or script, so injected markup stays inert).
Answers are not cached (pages with customer data: the managers' boards and cases) unless a route
says otherwise (the stylesheet). A redirect is rebuilt on ``CARELOOP_PUBLIC_URL``: the request's
Host header is the client's to choose, and must never come back in a Location.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
FIXED = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a link token in a URL never leaves in a Referer
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp, public_url: str) -> None:
        self.app = app
        self.public_url = public_url.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in FIXED.items():
                    headers[name] = value
                headers.setdefault("Cache-Control", "no-store")
                if "location" in headers:
                    headers["Location"] = self.public(headers["location"])
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def public(self, location: str) -> str:
        """The location's path and query on our public URL, whatever host it named."""
        parts = urlsplit(location)
        if not parts.path.startswith("/"):
            return location if not (parts.scheme or parts.netloc) else self.public_url + "/"
        return self.public_url + urlunsplit(("", "", parts.path, parts.query, parts.fragment))
