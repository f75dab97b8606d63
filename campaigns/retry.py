"""The one retry policy: when a send that failed for a passing reason (429, 5xx) goes again.

A retry is not a loop around a request: the action goes back to the queue with its
``scheduled_at`` moved by exponential backoff with jitter, never sooner than the provider's
Retry-After, and any later claim (this run's or the next) takes it then. After
``max_attempts`` it fails for good with ``retries_exhausted``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_seconds: float = 5.0
    cap_seconds: float = 900.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> timedelta:
        """The wait after failed attempt number ``attempt`` (1 for the first)."""
        backoff = min(self.cap_seconds, self.base_seconds * 2 ** max(attempt - 1, 0))
        jittered = backoff * self.rng.uniform(0.5, 1.0)  # jitter spreads a herd, not security
        return timedelta(seconds=max(jittered, min(retry_after or 0.0, self.cap_seconds)))

    def next_attempt(self, attempt: int, now: datetime, retry_after: float | None) -> datetime:
        return now + self.delay(attempt, retry_after)

    def gives_up(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
