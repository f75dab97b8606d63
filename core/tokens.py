"""Signed, expiring tokens scoped to one care action (rating links, one-click unsubscribe) or to
one store (a manager's sign-in link, which also says when it was issued)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta


class TokenError(ValueError):
    pass


@dataclass(frozen=True)
class LinkToken:
    action_id: str
    purpose: str  # "rate" | "unsubscribe" | "manager"
    score: int | None
    expires: int  # unix seconds
    # Unix milliseconds; sign-in links carry it, so a store's new manager can refuse the old
    # links. Links without it (rating, unsubscribe) keep their four-field form.
    issued: int | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(token: LinkToken, secret: str) -> str:
    fields: list[object] = [token.action_id, token.purpose, token.score, token.expires]
    if token.issued is not None:
        fields.append(token.issued)
    payload = _b64(json.dumps(fields, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:18]
    return f"{payload}.{_b64(mac)}"


def verify(text: str, secret: str, now: datetime) -> LinkToken:
    """The token's content, or TokenError if it was forged, altered or has expired."""
    if not text.isascii():  # a token is base64url: anything else is not ours
        raise TokenError("malformed token")
    payload, _, mac = text.partition(".")
    expected = _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:18])
    if not mac or not hmac.compare_digest(mac, expected):
        raise TokenError("bad signature")
    try:
        action_id, purpose, score, expires, *rest = json.loads(_unb64(payload))
        issued = int(rest[0]) if rest else None
    except (ValueError, TypeError):
        raise TokenError("malformed token") from None
    if now.timestamp() > expires:
        raise TokenError("expired")
    return LinkToken(action_id, purpose, score, int(expires), issued)


# How long a rating link takes a rating: the service refuses the form after, so the same
# rating posted again comes within this of the first (feedback.ingest counts it once, and
# campaigns.send_time settles a day's sends after it). Fixed, not a setting: both rely on it.
RATING_LINK_LIFETIME = timedelta(days=14)


def rating_links(
    action_id: str,
    base_url: str,
    secret: str,
    issued: datetime,
    valid_for: timedelta = RATING_LINK_LIFETIME,
) -> dict[int, str]:
    expires = int((issued + valid_for).timestamp())
    return {
        score: f"{base_url}/r/{sign(LinkToken(action_id, 'rate', score, expires), secret)}"
        for score in range(1, 6)
    }


def unsubscribe_link(
    action_id: str,
    base_url: str,
    secret: str,
    issued: datetime,
    valid_for: timedelta = timedelta(days=60),
) -> str:
    expires = int((issued + valid_for).timestamp())
    token = sign(LinkToken(action_id, "unsubscribe", None, expires), secret)
    return f"{base_url}/unsubscribe/{token}"


def manager_link(
    store_id: str, base_url: str, secret: str, issued: datetime, valid_for: timedelta
) -> str:
    """A store manager's personal sign-in link (the token's subject is the store)."""
    expires = int((issued + valid_for).timestamp())
    token = LinkToken(store_id, "manager", None, expires, int(issued.timestamp() * 1000))
    return f"{base_url}/m/login/{sign(token, secret)}"
