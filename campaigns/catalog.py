"""Load every campaign definition and check it against the segment rules before anything runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from campaigns.content import ContentError, LinkSettings, StepRenderer
from campaigns.spec import DEFINITIONS_DIR, Campaign, CampaignError, check_coverage, parse_campaign
from careloop.settings import Settings
from segments.registry import RULES_DIR, SegmentRule, load_rules

# Second rounds target the members of this rule, whatever the campaign's own segment is.
SECOND_ROUND_SEGMENT = "dissatisfied"


@dataclass(frozen=True)
class LoadedCampaign:
    campaign: Campaign
    rule: SegmentRule
    care: StepRenderer
    second_round: StepRenderer

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
    try:
        rule.bind(date(2000, 1, 1), campaign.params)  # unknown params fail here, not mid-run
        check_coverage(campaign, settings.tiers)
        care = StepRenderer(campaign.care, links)
        care.trial_render(rule.columns)
        second = StepRenderer(campaign.second_round, links)
        second.trial_render(rules[SECOND_ROUND_SEGMENT].columns)
    except (ContentError, CampaignError, ValueError) as exc:
        raise CampaignError(f"{path}: {exc}") from None
    return LoadedCampaign(campaign, rule, care, second)


def load_campaigns(
    settings: Settings, directory: Path = DEFINITIONS_DIR, rules_dir: Path = RULES_DIR
) -> dict[str, LoadedCampaign]:
    rules = load_rules(rules_dir)
    return {
        path.stem: load_campaign(path, rules, settings) for path in sorted(directory.glob("*.yaml"))
    }
