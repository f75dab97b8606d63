"""Email through the SendGrid SDK: v3 mail send with up to 1000 personalizations per request.

Each personalization carries its own subject and body (as substitutions), the care action id
and the moment it was sent in ``custom_args`` (SendGrid's events come back with both), and
RFC 8058 one-click unsubscribe headers. Addresses are checked before sending; if SendGrid still
refuses a batch (400), it is split in halves until the bad address stands alone, so one bad
recipient never sinks the others. One attempt per batch: 429 and 503 come back retryable;
500, 502 and 504 may have been accepted all the same, so they are settled like a crash;
a refused key (401, 403) stops the run with every email still queued.

After a crash, SendGrid cannot be asked what it accepted (its activity feed is a paid extra),
so ``settle`` reads the events that reached the inbox:
- an event for the action: it was sent (message id and time from the event);
- none yet, but the grace has passed and the event stream demonstrably flows (events have
  arrived for emails sent after this one was claimed): SendGrid never took it, send it again;
- none, and the stream shows nothing newer: keep waiting; after ``unconfirmed_after`` (the 24
  hours SendGrid retries its webhook) mark it ``unconfirmed`` for a person to review.
This needs SendGrid's Event Webhook with at least the ``processed`` event: when no event has
ever arrived, settling says so in a warning, since every unsettled email then waits a day.
"""

from __future__ import annotations

import logging
import re
import urllib.error
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
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

from campaigns.channels.base import (
    MAYBE_SENT,
    OutboundMessage,
    Provider,
    SendResult,
    Settlement,
    Verdict,
    may_have_gone,
)
from campaigns.channels.limits import retry_after_seconds
from inbox.inbox import EmailEvidence, Inbox

SUBJECT_TAG, BODY_TAG = "-care_subject-", "-care_body-"
log = logging.getLogger("careloop.sendgrid")
SENT_ARG = "careloop_sent"  # custom arg: when we sent it (unix seconds), echoed by every event


@dataclass(frozen=True)
class SendGridConfig:
    api_key: str
    base_url: str
    sender: str
    public_url: str
    timeout: float
    breaker_threshold: int = 20

    def __repr__(self) -> str:  # the key never prints
        return f"SendGridConfig(base_url={self.base_url!r}, sender={self.sender!r})"


class SendGridEmail(Provider):
    name: ClassVar[str] = "sendgrid"
    channels: ClassVar[frozenset[str]] = frozenset({"email"})
    max_batch: ClassVar[int] = 1000
    # Events (processed, delivered) confirm a send; wait this long for them after a crash.
    reconcile_grace: ClassVar[timedelta] = timedelta(minutes=15)
    # SendGrid retries its event webhook for 24 hours: past that, silence will not end.
    unconfirmed_after: ClassVar[timedelta] = timedelta(hours=24)

    def __init__(self, config: SendGridConfig, inbox: Inbox) -> None:
        super().__init__(config.breaker_threshold)
        self.config = config
        self.inbox = inbox
        self.client = SendGridAPIClient(api_key=config.api_key, host=config.base_url)
        self.client.client.timeout = config.timeout

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        results: dict[str, SendResult] = {}
        valid = []
        for message in messages:
            if (held_back := self.last_look(message)) is not None:
                results[message.action_id] = held_back
            elif _deliverable_syntax(message.recipient):
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
        if self.halted:
            self._all(batch, results, error_code="halted", not_attempted=True)
            return
        try:
            response = self.client.send(self.mail(batch))
        except HTTPError as exc:
            self._failed(batch, results, exc)
            return
        except (urllib.error.URLError, TimeoutError, OSError):
            self._all(batch, results, error_code="timeout", unconfirmed=True)  # it may have gone
            return
        self.halt.success()
        message_id = response.headers.get("X-Message-Id") or ""
        self._all(batch, results, provider_id=message_id, sender=self.config.sender)

    @staticmethod
    def _all(
        batch: Sequence[OutboundMessage], results: dict[str, SendResult], **outcome: object
    ) -> None:
        for message in batch:
            results[message.action_id] = SendResult(message.action_id, **outcome)  # type: ignore[arg-type]

    def _failed(
        self, batch: Sequence[OutboundMessage], results: dict[str, SendResult], exc: HTTPError
    ) -> None:
        status = int(getattr(exc, "status_code", 0) or 0)
        if status in (401, 403):
            self.halt.stop(
                f"SendGrid refused our key (HTTP {status}): check SENDGRID_API_KEY; every "
                "email stays queued"
            )
            self._all(batch, results, error_code="halted", not_attempted=True)
        elif status in MAYBE_SENT:
            self.halt.server_error("SendGrid")
            for message in batch:
                results[message.action_id] = may_have_gone(message.action_id, status)
        elif status == 429 or status >= 500:
            if status >= 500:
                self.halt.server_error("SendGrid")
            headers = getattr(exc, "headers", None) or {}
            wait = retry_after_seconds(headers.get("Retry-After"))
            self._all(batch, results, error_code=str(status), retryable=True, retry_after=wait)
        else:
            self._refused(batch, results, status, exc)

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
            person.add_custom_arg(CustomArg(SENT_ARG, f"{message.send_at.timestamp():.3f}"))
            person.add_header(
                Header("List-Unsubscribe", f"<{unsubscribe_url(message, unsubscribe)}>")
            )
            person.add_header(Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
            mail.add_personalization(person)
        return mail

    def settle(self, messages: Sequence[OutboundMessage], now: datetime) -> list[Settlement]:
        evidence = self.inbox.email_evidence([m.action_id for m in messages], SENT_ARG)
        if evidence.newest_send is None and not evidence.events:
            warn_no_events(len(messages), self.config.public_url)
        return [self._settlement(m, evidence, now) for m in messages]

    def _settlement(
        self, message: OutboundMessage, evidence: EmailEvidence, now: datetime
    ) -> Settlement:
        past_grace = self.after_grace(message, now)
        verdict, message_id = event_verdict(
            message.action_id, message.send_at, evidence, now, past_grace
        )
        sender = self.config.sender if verdict == "sent" else None
        return Settlement(message.action_id, verdict, message_id, sender)


def event_verdict(
    key: str, sent_at: datetime, evidence: EmailEvidence, now: datetime, past_grace: Verdict
) -> tuple[Verdict, str | None]:
    """What SendGrid's events prove of one email sent at ``sent_at`` (see the module's rule),
    with its message id when sent; ``past_grace`` is the verdict once its grace is over."""
    if key in evidence.events:
        return "sent", evidence.events[key]
    if evidence.newest_send is not None and evidence.newest_send > sent_at:
        return past_grace, None
    if now - sent_at >= SendGridEmail.unconfirmed_after:
        return "unconfirmed", None
    return "wait", None


def warn_no_events(unsettled: int, public_url: str) -> None:
    log.warning(
        "no SendGrid event has reached the inbox: %d email(s) cannot be settled until the "
        "Event Webhook posts at least 'processed' events to %s/webhooks/sendgrid/events",
        unsettled,
        public_url,
    )


def unsubscribe_url(message: OutboundMessage, fallback: str) -> str:
    """The signed one-click link rendered into the body, else our plain endpoint."""
    found = _UNSUBSCRIBE_LINK.search(message.body)
    return found.group(0) if found else fallback


# The link itself, whatever labels it ("Unsubscribe: ", "退订邮件：")
_UNSUBSCRIBE_LINK = re.compile(r"https?://\S*?/unsubscribe/\S+")


def _deliverable_syntax(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True
