"""Provider delivery events, as they land in the inbox, mapped onto care action statuses.

Twilio posts message and call status callbacks (form fields); SendGrid posts event batches
(one inbox item per event); the sandbox posts its own small record. All become a
DeliveryEvent; engagement events (opens, clicks) change no status, and unsubscribes and spam
reports are email opt-outs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from inbox.inbox import sendgrid_message_id

TWILIO_MESSAGE = {
    "accepted": "queued",
    "queued": "queued",
    "scheduled": "queued",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",
}
TWILIO_CALL = {
    "queued": "sent",
    "initiated": "sent",
    "ringing": "sent",
    "in-progress": "delivered",
    "answered": "delivered",
    "completed": "delivered",
    "busy": "undelivered",
    "no-answer": "undelivered",
    "failed": "failed",
    "canceled": "failed",
}
SENDGRID = {"processed": "sent", "delivered": "delivered", "bounce": "bounced", "dropped": "failed"}
SENDGRID_OPT_OUT = {"unsubscribe", "group_unsubscribe", "spamreport"}
# The statuses a provider's event may give an action.
EVENT_STATUSES = frozenset([*TWILIO_MESSAGE.values(), *TWILIO_CALL.values(), *SENDGRID.values()])
# How far along a status is; an event never moves an action backwards. The actions never
# handed over (suppressed, held out, expired) are as far along as a queued one: a late event
# that a provider merely accepted a message ('queued') must not open them again, for the next
# run would send a held-out customer, or one who opted out; an event that says it was sent
# still records that it was (a retried send the provider took after all may since have
# expired or been suppressed). But an action settled so before it was ever claimed for
# sending (no attempt: held out, suppressed or expired by its plan or its screen) was never
# handed over: an event naming it is stray, and moving it would count a held-out customer
# among the treated, a capped one among the sent, or land the customer's next reply on it.
NEVER_HANDED_OVER = ("held_out", "suppressed", "expired")
RANK = {
    "queued": 0,
    "suppressed": 0,
    "held_out": 0,
    "expired": 0,
    "sending": 1,
    "unconfirmed": 1,
    "sent": 2,
    "delivered": 3,
    "undelivered": 3,
    "failed": 3,
    "bounced": 3,
}


@dataclass(frozen=True)
class DeliveryEvent:
    provider_id: str | None
    action_id: str | None
    status: str | None  # None: no status change (opens, clicks, deferrals)
    error_code: str | None
    email_opt_out: bool = False
    sender: str | None = None  # Twilio's From: a Messaging Service's number, known only now
    at: datetime | None = None  # when the provider says it happened
    # Twilio's and SendGrid's sends are claimed (committed, attempts counted) before they
    # leave, so their event naming an action still queued and never attempted is stray (a
    # callback of another deployment, a replay): moved, that action would never be sent. The
    # sandbox sends a batch inside the transaction that records it: a kill before the commit
    # leaves its sends queued and never attempted, and its receipts are how they are found.
    claimed_first: bool = True


def normalize(payload: dict[str, Any]) -> DeliveryEvent:
    if "MessageStatus" in payload:
        return DeliveryEvent(
            _id(payload.get("MessageSid")),
            _id(payload.get("action_id")),
            TWILIO_MESSAGE.get(str(payload["MessageStatus"])),
            _text(payload.get("ErrorCode")),
            sender=_text(payload.get("From")),
        )
    if "CallStatus" in payload:
        return DeliveryEvent(
            _id(payload.get("CallSid")),
            _id(payload.get("action_id")),
            TWILIO_CALL.get(str(payload["CallStatus"])),
            _text(payload.get("ErrorCode")),
        )
    if "event" in payload:
        event = str(payload["event"])
        return DeliveryEvent(
            sendgrid_message_id(payload),
            _id(payload.get("action_id")),
            SENDGRID.get(event),
            _text(payload.get("reason") or payload.get("type")),
            email_opt_out=event in SENDGRID_OPT_OUT,
            at=_moment(payload.get("timestamp")),
        )
    status = payload.get("status")
    return DeliveryEvent(  # the sandbox's receipts
        _id(payload.get("provider_id")),
        _id(payload.get("action_id")),
        # what an event may say, as the providers' maps do: never 'sending' or a status of
        # the outbox's own (an unknown one changes nothing, as for the providers)
        status if isinstance(status, str) and status in EVENT_STATUSES else None,
        _text(payload.get("error_code")),
        sender=_text(payload.get("sender")),
        claimed_first=False,
    )


def _moment(stamp: object) -> datetime | None:
    """A unix timestamp, if it is a plausible one."""
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not 0 < stamp < 1e11:
        return None
    return datetime.fromtimestamp(stamp, UTC)


def plain_id(value: object) -> str | None:
    """An id as an event gives it: text, or a number written as one. Anything else (a list, an
    object, a boolean: a custom argument set by another sender on the account) is no id."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)


def _id(value: object) -> str | None:
    """An event's id, if it is one (``plain_id``): what is not names nothing, and must not stop
    the events and replies behind it."""
    given = plain_id(value)
    return (given[:200] or None) if given is not None else None


def _text(value: object) -> str | None:
    return None if value in (None, "") else str(value)[:200]
