"""Load every campaign definition and check it against the segment rules before anything runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from campaigns.content import ContentError, LinkSettings, StepRenderer
from campaigns.spec import DEFINITIONS_DIR, Campaign, CampaignError, check_coverage, parse_campaign
from core.settings import Settings
from segments.registry import RULES_DIR, SegmentRule, load_rules

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


def load_campaign(path: Path, rules: dict[str, SegmentRule], settings: Settings) -> LoadedCampaign:
    campaign = parse_campaign(path)
    rule = rules.get(campaign.segment)
    if rule is None:
        raise CampaignError(
            f"{path}: unknown segment {campaign.segment!r}; known: {', '.join(sorted(rules))}"
        )
    links = LinkSettings(settings.public_url, settings.link_secret.get_secret_value())
    second_rule = rules[SECOND_ROUND_SEGMENT]
    try:
        rule.bind(date(2000, 1, 1), campaign.params)  # unknown params fail here, not mid-run
        check_coverage(campaign, settings.tiers)
        care = StepRenderer(campaign.care, links)
        care.trial_render(rule.columns)
        second = StepRenderer(campaign.second_round, links)
        second.trial_render(second_rule.columns)
        for name, renderer, columns in (
            ("care", care, rule.columns),
            ("second_round", second, second_rule.columns),
        ):
            _check_sms_length(campaign, name, renderer, columns)
    except (ContentError, CampaignError, ValueError) as exc:
        raise CampaignError(f"{path}: {exc}") from None
    return LoadedCampaign(campaign, rule, care, second, second_rule)


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


def load_campaigns(
    settings: Settings, directory: Path = DEFINITIONS_DIR, rules_dir: Path = RULES_DIR
) -> dict[str, LoadedCampaign]:
    rules = load_rules(rules_dir)
    return {
        path.stem: load_campaign(path, rules, settings) for path in sorted(directory.glob("*.yaml"))
    }


def checked_campaign(
    settings: Settings, name: str, params: dict[str, Any] | None = None
) -> LoadedCampaign:
    """The named campaign with ``params`` checked against its rule's declarations; an unknown
    campaign or a bad value raises CampaignError or SegmentError in one line."""
    catalog = load_campaigns(settings)
    if name not in catalog:
        raise CampaignError(f"unknown campaign {name!r}; known: {', '.join(sorted(catalog))}")
    loaded = catalog[name]
    loaded.rule.bind(date(2000, 1, 1), {**loaded.campaign.params, **(params or {})})
    return loaded
