"""SMS and outbound IVR calls through the Twilio SDK.

Each worker thread has its own Client; sends run concurrently up to the configured concurrency
and never faster than the sender's rate. One attempt per message: 429 and 503 come back
retryable (with Retry-After) for ``campaigns.retry`` to schedule; 21610 (the recipient replied
STOP) is an opt-out; an invalid or non-mobile number fails permanently; refused credentials
(20003, 401, 403) stop the run with every action still queued. A timeout is ambiguous (the
message may have gone), and so are 500, 502 and 504 (``MAYBE_SENT``): those are left
unconfirmed for ``settle``.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from campaigns.channels.base import (
    MAYBE_SENT,
    OutboundMessage,
    Provider,
    SendResult,
    Settlement,
    may_have_gone,
)
from campaigns.channels.limits import SlidingWindowLimiter, retry_after_seconds
from campaigns.sms import segment_count

OPTED_OUT = 21610
AUTHENTICATION = 20003
VOICE_LANGUAGE = {"zh-CN": "zh-CN", "en": "en-US"}
CALL_EVENTS = ["initiated", "ringing", "answered", "completed"]
# A message may carry a date_created a little before our clock says it was claimed.
CLOCK_SLACK = timedelta(minutes=2)
# Still on its way at Twilio: such a message may yet go, so nothing to that number is resent.
IN_FLIGHT = frozenset({"accepted", "queued", "scheduled", "sending", "initiated", "ringing"})
HISTORY_PAGE = 50  # the newest messages or calls to one number that reconciliation reads


@dataclass(frozen=True)
class TwilioConfig:
    account_sid: str
    auth_token: str
    base_url: str
    public_url: str
    sender: str | None  # a phone number (From)
    messaging_service_sid: str | None
    timeout: float
    concurrency: int
    breaker_threshold: int = 20

    def __repr__(self) -> str:  # the token never prints
        return f"TwilioConfig(account_sid={self.account_sid!r}, base_url={self.base_url!r})"


@dataclass(frozen=True)
class Listed:
    """One message or call in Twilio's list for a recipient, as reconciliation needs it."""

    sid: str
    created: datetime
    status: str
    body: str | None
    sender: str | None


class _HeldBackError(Exception):
    """A message's last look, right before its request, kept it from leaving."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result.error)
        self.result = result


class _GatedHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The SDK's HTTP client, with the rate limit taken right before each POST leaves (where
    the provider counts it, not where the SDK starts building it), then the message's last
    look, and the last response's headers kept for Retry-After."""

    def __init__(self, gate: Callable[[], None], timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.gate = gate
        self.last_headers: dict[str, str] = {}

    def request(self, method: str, *args: Any, **kwargs: Any) -> Response:
        if method.upper() == "POST":
            self.gate()
        response = super().request(method, *args, **kwargs)
        self.last_headers = dict(response.headers or {})
        return response


class _TwilioProvider(Provider):
    max_batch: ClassVar[int] = 500
    # A message accepted as our request timed out shows in the list within moments.
    reconcile_grace: ClassVar[timedelta] = timedelta(minutes=2)

    def __init__(self, config: TwilioConfig, limiter: SlidingWindowLimiter) -> None:
        super().__init__(config.breaker_threshold)
        self.config = config
        self.limiter = limiter
        self._local = threading.local()

    def client(self) -> Client:
        if not hasattr(self._local, "client"):
            http = _GatedHttpClient(self._take_slot, timeout=self.config.timeout)
            fresh = Client(self.config.account_sid, self.config.auth_token, http_client=http)
            fresh.api.base_url = self.config.base_url
            self._local.client, self._local.http = fresh, http
        client: Client = self._local.client
        return client

    def _concurrently(self, work: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if len(items) <= 1 or self.config.concurrency == 1:
            return [work(item) for item in items]
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            return list(pool.map(work, items))

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        return self._concurrently(self.send_one, messages)

    def _take_slot(self) -> None:
        self.limiter.acquire(getattr(self._local, "units", 1))
        held_back = self.last_look(self._local.message)
        if held_back is not None:  # the request is not made
            raise _HeldBackError(held_back)

    def send_one(self, message: OutboundMessage) -> SendResult:
        if self.halted:
            return SendResult(message.action_id, error_code="halted", not_attempted=True)
        self._local.units, self._local.message = self.units(message), message
        try:
            sid, sender = self.create(message)
        except _HeldBackError as exc:
            return exc.result
        except TwilioRestException as exc:
            return self._refused(message, exc)
        except requests.RequestException as exc:
            # It may have gone: settle() asks Twilio's list before anything is sent again.
            return SendResult(
                message.action_id, error_code="timeout", error=type(exc).__name__, unconfirmed=True
            )
        self.halt.success()
        return SendResult(message.action_id, provider_id=sid, sender=sender)

    def _refused(self, message: OutboundMessage, exc: TwilioRestException) -> SendResult:
        action = message.action_id
        if exc.code == AUTHENTICATION or exc.status in (401, 403):
            self._credentials_refused(exc.status, exc.code)
            return SendResult(action, error_code="halted", not_attempted=True)
        if exc.code == OPTED_OUT:
            return SendResult(
                action,
                error_code=str(OPTED_OUT),
                error="the recipient replied STOP",
                opted_out=True,
            )
        if exc.status >= 500:
            self.halt.server_error("Twilio")
        if exc.status in MAYBE_SENT:
            return may_have_gone(action, exc.status)
        if exc.status == 429 or exc.status >= 500:
            http = getattr(self._local, "http", None)
            wait = retry_after_seconds(http.last_headers.get("Retry-After") if http else None)
            return SendResult(
                action, error_code=str(exc.code or exc.status), retryable=True, retry_after=wait
            )
        return SendResult(action, error_code=str(exc.code or exc.status), error=str(exc.msg)[:200])

    def _credentials_refused(self, status: int, code: int | None) -> None:
        self.halt.stop(
            f"Twilio refused our credentials (HTTP {status}, code {code}): check "
            "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN; every action stays queued"
        )

    def units(self, message: OutboundMessage) -> int:
        return 1

    def create(self, message: OutboundMessage) -> tuple[str, str | None]:
        raise NotImplementedError

    def status_callback(self, message: OutboundMessage) -> str:
        """Where Twilio reports the send's progress: the URL names the action (Twilio signs
        it), so collect need not look the provider's id up among the week's sends."""
        return (
            f"{self.config.public_url}/webhooks/twilio/status/{quote(message.action_id, safe='')}"
        )

    def settle(self, messages: Sequence[OutboundMessage], now: datetime) -> list[Settlement]:
        """Reconcile by recipient: one list request per number, concurrently, then each
        listed message or call confirms at most one action (same body, created after the
        claim). Twilio's DateSent filter would hide what is still queued there (it has no
        date_sent yet), so the list is read unfiltered and compared locally; while anything
        unmatched to a number is still in flight at Twilio, nothing to it is resent."""
        by_recipient: dict[str, list[OutboundMessage]] = defaultdict(list)
        for message in messages:
            by_recipient[message.recipient].append(message)
        histories = self._concurrently(self._history_or_none, list(by_recipient))
        settled: list[Settlement] = []
        for group, listed in zip(by_recipient.values(), histories, strict=True):
            if listed is None:  # Twilio could not say: nothing to that number goes again yet
                settled += [Settlement(m.action_id, "wait") for m in group]
            else:
                settled += self._match(group, listed, now)
        return settled

    def _history_or_none(self, recipient: str) -> list[Listed] | None:
        try:
            return self.history(recipient)
        except TwilioException as exc:  # a list page fails as TwilioException(msg, response)
            status = getattr(exc.args[1] if len(exc.args) > 1 else None, "status_code", None)
            if status in (401, 403):
                self._credentials_refused(int(status), AUTHENTICATION)
            return None
        except requests.RequestException:
            return None

    def _match(
        self, group: list[OutboundMessage], listed: list[Listed], now: datetime
    ) -> list[Settlement]:
        unused = sorted(listed, key=lambda item: item.created)
        settled: list[Settlement] = []
        waiting: list[OutboundMessage] = []
        for message in sorted(group, key=lambda m: (m.send_at, m.action_id)):
            match = next((item for item in unused if self.same_send(message, item)), None)
            if match is None:
                waiting.append(message)
                continue
            unused.remove(match)
            settled.append(Settlement(message.action_id, "sent", match.sid, match.sender))
        in_flight = any(item.status in IN_FLIGHT for item in unused)
        for message in waiting:
            verdict = "wait" if in_flight else self.after_grace(message, now)
            settled.append(Settlement(message.action_id, verdict))
        return settled

    def same_send(self, message: OutboundMessage, item: Listed) -> bool:
        return item.created >= message.send_at - CLOCK_SLACK

    def history(self, recipient: str) -> list[Listed]:
        raise NotImplementedError


class TwilioSms(_TwilioProvider):
    name: ClassVar[str] = "twilio-sms"
    channels: ClassVar[frozenset[str]] = frozenset({"sms"})

    def units(self, message: OutboundMessage) -> int:
        return segment_count(message.body)

    def create(self, message: OutboundMessage) -> tuple[str, str | None]:
        origin: dict[str, str] = (
            {"messaging_service_sid": self.config.messaging_service_sid}
            if self.config.messaging_service_sid
            else {"from_": self.config.sender or ""}
        )
        sent = self.client().messages.create(
            to=message.recipient,
            body=message.body,
            status_callback=self.status_callback(message),
            **origin,
        )
        # A Messaging Service picks the number as it sends: until then ``from`` is empty, and
        # the status callback's From records it later.
        return str(sent.sid), sent.from_ or self.config.sender

    def same_send(self, message: OutboundMessage, item: Listed) -> bool:
        return item.body == message.body and super().same_send(message, item)

    def history(self, recipient: str) -> list[Listed]:
        return [
            Listed(str(m.sid), m.date_created, str(m.status), m.body, m.from_)
            for m in self.client().messages.list(to=recipient, limit=HISTORY_PAGE)
            if m.date_created is not None and str(m.direction).startswith("outbound")
        ]


class TwilioVoice(_TwilioProvider):
    name: ClassVar[str] = "twilio-voice"
    channels: ClassVar[frozenset[str]] = frozenset({"voice"})

    def create(self, message: OutboundMessage) -> tuple[str, str | None]:
        call = self.client().calls.create(
            to=message.recipient,
            from_=self.config.sender or "",
            twiml=str(self.twiml(message)),
            status_callback=self.status_callback(message),
            status_callback_event=CALL_EVENTS,
        )
        return str(call.sid), self.config.sender

    def twiml(self, message: OutboundMessage) -> VoiceResponse:
        """The care message and the survey question, then one DTMF key (1-5) to our webhook."""
        language = VOICE_LANGUAGE.get(message.locale, "en-US")
        response = VoiceResponse()
        gather = response.gather(
            input="dtmf",
            num_digits=1,
            timeout=5,
            action=f"{self.config.public_url}/webhooks/twilio/voice/{message.action_id}/gather"
            f"?locale={message.locale}",
        )
        gather.say(message.body, language=language)
        return response

    def history(self, recipient: str) -> list[Listed]:
        return [
            Listed(str(c.sid), c.date_created, str(c.status), None, c._from)
            for c in self.client().calls.list(to=recipient, limit=HISTORY_PAGE)
            if c.date_created is not None
        ]
