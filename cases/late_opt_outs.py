"""Opt-outs that arrive while a batch is leaving.

A batch at a sender's rate can take many minutes (500 two-segment texts at 1 segment a second
take 17). Each message's last look, right before its request, asks this watch whether its
recipient has asked us to stop since the run began: the inbox's newer texts and keypresses,
read by the one parser (feedback.parsing), at most once a second however many messages ask.
What it finds is collected as usual by the next collect; meanwhile the message stays queued.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from feedback.parsing import parse_digits, parse_reply
from inbox.inbox import Inbox, InboxItem

LOOK_EVERY = 1.0  # seconds between two readings of the inbox's news


class LateOptOuts:
    """A ``StopWatch`` (campaigns.channels.base) over the inbox, from its newest item now."""

    def __init__(
        self, inbox: Inbox, clock: Callable[[], float] = time.monotonic, every: float = LOOK_EVERY
    ) -> None:
        self.inbox, self.clock, self.every = inbox, clock, every
        self.seen = inbox.newest_id()
        self.stopped: set[str] = set()
        self.looked: float | None = None
        self._lock = threading.Lock()  # providers ask from their sending threads

    def __call__(self, recipient: str) -> bool:
        with self._lock:
            now = self.clock()
            if self.looked is None or now - self.looked >= self.every:
                self._read_news()
                self.looked = now
            return recipient in self.stopped

    def _read_news(self) -> None:
        for items in self.inbox.after(self.seen):
            self.stopped.update(phone for item in items if (phone := _stopping(item)))
            self.seen = items[-1].id


def _stopping(item: InboxItem) -> str | None:
    """The phone number an inbound text or keypress asks us to stop, if it does."""
    payload = item.payload
    if item.kind == "sms" and parse_reply(str(payload.get("Body", ""))).intent == "opt_out":
        return str(payload.get("From") or "") or None
    if item.kind == "ivr" and parse_digits(str(payload.get("Digits", ""))).intent == "opt_out":
        return str(payload.get("To") or "") or None  # an outbound call: the customer is To
    return None
