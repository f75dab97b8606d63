"""Content: pick the offer for the customer's tier and render the message on their channel.

Templates are Jinja2 in a sandbox with strict undefined variables. They may use ``name``,
``tier``, ``locale``, ``offer``, ``offer_code``, ``store_name``, ``store_city`` and every column
the campaign's segment rule returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import product
from typing import Any

import polars as pl
from jinja2 import StrictUndefined, Template, TemplateError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from campaigns.sms import segment_count
from campaigns.spec import CONTROL_VARIANT, CareStep, Channel, Locale
from core.ivr import OFFER_OPT_OUT
from core.tokens import rating_links, unsubscribe_link

BASE_VARIABLES = ("name", "tier", "locale", "offer", "offer_code", "store_name", "store_city")
SURVEY_HOW: dict[Channel, dict[str, str]] = {
    "sms": {"zh-CN": "回复1-5打分（5=非常满意）。", "en": "Reply 1-5 (5 = very satisfied)."},
    "voice": {
        "zh-CN": "请按1到5键打分，5表示非常满意。",
        "en": "Please press 1 to 5, where 5 means very satisfied.",
    },
    "email": {"zh-CN": "一键评分：", "en": "Rate us with one click:"},
}
# Between two sentences: Chinese leaves no space after its full stop or question mark.
SENTENCE_GAP = {"zh-CN": "", "en": " "}
LABEL_COLON = {"zh-CN": "：", "en": ": "}  # a label's colon, full-width in Chinese
SMS_OPT_OUT = {"zh-CN": "回复TD退订", "en": "Reply STOP to opt out"}
EMAIL_UNSUBSCRIBE = {"zh-CN": "退订邮件", "en": "Unsubscribe"}
# A NULL a rule returns is written as nothing, not "None" (an unknown name is still an error).
_ENV = SandboxedEnvironment(
    undefined=StrictUndefined,
    autoescape=False,
    finalize=lambda value: "" if value is None else value,
)


def ordinal(value: object) -> str:
    """English ordinals for templates: ``{{ age | ordinal }}`` -> 21st, 22nd, 23rd, 11th."""
    number = int(str(value))
    if number % 100 in (11, 12, 13):
        return f"{number}th"
    return f"{number}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th') }"


_ENV.filters["ordinal"] = ordinal
# Long but real values, to judge an SMS template's length before any customer is known.
LONG_SAMPLES: dict[str, dict[str, str]] = {
    "zh-CN": {
        "name": "欧阳晓东",
        "tier": "platinum",
        "store_name": "乌鲁木齐12号旗舰店",
        "store_city": "乌鲁木齐",
    },
    "en": {
        "name": "Maximilian Fitzgerald-Montgomery",
        "tier": "platinum",
        "store_name": "Los Angeles #12 Flagship",
        "store_city": "Los Angeles",
    },
}


# Each sample customer at each sample store, of either script.
_SAMPLE_PEOPLE = [
    {**customer, **{k: v for k, v in store.items() if k.startswith("store_")}}
    for customer, store in product(LONG_SAMPLES.values(), repeat=2)
]


class ContentError(ValueError):
    pass


@dataclass(frozen=True)
class LinkSettings:
    public_url: str
    secret: str


class StepRenderer:
    """Compiled templates of one care step; render() builds the finished text per channel."""

    def __init__(self, step: CareStep, links: LinkSettings) -> None:
        self.step = step
        self.links = links
        self._templates: dict[tuple[str, Locale, str], Template] = {}
        self._parsed: dict[tuple[str, Locale, str], nodes.Template] = {}
        for variant, by_locale in step.variant_messages().items():
            for locale, messages in by_locale.items():
                for field_name, source in messages.model_dump().items():
                    try:
                        template = _ENV.from_string(source)
                        parsed = _ENV.parse(source)
                    except TemplateError as exc:
                        where = _where(variant, locale, field_name)
                        raise ContentError(f"{where}: {exc}") from None
                    self._templates[(variant, locale, field_name)] = template
                    self._parsed[(variant, locale, field_name)] = parsed

    def trial_render(self, extra_columns: Iterable[str]) -> None:
        """Check every template's names, then render it with sample values, so a bad variable,
        filter or test fails at load time: also one in a branch the samples do not take
        (``{% if tier == 'gold' %}{{ nmae }}{% endif %}``), which would stop a run mid-way."""
        known = {*BASE_VARIABLES, *extra_columns}
        sample: dict[str, Any] = {name: "x" for name in BASE_VARIABLES}
        sample.update({column: 1 for column in extra_columns})
        for (variant, locale, field_name), template in self._templates.items():
            where = _where(variant, locale, field_name)
            unknown = _unknown_names(self._parsed[(variant, locale, field_name)], known)
            if unknown:
                raise ContentError(f"{where}: {unknown}")
            try:
                template.render(sample)
            except TemplateError as exc:
                raise ContentError(f"{where}: {exc}") from None

    def worst_sms_segments(self, extra_columns: Iterable[str]) -> tuple[int, str]:
        """The most segments any locale's SMS takes, with long sample values and each tier's
        offer; returned with where it happens."""
        worst, where = 0, ""
        for variant, locale, field_name in self._templates:
            if field_name != "sms":
                continue
            # the customer and the store may be named in either script, whatever the message's
            # language: "成都4号店" in an English text takes it to UCS-2, 67 characters a part
            for people, (code, offer) in product(_SAMPLE_PEOPLE, self.step.offers.items()):
                sample: dict[str, Any] = {**people, **dict.fromkeys(extra_columns, 1000)}
                context = {
                    **sample,
                    "locale": locale,
                    "offer": offer.text[locale],
                    "offer_code": offer.code,
                    "variant": variant,
                }
                _, body = self.render("sms", "ca_sample", context, datetime(2000, 1, 1))
                if (count := segment_count(body)) > worst:
                    named = f"{people['name']} of {people['store_name']}"
                    where = f"{_where(variant, locale, 'sms')} with offer {code} for {named}"
                    worst = count
        return worst, where

    def render(
        self, channel: Channel, action_id: str, context: dict[str, Any], issued: datetime
    ) -> tuple[str | None, str]:
        locale: Locale = context["locale"]
        # a member the plan does not ask (another is asked on the same number) gets the care
        # without the survey
        asks = self.step.survey is not None and context.get("asks", True)
        survey = self.step.survey[locale] if asks and self.step.survey else None
        if channel in ("sms", "voice"):
            asked = (survey, SURVEY_HOW[channel][locale]) if survey else ()
            opt_out = (SMS_OPT_OUT if channel == "sms" else OFFER_OPT_OUT)[locale]
            return None, sentences(locale, self._text(locale, channel, context), *asked, opt_out)
        return self._text(locale, "email_subject", context), self._email_body(
            locale, action_id, context, survey, issued
        )

    def _email_body(
        self,
        locale: Locale,
        action_id: str,
        context: dict[str, Any],
        survey: str | None,
        issued: datetime,
    ) -> str:
        lines = [self._text(locale, "email_body", context)]
        if survey:
            lines += ["", sentences(locale, survey, SURVEY_HOW["email"][locale])]
            links = rating_links(action_id, self.links.public_url, self.links.secret, issued)
            lines += [f"  {score}: {url}" for score, url in links.items()]
        unsubscribe = unsubscribe_link(action_id, self.links.public_url, self.links.secret, issued)
        lines += ["", f"{EMAIL_UNSUBSCRIBE[locale]}{LABEL_COLON[locale]}{unsubscribe}"]
        return "\n".join(lines)

    def _text(self, locale: Locale, field_name: str, context: dict[str, Any]) -> str:
        # the variant the bandit chose for this row (campaigns/variants.py), else the step's own
        variant = context.get("variant") or CONTROL_VARIANT
        return self._templates[(variant, locale, field_name)].render(context).strip()


def sentences(locale: str, *parts: str) -> str:
    """Sentences one after another as the language writes them: a space between English ones,
    none after a Chinese full stop or question mark ("满意吗？回复1-5打分")."""
    return SENTENCE_GAP[locale].join(parts)


def _unknown_names(parsed: nodes.Template, known: set[str]) -> str | None:
    """The first variable, filter or test a template names that it cannot have, said as
    Jinja says it when rendering; None when every name is known. A name the template sets
    itself (in a branch too), or asks about (``is defined``, ``| default``), is its own."""
    undefined = sorted(meta.find_undeclared_variables(parsed) - known - _own_names(parsed))
    if undefined:
        return f"{undefined[0]!r} is undefined"
    for node in parsed.find_all(nodes.Filter):
        if node.name not in _ENV.filters:
            return f"no filter named {node.name!r}"
    for test in parsed.find_all(nodes.Test):
        if test.name not in _ENV.tests:
            return f"no test named {test.name!r}"
    return None


def _own_names(parsed: nodes.Template) -> set[str]:
    set_here = {name.name for name in parsed.find_all(nodes.Name) if name.ctx in ("store", "param")}
    asked = {
        node.node.name
        for node in [*parsed.find_all(nodes.Test), *parsed.find_all(nodes.Filter)]
        if node.name in ("defined", "undefined", "default", "d")
        and isinstance(node.node, nodes.Name)
    }
    return set_here | asked


def _where(variant: str, locale: str, field_name: str) -> str:
    """Where a template sits in the campaign file."""
    if variant == CONTROL_VARIANT:
        return f"messages.{locale}.{field_name}"
    return f"variants.messages.{variant}.{locale}.{field_name}"


def with_offers(step: CareStep, members: pl.DataFrame) -> pl.DataFrame:
    """Add ``offer_code``: the offer for each member's tier (``CareStep.offer_for``)."""
    codes = {tier: step.offer_for(tier).code for tier in step.offers}
    fallback = step.offers["default"].code if "default" in step.offers else None
    return members.with_columns(
        pl.col("tier")
        .replace_strict(codes, default=pl.lit(fallback, pl.String), return_dtype=pl.String)
        .alias("offer_code")
    )


def render_members(renderer: StepRenderer, members: pl.DataFrame, issued: datetime) -> pl.DataFrame:
    """``action_id``, ``subject``, ``body`` and (SMS) ``segments`` of each member's message on
    the channel chosen for them (column ``channel``): only that one is rendered, since only
    that one is sent (an email with its six signed links costs most of a row's work)."""
    out: dict[str, list[Any]] = {"action_id": [], "subject": [], "body": [], "segments": []}
    for row in members.iter_rows(named=True):
        channel = row["channel"]
        offer = renderer.step.offer_for(row["tier"])
        context = {**row, "offer": offer.text[row["locale"]], "offer_code": offer.code}
        subject, body = renderer.render(channel, row["action_id"], context, issued)
        out["action_id"].append(row["action_id"])
        out["subject"].append(subject)
        out["body"].append(body)
        out["segments"].append(segment_count(body) if channel == "sms" else None)
    return pl.DataFrame(
        out,
        schema={
            "action_id": pl.String,
            "subject": pl.String,
            "body": pl.String,
            "segments": pl.Int32,
        },
    )
