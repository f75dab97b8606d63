"""The interface every channel provider implements.

Like Apprise's plugins: a provider states its limits as class attributes and returns one result
per recipient, so one bad recipient never sinks a batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar


@dataclass(frozen=True)
class OutboundMessage:
    action_id: str
    idempotency_key: str
    channel: str  # sms | email | voice
    recipient: str
    subject: str | None
    body: str
    locale: str
    send_at: datetime  # when the send happens (the wall clock, or the demo's simulated one)


@dataclass(frozen=True)
class SendResult:
    action_id: str
    provider_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    retryable: bool = False  # try again later (429, 5xx after retries)
    opted_out: bool = False  # the provider says the recipient opted out: record it
    unconfirmed: bool = False  # it may have gone (a timeout): reconcile, never resend blindly
    sender: str | None = None  # the number or address it went out from

    @property
    def ok(self) -> bool:
        return self.provider_id is not None and self.error_code is None


class Provider(ABC):
    name: ClassVar[str]
    channels: ClassVar[frozenset[str]]
    max_batch: ClassVar[int] = 100
    # How long after a claim an unconfirmed send may still show up at the provider.
    reconcile_grace: ClassVar[timedelta] = timedelta(0)

    def grace_for(self, channel: str) -> timedelta:
        return self.reconcile_grace

    @abstractmethod
    def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send each message once; return one result per message, in order, never raise for one."""

    @abstractmethod
    def find_sent(self, messages: Sequence[OutboundMessage]) -> dict[str, str]:
        """Which of these the provider already accepted (action id -> provider id), asked after a
        crash; ``send_at`` is when each was claimed."""
