"""Email through the SendGrid SDK: v3 mail send with up to 1000 personalizations per request.

Each personalization carries its own subject and body (as substitutions), the care action id
in ``custom_args`` (events come back with it), and RFC 8058 one-click unsubscribe headers.
Addresses are checked before sending; if SendGrid still refuses a batch (400), it is split in
halves until the bad address stands alone, so one bad recipient never sinks the others.
SendGrid cannot be asked what it accepted, so a timeout leaves the batch unconfirmed until its
events arrive.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar

from email_validator import EmailNotValidError, validate_email
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Content,
    CustomArg,
    From,
    Header,
    Mail,
    Personalization,
    Substitution,
    To,
)

from campaigns.channels.base import OutboundMessage, Provider, SendResult
from campaigns.channels.limits import backoff_seconds
from feedback.inbox import Inbox

SUBJECT_TAG, BODY_TAG = "-care_subject-", "-care_body-"


@dataclass(frozen=True)
class SendGridConfig:
    api_key: str
    base_url: str
    sender: str
    public_url: str
    timeout: float

    def __repr__(self) -> str:  # the key never prints
        return f"SendGridConfig(base_url={self.base_url!r}, sender={self.sender!r})"


class SendGridEmail(Provider):
    name: ClassVar[str] = "sendgrid"
    channels: ClassVar[frozenset[str]] = frozenset({"email"})
    max_batch: ClassVar[int] = 1000
    max_attempts: ClassVar[int] = 4
    # Events (processed, delivered) confirm a send; wait this long for them after a crash.
    reconcile_grace: ClassVar[timedelta] = timedelta(minutes=15)

    def __init__(self, config: SendGridConfig, inbox: Inbox) -> None:
        self.config = config
        self.inbox = inbox
        self.client = SendGridAPIClient(api_key=config.api_key, host=config.base_url)
        self.client.client.timeout = config.timeout

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        results: dict[str, SendResult] = {}
        valid = []
        for message in messages:
            if _deliverable_syntax(message.recipient):
                valid.append(message)
            else:
                results[message.action_id] = SendResult(
                    message.action_id, error_code="invalid_email", error="not a valid address"
                )
        self._send_batch(valid, results)
        return [results[m.action_id] for m in messages]

    def _send_batch(self, batch: Sequence[OutboundMessage], results: dict[str, SendResult]) -> None:
        if not batch:
            return
        for attempt in range(self.max_attempts):
            try:
                response = self.client.send(self.mail(batch))
            except HTTPError as exc:
                status = int(getattr(exc, "status_code", 0) or 0)
                if status == 429 or status >= 500:
                    headers = getattr(exc, "headers", None) or {}
                    time.sleep(backoff_seconds(attempt, headers.get("Retry-After")))
                    continue
                self._refused(batch, results, status, exc)
                return
            except (urllib.error.URLError, TimeoutError, OSError):
                for message in batch:  # it may have gone: wait for its events
                    results[message.action_id] = SendResult(
                        message.action_id, error_code="timeout", unconfirmed=True
                    )
                return
            message_id = response.headers.get("X-Message-Id") or ""
            for message in batch:
                results[message.action_id] = SendResult(message.action_id, provider_id=message_id)
            return
        for message in batch:
            results[message.action_id] = SendResult(
                message.action_id, error_code="retries_exhausted", retryable=True
            )

    def _refused(
        self,
        batch: Sequence[OutboundMessage],
        results: dict[str, SendResult],
        status: int,
        exc: HTTPError,
    ) -> None:
        if len(batch) > 1:
            middle = len(batch) // 2
            self._send_batch(batch[:middle], results)
            self._send_batch(batch[middle:], results)
            return
        body = getattr(exc, "body", b"") or b""
        detail = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
        results[batch[0].action_id] = SendResult(
            batch[0].action_id, error_code=str(status), error=detail[:200]
        )

    def mail(self, batch: Sequence[OutboundMessage]) -> Mail:
        mail = Mail()
        mail.from_email = From(self.config.sender)
        mail.subject = SUBJECT_TAG
        mail.add_content(Content("text/plain", BODY_TAG))
        for message in batch:
            unsubscribe = f"{self.config.public_url}/unsubscribe/{message.action_id}"
            person = Personalization()
            person.add_to(To(message.recipient))
            person.add_substitution(Substitution(SUBJECT_TAG, message.subject or ""))
            person.add_substitution(Substitution(BODY_TAG, message.body))
            person.add_custom_arg(CustomArg("action_id", message.action_id))
            person.add_header(
                Header("List-Unsubscribe", f"<{unsubscribe_url(message, unsubscribe)}>")
            )
            person.add_header(Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
            mail.add_personalization(person)
        return mail

    def find_sent(self, messages: Sequence[OutboundMessage]) -> dict[str, str]:
        """A send is confirmed once SendGrid's events for it have reached the inbox."""
        wanted = {m.action_id for m in messages}
        found: dict[str, str] = {}
        with closing(sqlite3.connect(self.inbox.path)) as con:
            for (payload,) in con.execute("SELECT payload FROM inbox WHERE kind = 'status'"):
                event = json.loads(payload)
                if event.get("action_id") in wanted and event.get("provider_id"):
                    found[event["action_id"]] = str(event["provider_id"])
        return found


def unsubscribe_url(message: OutboundMessage, fallback: str) -> str:
    """The signed one-click link rendered into the body, else our plain endpoint."""
    for line in message.body.splitlines():
        if "/unsubscribe/" in line:
            return line.split(": ", 1)[-1].strip()
    return fallback


def _deliverable_syntax(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True
