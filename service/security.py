"""Verify that a webhook really comes from Twilio or SendGrid; anything else gets 403."""

from __future__ import annotations

import hmac
import re
import time
from dataclasses import dataclass

from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator

TWILIO_SIGNATURE = "X-Twilio-Signature"
SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


# Twilio's SIDs. Twilio signs the URL followed by each key and value run together, so a
# captured request whose field boundary is moved (MessageSid absorbing the next field) keeps a
# valid signature: a SID must have its exact shape, and a signature seen before may never come
# back with another SID (see InboxWriter).
MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-f]{32}$")
CALL_SID = re.compile(r"^CA[0-9a-f]{32}$")
TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


class Forbidden(Exception):  # noqa: N818 - named for the HTTP status it becomes
    """The request is not verified; it is answered 403 and stored nowhere."""


def twilio_sid(form: dict[str, str], *fields: str) -> str:
    """The first of ``fields`` present in the form, checked against Twilio's SID shapes."""
    for name in fields:
        value = form.get(name)
        if value is None:
            continue
        pattern = CALL_SID if name == "CallSid" else MESSAGE_SID
        if not pattern.match(value):
            raise Forbidden(f"{name} is not a Twilio SID")
        return value
    raise Forbidden(f"no {' or '.join(fields)}")


@dataclass
class TwilioVerifier:
    auth_token: str
    public_url: str

    def __post_init__(self) -> None:
        self._validator = RequestValidator(self.auth_token)

    def __repr__(self) -> str:
        return f"TwilioVerifier(public_url={self.public_url!r})"

    def check(self, path: str, query: str, form: dict[str, str], signature: str | None) -> None:
        """Twilio signs the URL as it called it: behind a proxy, our public URL plus the path."""
        url = self.public_url.rstrip("/") + path + (f"?{query}" if query else "")
        # The SDK's own signature, computed once for the one URL we serve (validate() would
        # also try the URL with and without a port: two HMACs per request).
        expected = self._validator.compute_signature(url, form)
        if not signature or not hmac.compare_digest(expected, signature):
            raise Forbidden("bad Twilio signature")


@dataclass
class SendGridVerifier:
    public_key: str
    tolerance_seconds: int

    def __post_init__(self) -> None:
        self._webhook = EventWebhook(self.public_key)

    def check(
        self, body: str, signature: str | None, timestamp: str | None, now: float | None = None
    ) -> None:
        """A valid signature over timestamp + body, and a timestamp recent enough that an old
        signed batch replayed later is refused too."""
        if not signature or not timestamp or not TIMESTAMP.match(timestamp):
            raise Forbidden("missing or malformed SendGrid signature headers")
        if abs((now or time.time()) - int(timestamp)) > self.tolerance_seconds:
            raise Forbidden("SendGrid timestamp outside the tolerance (a replay?)")
        try:
            valid = self._webhook.verify_signature(body, signature, timestamp)
        except (ValueError, TypeError, IndexError):  # a malformed signature is a bad one
            valid = False
        if not valid:
            raise Forbidden("bad SendGrid signature")
