"""Signing like Twilio and SendGrid do, for tests and the service benchmark."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from twilio.request_validator import RequestValidator

PUBLIC_URL = "https://care.example.com"
AUTH_TOKEN = "service-test-token"


class SendGridSigner:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_key(self) -> str:
        """Base64 DER, as the SendGrid console shows it."""
        der = self.key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def headers(self, body: str, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        signature = self.key.sign((stamp + body).encode(), ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "Content-Type": "application/json",
        }


def twilio_post(
    path: str, form: dict[str, str], token: str = AUTH_TOKEN, signed_url: str | None = None
) -> dict[str, Any]:
    """The body and headers of a Twilio webhook POST to ``path``."""
    url = signed_url or PUBLIC_URL + path
    signature = RequestValidator(token).compute_signature(url, form)
    return {
        "content": urlencode(form),
        "headers": {
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    }


def sid(prefix: str, label: object) -> str:
    """A SID of Twilio's shape (SM, MM or CA and 32 hex digits) for any label."""
    return prefix + hashlib.md5(str(label).encode()).hexdigest()


def sms_form(sid: str, sender: str, body: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "To": "+15550001111",
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
    }


def events_body(events: list[dict[str, Any]]) -> str:
    return json.dumps(events)
