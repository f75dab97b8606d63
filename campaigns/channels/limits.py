"""Throughput limits shared by the live providers."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class SlidingWindowLimiter:
    """At most ``rate`` units per second in any one-second window, across threads.

    A token bucket allows a burst at each window edge; this never does, so a check of "the
    highest count in any one-second window" holds. Units are SMS segments or call starts: a
    message of N segments takes N units, whatever N. When N exceeds one window's capacity the
    message leaves at once and its remaining units are booked in the windows that follow, so
    the next message waits until the sender's budget has paid for this one. ``margin``
    stretches the window (never the count) to absorb network jitter; a rate below one per
    second becomes one unit per ``1 / rate`` seconds.
    """

    def __init__(
        self,
        rate: float,
        *,
        margin: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.capacity = max(1, int(rate))
        self.window = (1.0 if rate >= 1 else 1.0 / rate) + margin
        self._clock = clock
        self._sleep = sleep
        self._booked: list[float] = []  # one time per unit, sorted; some may be in the future
        self._lock = threading.Lock()

    def acquire(self, units: int = 1) -> None:
        first = min(units, self.capacity)
        while True:
            with self._lock:
                now = self._clock()
                del self._booked[: bisect.bisect_right(self._booked, now - self.window)]
                if len(self._booked) + first <= self.capacity:
                    self._book(now, units)
                    return
                blocking = self._booked[len(self._booked) + first - self.capacity - 1]
                wait = self.window - (now - blocking)
            self._sleep(max(wait, 0.001))

    def _book(self, now: float, units: int) -> None:
        """``capacity`` units now, each one after that ``window / capacity`` later."""
        step = self.window / self.capacity
        for n in range(units):
            bisect.insort(self._booked, now + max(0, n - self.capacity + 1) * step)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
