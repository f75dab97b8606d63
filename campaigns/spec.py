"""Campaign definition files (``campaigns/definitions/*.yaml``), validated when they load."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.errors import UserError
from core.settings import LOCALES
from core.yaml_files import YamlFileError, read_yaml

DEFINITIONS_DIR = Path(__file__).parent / "definitions"
Channel = Literal["sms", "email", "voice"]
Locale = Literal["zh-CN", "en"]
CHANNELS: tuple[Channel, ...] = ("sms", "email", "voice")
VALID_FOR = r"^(end_of_day|[1-9][0-9]{0,3}[hd])$"
# How long a planned contact stays worth sending, when its step does not say.
DEFAULT_VALID_FOR = {1: "end_of_day", 2: "72h"}  # by round


def validity_seconds(valid_for: str) -> int | None:
    """A ``valid_for`` duration in seconds; None for ``end_of_day``."""
    if valid_for == "end_of_day":
        return None
    amount, unit = int(valid_for[:-1]), valid_for[-1]
    return amount * (3600 if unit == "h" else 86400)


def local_time(value: Any) -> time:
    """A customer's local time of day, written as a quoted "HH:MM". Unquoted, YAML reads 10:00
    as the number 600 (base 60), which would otherwise pass as 00:10 UTC."""
    if not isinstance(value, str | time):
        raise ValueError(
            f'{value!r}: write a local time quoted, as "HH:MM" (YAML reads an unquoted 10:00 '
            "as the number 600)"
        )
    try:
        parsed = value if isinstance(value, time) else time.fromisoformat(value)
    except ValueError:
        raise ValueError(f'{value!r}: use a local time, "HH:MM"') from None
    if parsed.tzinfo is not None:
        raise ValueError(f"{value!r}: a local time has no offset (the customer's own zone)")
    return parsed


class CampaignError(UserError, ValueError):
    """A campaign file that cannot be used, named by its path and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Offer(_Strict):
    code: str
    text: dict[Locale, str]


class Messages(_Strict):
    """One locale's templates (Jinja2, sandboxed); see campaigns/content.py for the variables."""

    sms: str
    email_subject: str
    email_body: str
    voice: str


# The step's own ``messages`` are the variant of this name; ``variants.messages`` adds the rest.
CONTROL_VARIANT = "standard"
VARIANT_NAME = r"^[a-z][a-z0-9_]{0,31}$"


class StoppingRule(_Strict):
    """When a variant test declares its winner: the leader's posterior probability of being
    best reaches ``p_best`` while every variant has ``min_outcomes`` outcomes, at one of the
    test's first ``max_looks`` plans (each plan looks once). The defaults keep the false-winner
    rate under 5% when the variants do not differ (README: Message variants)."""

    p_best: float = Field(default=0.997, gt=0.5, lt=1)
    min_outcomes: int = Field(default=200, ge=10)
    max_looks: int = Field(default=30, ge=1)


class VariantTest(_Strict):
    """Named variants of a step's message, assigned by Thompson sampling (campaigns/variants.py)
    on ``outcome``: ``csat`` (share of ratings 4-5) or ``response`` (share of surveys rated).
    Until a winner is declared every variant gets at least ``min_share`` of each plan's sends;
    after it, every other variant keeps ``monitor_share`` of them, so a change still shows."""

    outcome: Literal["csat", "response"]
    min_share: float = Field(default=0.1, ge=0, le=0.5)
    monitor_share: float = Field(default=0.05, ge=0, le=0.25)
    stop: StoppingRule = StoppingRule()
    messages: dict[str, dict[Locale, Messages]] = Field(min_length=1)

    @field_validator("messages")
    @classmethod
    def _names(cls, value: dict[str, dict[Locale, Messages]]) -> dict[str, dict[Locale, Messages]]:
        bad = [n for n in value if n == CONTROL_VARIANT or not re.fullmatch(VARIANT_NAME, n)]
        if bad:
            raise ValueError(
                f"variant names {bad}: use lower-case letters, digits and _ "
                f"({CONTROL_VARIANT!r} is the step's own messages)"
            )
        return value

    @model_validator(mode="after")
    def _shares_fit(self) -> VariantTest:
        count = len(self.messages) + 1
        if self.min_share * count > 1:
            raise ValueError(f"min_share: {self.min_share} for each of {count} variants is over 1")
        if self.monitor_share * (count - 1) >= 1:
            raise ValueError(f"monitor_share: {self.monitor_share} leaves the winner nothing")
        return self


class CareStep(_Strict):
    """What one round of care says and offers, and how it reaches the customer.

    ``valid_for`` says how long a planned contact stays worth sending: ``end_of_day`` (the end
    of the occasion's day in the customer's timezone: a birthday greeting is not sent the day
    after) or a duration such as ``48h`` or ``3d``, counted from the occasion (the segment's
    ``occasion_at``, else its ``due_at``, else the planned send time). Dispatch never sends an
    expired contact: it is kept in the archive as ``expired``.
    """

    channels: list[Channel] = Field(min_length=1)
    offers: dict[str, Offer]
    messages: dict[Locale, Messages]
    survey: dict[Locale, str] | None = None
    valid_for: str | None = Field(default=None, pattern=VALID_FOR)  # see DEFAULT_VALID_FOR
    variants: VariantTest | None = None  # first rounds only

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, value: list[Channel]) -> list[Channel]:
        if len(set(value)) != len(value):
            raise ValueError(f"channels repeat: {value}")
        return value

    @model_validator(mode="after")
    def _variants_need_a_survey(self) -> CareStep:
        # Both outcomes (csat, response) are the survey's ratings: without one, a test would
        # gather nothing and hold every variant at its minimum share for ever.
        if self.variants is not None and self.survey is None:
            raise ValueError("survey: a step that tests variants needs one (its outcome)")
        return self

    def offer_for(self, tier: str) -> Offer:
        return self.offers.get(tier) or self.offers["default"]

    def variant_messages(self) -> dict[str, dict[Locale, Messages]]:
        """Every variant's messages by name, the step's own first (CONTROL_VARIANT)."""
        extra = self.variants.messages if self.variants else {}
        return {CONTROL_VARIANT: self.messages, **extra}


class Campaign(_Strict):
    name: str
    description: str
    segment: str
    params: dict[str, Any] = Field(default_factory=dict)
    # A fixed local time, or ``learned``: each customer's best hour (campaigns/send_time.py),
    # with ``send_time_fallback`` for those without history and for the held-out customers.
    send_time: time | Literal["learned"] = time(10, 0)
    send_time_fallback: time | None = None
    send_time_explore_percent: float = Field(default=5.0, ge=0, le=50)
    send_window: tuple[time, time] = (time(9, 0), time(21, 0))
    holdout_percent: float = Field(default=10.0, ge=0, le=50)
    sms_max_segments: int = Field(default=3, ge=1, le=10)
    care: CareStep
    second_round: CareStep

    @field_validator("send_window")
    @classmethod
    def _window_order(cls, value: tuple[time, time]) -> tuple[time, time]:
        if value[0] >= value[1]:
            raise ValueError("send_window must start before it ends")
        return value

    @field_validator("second_round")
    @classmethod
    def _first_round_variants(cls, value: CareStep) -> CareStep:
        if value.variants is not None:
            raise ValueError("variants: only a first round (care) tests variants")
        return value

    @field_validator("send_time", mode="before")
    @classmethod
    def _time_or_learned(cls, value: Any) -> Any:
        if value == "learned":
            return value
        try:
            return local_time(value)
        except ValueError as exc:
            raise ValueError(f"{exc} or learned") from None

    @field_validator("send_time_fallback", mode="before")
    @classmethod
    def _fallback_time(cls, value: Any) -> Any:
        return value if value is None else local_time(value)

    @field_validator("send_window", mode="before")
    @classmethod
    def _window_times(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [local_time(v) for v in value]
        return value

    @model_validator(mode="after")
    def _fallback_with_learned(self) -> Campaign:
        if self.learns_send_time and self.send_time_fallback is None:
            raise ValueError(
                "send_time_fallback: required with send_time: learned (the local time for "
                "customers without history)"
            )
        if not self.learns_send_time and self.send_time_fallback is not None:
            raise ValueError("send_time_fallback: only with send_time: learned")
        if self.learns_send_time and not self.window_hours:
            raise ValueError("send_window: holds no whole hour for send_time: learned to choose")
        fallback = self.send_time_fallback
        if fallback is not None and not self.send_window[0] <= fallback < self.send_window[1]:
            raise ValueError(
                f"send_time_fallback: {fallback:%H:%M} is outside send_window "
                f"{self.send_window[0]:%H:%M}-{self.send_window[1]:%H:%M} (the learned hours' "
                "baseline must be a time the window lets go)"
            )
        return self

    @property
    def window_hours(self) -> list[int]:
        """The local hours a learned send time may choose: each one's hh:00 inside the window."""
        start, end = self.send_window
        return [hour for hour in range(24) if start <= time(hour) < end]

    @property
    def learns_send_time(self) -> bool:
        return self.send_time == "learned"

    @property
    def fixed_send_time(self) -> time:
        """The campaign's fixed local time: ``send_time``, or the fallback when learned."""
        if isinstance(self.send_time, time):
            return self.send_time
        assert self.send_time_fallback is not None  # checked when the file loads
        return self.send_time_fallback


def check_coverage(campaign: Campaign, tiers: tuple[str, ...]) -> None:
    """Every tier needs an offer (or a default) and every locale its messages."""
    for round_name, step in (("care", campaign.care), ("second_round", campaign.second_round)):
        unknown = sorted(set(step.offers) - set(tiers) - {"default"})
        if unknown:  # checked first: a misspelt tier is the likely cause of a missing one
            raise CampaignError(f"{round_name}.offers: unknown tier(s) {unknown}")
        missing_tiers = [t for t in tiers if t not in step.offers and "default" not in step.offers]
        if missing_tiers:
            raise CampaignError(f"{round_name}.offers: no offer for tier(s) {missing_tiers}")
        for locale in LOCALES:
            if locale not in step.messages:
                raise CampaignError(f"{round_name}.messages: missing locale {locale}")
            for name, messages in step.variant_messages().items():
                if name != CONTROL_VARIANT and locale not in messages:
                    raise CampaignError(
                        f"{round_name}.variants.messages.{name}: missing locale {locale}"
                    )
            for code, offer in step.offers.items():
                if locale not in offer.text:
                    raise CampaignError(f"{round_name}.offers.{code}.text: missing {locale}")


def parse_campaign(path: Path) -> Campaign:
    try:
        raw = read_yaml(path) or {}
    except YamlFileError as exc:
        raise CampaignError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise CampaignError(f"{path}: must be a mapping")
    if raw.get("name", path.stem) != path.stem:  # a name key once failed with a TypeError
        raise CampaignError(
            f"{path}: name: {raw['name']!r}: a campaign is named by its file ({path.stem!r})"
        )
    try:
        return Campaign.model_validate({**raw, "name": path.stem})
    except ValidationError as exc:
        problems = "; ".join(
            # a check across fields names them in its message, and has no location of its own
            ": ".join(filter(None, (".".join(str(p) for p in err["loc"]), err["msg"])))
            for err in exc.errors()
        )
        raise CampaignError(f"{path}: {problems}") from None
