"""Throughput limits and retry timing shared by the live providers."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """At most ``rate`` units per second in any one-second window, across threads.

    A token bucket allows a burst at each window edge; this never does, so a check of "the
    highest count in any one-second window" holds. Units are SMS segments or call starts.
    ``margin`` stretches the window (never the count) to absorb network jitter; a rate below
    one per second becomes one unit per ``1 / rate`` seconds.
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
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self, units: int = 1) -> None:
        units = min(units, self.capacity)
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self.window:
                    self._sent.popleft()
                if len(self._sent) + units <= self.capacity:
                    self._sent.extend([now] * units)
                    return
                wait = self.window - (now - self._sent[len(self._sent) + units - self.capacity - 1])
            self._sleep(max(wait, 0.001))


def backoff_seconds(
    attempt: int, retry_after: str | None, *, base: float = 0.5, cap: float = 30.0
) -> float:
    """Honour Retry-After when the server gives one; else exponential backoff with jitter."""
    if retry_after:
        try:
            return min(float(retry_after), cap)
        except ValueError:
            pass
    return float(
        min(cap, base * 2**attempt) * random.uniform(0.5, 1.0)
    )  # jitter only, not security
