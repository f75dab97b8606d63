"""The interface every channel provider implements.

Like Apprise's plugins: a provider states its limits as class attributes and returns one result
per recipient, so one bad recipient never sinks a batch. A provider makes one attempt per
message; whether and when to try again is decided in one place, ``campaigns.retry``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import ClassVar, Literal


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
    # It may not leave after this moment (its window closes, or it expires): checked again
    # right before it leaves, since a batch at a sender's rate can take many minutes.
    leave_by: datetime | None = None


@dataclass(frozen=True)
class SendResult:
    action_id: str
    provider_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    retryable: bool = False  # try again later (429, 5xx)
    retry_after: float | None = None  # seconds the provider asked us to wait (Retry-After)
    opted_out: bool = False  # the provider says the recipient opted out: record it
    unconfirmed: bool = False  # it may have gone (a timeout): reconcile, never resend blindly
    not_attempted: bool = False  # the run stopped before this one left: it stays queued
    sender: str | None = None  # the number or address it went out from
    # When the provider took it, where that was before this send: a send repeated after a
    # crash that the provider recognised by its idempotency key (see Provider.idempotent).
    sent_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.provider_id is not None and self.error_code is None


Verdict = Literal["sent", "requeue", "wait", "unconfirmed"]

# Answers to a create that do not prove nothing was created: the server (or a gateway before
# it) failed while, or after, handling the request. Like a timeout, the message may have gone,
# so it is settled with the provider before anything is sent again. 429 and 503 say the
# request was turned away unhandled, so they are simply tried again.
MAYBE_SENT = frozenset({500, 502, 504})


def may_have_gone(action_id: str, status: int) -> SendResult:
    """The result of a create answered with one of MAYBE_SENT: settled, never resent blindly."""
    return SendResult(
        action_id,
        error_code=str(status),
        error=f"HTTP {status}: it may have gone, so it is settled with the provider first",
        unconfirmed=True,
    )


@dataclass(frozen=True)
class Settlement:
    """What became of a send a crash or a timeout left unconfirmed."""

    action_id: str
    verdict: Verdict  # sent: the provider has it; requeue: it never went; wait: not yet known
    provider_id: str | None = None
    sender: str | None = None


class Halt:
    """Stops a dispatch run for everyone once one request shows it cannot go on: our own
    credentials refused, or the provider failing every request (a circuit breaker)."""

    def __init__(self, breaker_threshold: int = 20) -> None:
        self.threshold = breaker_threshold
        self.reason: str | None = None
        self._consecutive_failures = 0

    def stop(self, reason: str) -> None:
        self.reason = self.reason or reason

    def server_error(self, provider: str) -> None:
        self._consecutive_failures += 1
        if self._consecutive_failures >= self.threshold:
            self.stop(
                f"{provider} answered {self.threshold} consecutive requests with a server "
                "error; the run stopped and the rest stays queued"
            )

    def success(self) -> None:
        self._consecutive_failures = 0


# Whether a recipient asked us to stop since the batch was claimed (read from the inbox's
# news by the caller); None: no one is watching.
StopWatch = Callable[[str], bool]
HELD_BACK = "held_back"  # the error code of a message its last look kept from leaving


class Provider(ABC):
    name: ClassVar[str]
    channels: ClassVar[frozenset[str]]
    max_batch: ClassVar[int] = 100
    # How long after a claim an unconfirmed send may still show up at the provider.
    reconcile_grace: ClassVar[timedelta] = timedelta(0)
    # Whether send() waits on the network: a run lets the warehouse go meanwhile, so others
    # take their turns. A local provider answers at once; letting go would only cost the
    # reopening of the warehouse at every batch.
    remote: ClassVar[bool] = True
    # Whether the provider itself drops a send whose idempotency key it has already taken,
    # answering as the first time. A local one that does is sent inside the batch's
    # warehouse transaction, unclaimed: a crash before the commit leaves the batch queued,
    # and sending it again repeats nothing (campaigns/dispatch.py).
    idempotent: ClassVar[bool] = False

    def __init__(self, breaker_threshold: int = 20) -> None:
        self.halt = Halt(breaker_threshold)
        self.stop_watch: StopWatch | None = None
        self.clock: Callable[[], datetime] = partial(datetime.now, UTC)

    def watch(self, stop_watch: StopWatch | None, clock: Callable[[], datetime]) -> None:
        """For a run: ask ``stop_watch`` about each recipient right before their message
        leaves, and hold its window and expiry against the run's ``clock``."""
        self.stop_watch, self.clock = stop_watch, clock

    def last_look(self, message: OutboundMessage) -> SendResult | None:
        """Right before a message leaves (after any wait for the sender's rate): the result
        that keeps it queued when it may no longer go (its window closed or it expired, or
        its recipient asked us to stop meanwhile), else None. The next screen of the outbox
        then defers, expires or suppresses it, as the standard says."""
        if message.leave_by is not None and self.clock() >= message.leave_by:
            reason = "its window closed or it expired while its batch was leaving"
        elif self.stop_watch is not None and self.stop_watch(message.recipient):
            reason = "its recipient asked us to stop while its batch was leaving"
        else:
            return None
        return SendResult(message.action_id, error_code=HELD_BACK, error=reason, not_attempted=True)

    @property
    def halted(self) -> str | None:
        """Why the run must stop (a refused credential, a tripped breaker), if it must."""
        return self.halt.reason

    def grace_for(self, channel: str) -> timedelta:
        return self.reconcile_grace

    @abstractmethod
    def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send each message once; return one result per message, in order, never raise for one."""

    def find_sent(self, messages: Sequence[OutboundMessage]) -> dict[str, str]:
        """Which of these the provider already accepted (action id -> provider id)."""
        raise NotImplementedError

    def settle(self, messages: Sequence[OutboundMessage], now: datetime) -> list[Settlement]:
        """After a crash: what became of each message (``send_at`` is when it was claimed).
        By default what ``find_sent`` finds went; the rest goes again once the grace passed."""
        found = self.find_sent(messages)
        return [
            Settlement(m.action_id, "sent", found[m.action_id])
            if m.action_id in found
            else Settlement(m.action_id, self.after_grace(m, now))
            for m in messages
        ]

    def after_grace(self, message: OutboundMessage, now: datetime) -> Verdict:
        return "requeue" if now - message.send_at >= self.grace_for(message.channel) else "wait"
