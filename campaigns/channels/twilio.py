"""SMS and outbound IVR calls through the Twilio SDK.

Each worker thread has its own Client; sends run concurrently up to the configured concurrency
and never faster than the sender's rate. 429 and 5xx are retried with backoff (honouring
Retry-After); 21610 (the recipient replied STOP) is an opt-out, never retried; an invalid or
non-mobile number fails permanently. A timeout is ambiguous (the message may have gone), so it
is left unconfirmed: the next dispatch asks Twilio's list before anything is sent again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from campaigns.channels.base import OutboundMessage, Provider, SendResult
from campaigns.channels.limits import SlidingWindowLimiter, backoff_seconds
from campaigns.sms import segment_count

OPTED_OUT = 21610
VOICE_LANGUAGE = {"zh-CN": "zh-CN", "en": "en-US"}
CALL_EVENTS = ["initiated", "ringing", "answered", "completed"]
# A message may appear in Twilio's list with a date_sent a little before our clock says.
CLOCK_SLACK = timedelta(minutes=2)


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

    def __repr__(self) -> str:  # the token never prints
        return f"TwilioConfig(account_sid={self.account_sid!r}, base_url={self.base_url!r})"


class _GatedHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The SDK's HTTP client, with the rate limit taken right before each POST leaves (where
    the provider counts it, not where the SDK starts building it) and the last response's
    headers kept for Retry-After."""

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
    max_attempts: ClassVar[int] = 4
    # A message accepted as our request timed out shows in the list within moments.
    reconcile_grace: ClassVar[timedelta] = timedelta(minutes=2)

    def __init__(self, config: TwilioConfig, limiter: SlidingWindowLimiter) -> None:
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

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        if len(messages) <= 1 or self.config.concurrency == 1:
            return [self.send_one(m) for m in messages]
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            return list(pool.map(self.send_one, messages))

    def _take_slot(self) -> None:
        self.limiter.acquire(getattr(self._local, "units", 1))

    def send_one(self, message: OutboundMessage) -> SendResult:
        self._local.units = self.units(message)
        for attempt in range(self.max_attempts):
            try:
                sid, sender = self.create(message)
                return SendResult(message.action_id, provider_id=sid, sender=sender)
            except TwilioRestException as exc:
                if exc.code == OPTED_OUT:
                    return SendResult(
                        message.action_id,
                        error_code=str(OPTED_OUT),
                        error="the recipient replied STOP",
                        opted_out=True,
                    )
                if exc.status != 429 and exc.status < 500:
                    return SendResult(
                        message.action_id,
                        error_code=str(exc.code or exc.status),
                        error=str(exc.msg)[:200],
                    )
                retry_after = getattr(self._local, "http", None)
                headers = retry_after.last_headers if retry_after else {}
                time.sleep(backoff_seconds(attempt, headers.get("Retry-After")))
            except requests.RequestException as exc:
                # It may have gone: the next dispatch asks Twilio's list after the grace period.
                return SendResult(
                    message.action_id,
                    error_code="timeout",
                    error=type(exc).__name__,
                    unconfirmed=True,
                )
        return SendResult(
            message.action_id,
            error_code="retries_exhausted",
            error=f"no success after {self.max_attempts} attempts",
            retryable=True,
        )

    def units(self, message: OutboundMessage) -> int:
        return 1

    def create(self, message: OutboundMessage) -> tuple[str, str | None]:
        raise NotImplementedError

    def status_callback(self) -> str:
        return f"{self.config.public_url}/webhooks/twilio/status"

    def origin(self) -> dict[str, str]:
        if self.config.messaging_service_sid:
            return {"messaging_service_sid": self.config.messaging_service_sid}
        return {"from_": self.config.sender or ""}


class TwilioSms(_TwilioProvider):
    name: ClassVar[str] = "twilio-sms"
    channels: ClassVar[frozenset[str]] = frozenset({"sms"})

    def units(self, message: OutboundMessage) -> int:
        return segment_count(message.body)

    def create(self, message: OutboundMessage) -> tuple[str, str | None]:
        sent = self.client().messages.create(
            to=message.recipient,
            body=message.body,
            status_callback=self.status_callback(),
            **self.origin(),
        )
        return str(sent.sid), sent.from_ or self.config.sender

    def find_sent(self, messages: Sequence[OutboundMessage]) -> dict[str, str]:
        """Ask Twilio's message list (by recipient, since the claim) which of these went."""
        found: dict[str, str] = {}
        for message in messages:
            listed = self.client().messages.list(
                to=message.recipient, date_sent_after=message.send_at - CLOCK_SLACK, limit=50
            )
            for item in listed:
                if item.body == message.body:
                    found[message.action_id] = str(item.sid)
                    break
        return found


class TwilioVoice(_TwilioProvider):
    name: ClassVar[str] = "twilio-voice"
    channels: ClassVar[frozenset[str]] = frozenset({"voice"})

    def create(self, message: OutboundMessage) -> tuple[str, str | None]:
        call = self.client().calls.create(
            to=message.recipient,
            from_=self.config.sender or "",
            twiml=str(self.twiml(message)),
            status_callback=self.status_callback(),
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

    def find_sent(self, messages: Sequence[OutboundMessage]) -> dict[str, str]:
        found: dict[str, str] = {}
        for message in messages:
            calls = self.client().calls.list(
                to=message.recipient, start_time_after=message.send_at - CLOCK_SLACK, limit=20
            )
            if calls:
                found[message.action_id] = str(calls[0].sid)
        return found
