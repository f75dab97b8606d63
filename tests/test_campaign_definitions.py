import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from campaigns.catalog import load_campaign, load_campaigns
from campaigns.content import LONG_SAMPLES, SURVEY_HOW
from campaigns.spec import DEFINITIONS_DIR, CampaignError
from core.tokens import TokenError, verify
from segments.registry import load_rules


def test_builtin_campaigns_load(settings):
    assert sorted(load_campaigns(settings)) == ["birthday", "store_visit", "tenure"]


def broken(tmp_path: Path, old: str, new: str) -> Path:
    text = (DEFINITIONS_DIR / "birthday.yaml").read_text()
    assert old in text
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("{{ age }}岁", "{{ agee }}岁", "care.messages.zh-CN.sms: 'agee' is undefined"),
        ("{{ offer }}，已自动", "{{ offer }，已自动", "care.messages.zh-CN.sms"),
        # the step named: both have the same fields
        (
            "很抱歉这次没能让您满意。我们将安排",
            "很抱歉{{ nickname }}。我们将安排",
            "second_round.messages.zh-CN.sms: 'nickname' is undefined",
        ),
        # in a branch no sample takes: the check rendered samples only, and a run stopped
        # mid-way at its first gold member
        (
            "{{ age }}岁",
            "{{ age }}岁{% if tier == 'gold' %}{{ nmae }}{% endif %}",
            "care.messages.zh-CN.sms: 'nmae' is undefined",
        ),
        (
            "{{ age }}岁",
            "{{ age }}岁{% if tier == 'gold' %}{{ name | shout }}{% endif %}",
            "care.messages.zh-CN.sms: no filter named 'shout'",
        ),
        (
            "{{ age }}岁",
            "{{ age }}岁{% if tier == 'gold' %}{% if age is prime %}!{% endif %}{% endif %}",
            "care.messages.zh-CN.sms: no test named 'prime'",
        ),
        ("segment: birthday", "segment: birthdays", "unknown segment 'birthdays'"),
        ("    platinum: {code: BDAY-VIP", "    diamond: {code: BDAY-VIP", "unknown tier"),
        ("channels: [sms, email, voice]", "channels: [sms, fax]", "channels"),
        ("holdout_percent: 10", "holdout_percent: 80", "holdout_percent"),
        (
            'send_window: ["09:00", "21:00"]',
            'send_window: ["21:00", "09:00"]',
            "send_window must start before it ends",
        ),
        # within 3 parts in GSM-7, 4 once the customer's name is Chinese (UCS-2, 67 a part):
        # the check tried Latin names and stores only, and such texts went out in 4 parts
        (
            "We've added {{ offer }} to your account.",
            "We've added {{ offer }} to your account, with our warmest wishes for the year.",
            "en.sms with offer gold for 欧阳晓东 of 乌鲁木齐12号旗舰店: 4 SMS segments",
        ),
        # a name key and a key that is no string raised TypeErrors ("got multiple values")
        ("description:", "name: birthday2\ndescription:", "a campaign is named by its file"),
        ("description:", "1: one\ndescription:", "1: Keys should be strings"),
        # a key given twice: PyYAML kept the last, and the file loaded
        ("description:", "holdout_percent: 20\ndescription:", "key 'holdout_percent' given twice"),
    ],
)
def test_a_broken_definition_names_file_and_reason(settings, tmp_path, old, new, reason):
    with pytest.raises(CampaignError, match=r"broken\.yaml") as err:
        load_campaign(broken(tmp_path, old, new), load_rules(), settings)
    assert reason in str(err.value)


def test_missing_tier_offer_is_refused(settings, tmp_path):
    path = broken(
        tmp_path,
        '    silver: {code: BDAY-5GB, text: {zh-CN: "5GB 国内流量包", en: "a 5 GB data pack"}}\n',
        "",
    )
    with pytest.raises(CampaignError, match=r"no offer for tier\(s\) \['silver'\]"):
        load_campaign(path, load_rules(), settings)


def test_rating_links_are_signed_and_scoped(settings):
    from core.tokens import rating_links

    issued = datetime(2026, 3, 1, tzinfo=UTC)
    links = rating_links("ca_1", "https://care.example.com", "secret", issued)
    token = links[4].rsplit("/", 1)[1]
    parsed = verify(token, "secret", issued)
    assert (parsed.action_id, parsed.purpose, parsed.score) == ("ca_1", "rate", 4)
    with pytest.raises(TokenError, match="bad signature"):
        verify(token, "other-secret", issued)
    with pytest.raises(TokenError, match="bad signature"):
        verify(links[5].rsplit("/", 1)[1][:-2] + "xx", "secret", issued)
    with pytest.raises(TokenError, match="expired"):
        verify(token, "secret", datetime(2026, 4, 1, tzinfo=UTC))


@pytest.mark.parametrize("channel", ["sms", "voice"])
def test_a_surveys_question_and_how_to_answer_are_two_sentences(settings, channel):
    """Every English text and call ran them together ("…with the service?Reply 1-5"), and
    every Chinese one put a space after its full stop ("满意吗？ 回复")."""
    for loaded in load_campaigns(settings).values():
        for renderer, rule in (
            (loaded.care, loaded.rule),
            (loaded.second_round, loaded.second_round_rule),
        ):
            for locale, gap in (("en", " "), ("zh-CN", "")):
                context = {
                    **LONG_SAMPLES[locale],
                    "locale": locale,
                    "offer": "an offer",
                    "offer_code": "CODE",
                    "variant": "standard",
                    **{column: 3 for column in rule.columns},
                }
                _, body = renderer.render(channel, "ca_1", context, datetime(2026, 3, 1))
                question = renderer.step.survey[locale]
                how = SURVEY_HOW[channel][locale]
                assert f"{question}{gap}{how}" in body, (loaded.campaign.name, locale, body)
                if locale == "zh-CN":
                    assert not re.search(r"[。？！] ", body), body


@pytest.mark.parametrize(("years", "said"), [(1, "1 year with us"), (3, "3 years with us")])
def test_a_tenure_call_says_year_or_years_as_its_text_does(settings, years, said):
    tenure = load_campaigns(settings)["tenure"]
    context = {
        **LONG_SAMPLES["en"],
        "locale": "en",
        "offer": "a gift",
        "offer_code": "T1",
        "variant": "standard",
        **{column: years for column in tenure.rule.columns},
    }
    for channel in ("voice", "sms"):
        _, body = tenure.care.render(channel, "ca_1", context, datetime(2026, 3, 1))
        assert said in body, body


def test_the_calls_survey_asked_again_is_spaced_as_its_language_writes():
    from service.replies import voice_survey

    assert "非常满意。如不想" in voice_survey("https://x/g", "zh-CN")
    assert "very satisfied. To receive" in voice_survey("https://x/g", "en")


def test_an_emails_unsubscribe_label_takes_its_languages_colon(settings):
    birthday = load_campaigns(settings)["birthday"]
    for locale, label in (("zh-CN", "退订邮件：http"), ("en", "Unsubscribe: http")):
        context = {**LONG_SAMPLES[locale], "locale": locale, "offer": "x", "offer_code": "C",
                   "variant": "standard", "age": 30}  # fmt: skip
        _, body = birthday.care.render("email", "ca_1", context, datetime(2026, 3, 1))
        assert label in body, body


@pytest.mark.parametrize(
    "template",
    [
        "{% if tier == 'gold' %}{% set g = '尊敬的' %}{% else %}{% set g = '' %}{% endif %}"
        "{{ g }}{{ name }}，{{ age }}岁生日快乐！",
        "{% if nickname is defined %}{{ nickname }}{% else %}{{ name }}{% endif %}，{{ age }}岁！",
        "{{ nickname | default(name) }}，{{ age }}岁！",
        "{% for c in name %}{% set last = c %}{% endfor %}{{ last | default('') }}{{ age }}岁！",
        "{% for i in range(2) %}{{ loop.index }}{% endfor %}{{ name }}{{ age }}岁！",
    ],
)
def test_a_template_that_sets_or_asks_about_its_own_names_loads(settings, tmp_path, template):
    """The check of every name a template uses refused names a template sets in both of
    its branches, or uses only behind `is defined` or `default`: they render."""
    load_campaign(
        broken(tmp_path, "{{ name }}，祝您{{ age }}岁生日快乐！", template), load_rules(), settings
    )
