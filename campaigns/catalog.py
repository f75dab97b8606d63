"""Load every campaign definition and check it against the segment rules before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from campaigns.content import ContentError, LinkSettings, StepRenderer
from campaigns.spec import (
    DEFINITIONS_DIR,
    Campaign,
    CampaignError,
    CareStep,
    check_coverage,
    parse_campaign,
)
from core.settings import Settings
from segments.registry import RULES_DIR, SegmentError, SegmentRule, load_rules

# Second rounds target the members of this rule, whatever the campaign's own segment is.
SECOND_ROUND_SEGMENT = "dissatisfied"


@dataclass(frozen=True)
class LoadedCampaign:
    campaign: Campaign
    rule: SegmentRule
    care: StepRenderer
    second_round: StepRenderer
    second_round_rule: SegmentRule

    @property
    def name(self) -> str:
        return self.campaign.name


def load_campaign(
    path: Path,
    rules: dict[str, SegmentRule],
    settings: Settings,
    broken_rules: dict[str, str] | None = None,
) -> LoadedCampaign:
    campaign = parse_campaign(path)
    for segment in (campaign.segment, SECOND_ROUND_SEGMENT):
        if segment in (broken_rules or {}):
            raise CampaignError(f"{path}: uses segment {segment!r}, which cannot load")
        if segment not in rules:
            raise CampaignError(
                f"{path}: unknown segment {segment!r}; known: {', '.join(sorted(rules))}"
            )
    rule, second_rule = rules[campaign.segment], rules[SECOND_ROUND_SEGMENT]
    links = LinkSettings(settings.public_url, settings.link_secret.get_secret_value())
    try:
        rule.bind(date(2000, 1, 1), campaign.params)  # unknown params fail here, not mid-run
        check_coverage(campaign, settings.tiers)
        care = _renderer("care", campaign.care, links, rule.columns)
        second = _renderer("second_round", campaign.second_round, links, second_rule.columns)
        for name, renderer, columns in (
            ("care", care, rule.columns),
            ("second_round", second, second_rule.columns),
        ):
            _check_sms_length(campaign, name, renderer, columns)
    except (ContentError, CampaignError, ValueError) as exc:
        raise CampaignError(f"{path}: {exc}") from None
    return LoadedCampaign(campaign, rule, care, second, second_rule)


def _renderer(
    name: str, step: CareStep, links: LinkSettings, columns: dict[str, str]
) -> StepRenderer:
    """The step's templates compiled and tried; an error names the step ("second_round.
    messages.zh-CN.sms"): both steps have the same fields."""
    try:
        renderer = StepRenderer(step, links)
        renderer.trial_render(columns)
    except ContentError as exc:
        raise ContentError(f"{name}.{exc}") from None
    return renderer


def _check_sms_length(
    campaign: Campaign, round_name: str, renderer: StepRenderer, columns: dict[str, str]
) -> None:
    if "sms" not in renderer.step.channels:
        return
    segments, where = renderer.worst_sms_segments(columns)
    if segments > campaign.sms_max_segments:
        raise CampaignError(
            f"{round_name}.{where}: {segments} SMS segments with the survey and "
            f"opt-out line; the limit is {campaign.sms_max_segments}"
        )


@dataclass
class Broken:
    """The definitions that could not be loaded, each with its error: segment rules and
    campaigns by name."""

    rules: dict[str, str] = field(default_factory=dict)
    campaigns: dict[str, str] = field(default_factory=dict)

    def errors(self) -> list[str]:
        return [*self.rules.values(), *self.campaigns.values()]


def load_campaigns(
    settings: Settings,
    directory: Path = DEFINITIONS_DIR,
    rules_dir: Path = RULES_DIR,
    broken: Broken | None = None,
) -> dict[str, LoadedCampaign]:
    """Every campaign, checked against the rules. Given ``broken``, a campaign that cannot
    be loaded (its file, or a rule it uses) goes there and the others load; without, the
    first error raises."""
    broken_rules = None if broken is None else broken.rules
    rules = load_rules(rules_dir, broken_rules)
    catalog = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            catalog[path.stem] = load_campaign(path, rules, settings, broken_rules)
        except (CampaignError, SegmentError) as exc:
            if broken is None:
                raise
            broken.campaigns[path.stem] = str(exc)
    return catalog


def checked_campaign(
    settings: Settings,
    name: str,
    params: dict[str, Any] | None = None,
    broken: Broken | None = None,
) -> LoadedCampaign:
    """The named campaign with ``params`` checked against its rule's declarations; an unknown
    or broken campaign, or a bad value, raises CampaignError or SegmentError in one line. The
    other definitions that are broken go to ``broken`` (given), and stop nothing here."""
    broken = broken if broken is not None else Broken()
    catalog = load_campaigns(settings, broken=broken)
    if name in broken.campaigns:
        raise CampaignError(broken.campaigns[name])
    if name not in catalog:
        raise CampaignError(f"unknown campaign {name!r}; known: {', '.join(sorted(catalog))}")
    loaded = catalog[name]
    loaded.rule.bind(date(2000, 1, 1), {**loaded.campaign.params, **(params or {})})
    return loaded
