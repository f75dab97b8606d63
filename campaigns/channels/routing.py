"""One provider per channel behind the single interface dispatch uses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import ClassVar

from campaigns.channels.base import (
    OutboundMessage,
    Provider,
    SendResult,
    Settlement,
    StopWatch,
)


class RoutingProvider(Provider):
    name: ClassVar[str] = "live"
    channels: ClassVar[frozenset[str]] = frozenset({"sms", "email", "voice"})
    max_batch: ClassVar[int] = 1000

    def __init__(self, by_channel: dict[str, Provider]) -> None:
        super().__init__()
        self.by_channel = by_channel

    def watch(self, stop_watch: StopWatch | None, clock: Callable[[], datetime]) -> None:
        for provider in self.by_channel.values():
            provider.watch(stop_watch, clock)

    @property
    def halted(self) -> str | None:
        return next((p.halted for p in self.by_channel.values() if p.halted), None)

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        results: dict[str, SendResult] = {}
        for channel in {m.channel for m in messages}:
            group = [m for m in messages if m.channel == channel]
            provider = self.by_channel.get(channel)
            if provider is None:
                results.update(
                    {
                        m.action_id: SendResult(
                            m.action_id,
                            error_code="unsupported_channel",
                            error=f"no provider for {channel}",
                        )
                        for m in group
                    }
                )
                continue
            for start in range(0, len(group), provider.max_batch):
                chunk = group[start : start + provider.max_batch]
                results.update({r.action_id: r for r in provider.send(chunk)})
        return [results[m.action_id] for m in messages]

    def settle(self, messages: Sequence[OutboundMessage], now: datetime) -> list[Settlement]:
        settled: list[Settlement] = []
        for channel, provider in self.by_channel.items():
            group = [m for m in messages if m.channel == channel]
            if group:
                settled += provider.settle(group, now)
        return settled

    def grace_for(self, channel: str) -> timedelta:
        provider = self.by_channel.get(channel)
        return provider.grace_for(channel) if provider else self.reconcile_grace
