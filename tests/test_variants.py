"""Message variants: the campaign field, the bandit's assignment on the outbox, its stopping
rule on simulated populations with a known truth, and the figures every surface shows."""

import dataclasses
import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from campaigns.catalog import load_campaign, load_campaigns
from campaigns.content import LinkSettings, StepRenderer
from campaigns.planning import Plan, record_run, run_steps
from campaigns.spec import DEFINITIONS_DIR, CampaignError, Messages, StoppingRule, VariantTest
from campaigns.variants import Tally, allocate, simulate, tally
from careloop.cli import app
from insights.monthly import configured_monthly_report
from insights.report import write_reports
from insights.report_html import render_html
from insights.variants import variant_report
from segments.registry import RULES_DIR, load_rules
from tests.factories import add_sms_crowd, add_store

AS_OF = date(2026, 6, 15)  # add_sms_crowd's birthdays
MARK = {"zh-CN": "亲手写给您", "en": "written for you"}  # the challenger's words
SEEDS = (1, 2, 3, 4, 5)


def _messages(locale: str, words: str) -> Messages:
    text = f"{{{{ name }}}}，生日快乐！{words}" if locale == "zh-CN" else f"Happy birthday! {words}"
    return Messages(sms=text, email_subject=text, email_body=text, voice=text)


def _test(**overrides) -> VariantTest:
    fields = {
        "outcome": "csat",
        "min_share": 0.1,
        "monitor_share": 0.05,
        "stop": StoppingRule(p_best=0.997, min_outcomes=200, max_looks=30),
        "messages": {"warm": {loc: _messages(loc, MARK[loc]) for loc in MARK}},
        **overrides,
    }
    return VariantTest(**fields)


def _birthday_with(settings, test: VariantTest, holdout: float = 10.0):
    loaded = load_campaigns(settings)["birthday"]
    care = loaded.campaign.care.model_copy(update={"variants": test})
    campaign = loaded.campaign.model_copy(update={"care": care, "holdout_percent": holdout})
    links = LinkSettings(settings.public_url, settings.link_secret.get_secret_value())
    return dataclasses.replace(loaded, campaign=campaign, care=StepRenderer(care, links))


def _plan(con, settings, loaded, as_of=AS_OF, run="r1", dry_run=False, now=None):
    created = now or datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    plan = Plan(con, settings, loaded, as_of, 1, run, dry_run=dry_run, created_at=created)
    run_steps(plan)
    if not dry_run:
        record_run(plan)
    return plan


def _assigned(con, table="care_actions"):
    return dict(con.execute(f"SELECT action_id, variant FROM {table} ORDER BY 1").fetchall())


def _rate(con, variant: str, score: int, sent_at: datetime, received_at: datetime) -> None:
    """Every contacted send of ``variant`` sent at ``sent_at`` and rated ``score``."""
    con.execute(
        "UPDATE care_actions SET sent_at = ?, status = 'delivered' "
        "WHERE variant = ? AND status = 'queued'",
        [sent_at, variant],
    )
    con.execute(
        """INSERT INTO latest_ratings (action_id, evaluation_id, subscriber_id,
               campaign_id, round, store_id, channel, score, comment, received_at)
               SELECT action_id, 'E' || action_id, subscriber_id,
               campaign_id, round, store_id, channel, ?, NULL, ?
           FROM care_actions WHERE variant = ? AND status = 'delivered'""",
        [score, received_at, variant],
    )


# --- the campaign field ---------------------------------------------------------------------


def _write(tmp_path: Path, change) -> Path:
    raw = yaml.safe_load((DEFINITIONS_DIR / "store_visit.yaml").read_text())
    change(raw)
    path = tmp_path / "visit.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def _load(settings, path: Path):
    return load_campaign(path, load_rules(RULES_DIR), settings)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda r: r["care"]["variants"].update(outcome="clicks"), "care.variants.outcome"),
        (lambda r: r["care"]["variants"].update(min_share=0.6), "care.variants.min_share"),
        (lambda r: r["care"]["variants"]["stop"].update(p_best=1.5), "care.variants.stop.p_best"),
        (lambda r: r["care"]["variants"].update(messages={}), "care.variants.messages"),
        (
            lambda r: r["care"]["variants"]["messages"].update(standard={}),
            "variant names ['standard']",
        ),
        (
            lambda r: r["care"]["variants"]["messages"]["personal"].pop("en"),
            "care.variants.messages.personal: missing locale en",
        ),
        (
            lambda r: r["care"]["variants"]["messages"]["personal"]["en"].update(sms="{{ nme }}"),
            "variants.messages.personal.en.sms",
        ),
        (
            lambda r: r["second_round"].update(variants=r["care"]["variants"]),
            "second_round: Value error, variants: only a first round",
        ),
    ],
)
def test_a_bad_variant_field_is_named(tmp_path, settings, change, named):
    with pytest.raises(CampaignError) as caught:
        _load(settings, _write(tmp_path, change))
    assert named in str(caught.value)


def test_the_shipped_campaigns_load_and_store_visit_tests_a_variant(settings):
    catalog = load_campaigns(settings)
    test = catalog["store_visit"].campaign.care.variants
    assert test is not None and list(catalog["store_visit"].campaign.care.variant_messages()) == [
        "standard",
        "personal",
    ]
    assert all(c.campaign.care.variants is None for n, c in catalog.items() if n != "store_visit")


# --- the bandit on simulated populations --------------------------------------------------


def _late_share(run, best: int) -> float:
    late = run.sends[int(len(run.sends) * 0.7) :]
    return float(late[:, best].sum() / late.sum())


@pytest.mark.parametrize("seed", SEEDS)
def test_with_a_planted_lift_the_bandit_sends_the_best_and_declares_it(seed):
    # three variants, the last 8 points better, 600 sends and ~260 ratings a plan
    run = simulate(
        [0.55, 0.55, 0.63], _test(min_share=0.1), looks=30, sends_per_look=600,
        outcome_share=0.43, seed=seed,
    )  # fmt: skip
    assert run.winner == 2
    assert _late_share(run, 2) >= 0.8


def test_with_no_difference_the_false_winner_rate_stays_within_the_stated_rate():
    runs = 300
    test = _test()
    declared = sum(
        simulate([0.55, 0.55], test, looks=test.stop.max_looks, sends_per_look=300,
                 outcome_share=0.43, seed=10_000 + i).winner is not None
        for i in range(runs)
    )  # fmt: skip
    stated = 0.05
    margin = 2.33 * math.sqrt(stated * (1 - stated) / runs)  # one-sided 99% binomial margin
    assert declared / runs <= stated + margin


def test_no_winner_is_declared_before_every_variant_has_its_minimum():
    run = simulate(
        [0.30, 0.90], _test(stop=StoppingRule(p_best=0.95, min_outcomes=400, max_looks=30)),
        looks=30, sends_per_look=300, outcome_share=0.43, seed=3,
    )  # fmt: skip
    # the weak variant gets 10% of 300 (~13 ratings) a plan: 400 ratings take some 30 plans
    assert run.declared_look is None or run.declared_look >= 25


def test_every_variant_keeps_its_minimum_share_until_the_winner():
    counts = Tally(
        ("a", "b", "c"), np.array([900, 900, 900]), np.array([500, 500, 500]),
        np.array([50, 250, 480]),
    )  # fmt: skip
    arms = allocate(1000, counts, _test(min_share=0.15), None, np.random.default_rng(1))
    assert np.bincount(arms, minlength=3).min() >= 150
    after = allocate(1000, counts, _test(monitor_share=0.05), 2, np.random.default_rng(1))
    assert np.bincount(after, minlength=3).tolist() == [50, 50, 900]
    for seed in SEEDS:
        run = simulate([0.5, 0.6, 0.7], _test(min_share=0.12), looks=20, sends_per_look=250,
                       outcome_share=0.4, seed=seed)  # fmt: skip
        before = run.sends[: (run.declared_look or 21) - 1]
        assert (before >= math.ceil(0.12 * 250)).all()


# --- on the outbox --------------------------------------------------------------------------


def test_sends_get_a_variant_and_its_words_and_the_holdout_none(con, settings):
    add_store(con)
    add_sms_crowd(con, 400)
    _plan(con, settings, _birthday_with(settings, _test()))
    rows = con.execute(
        "SELECT status, variant, body FROM care_actions WHERE status IN ('queued', 'held_out')"
    ).fetchall()
    held = [r for r in rows if r[0] == "held_out"]
    sent = [r for r in rows if r[0] == "queued"]
    assert held and all(variant is None for _, variant, _ in held)
    assert {variant for _, variant, _ in sent} == {"standard", "warm"}
    for _, variant, body in sent:
        assert (MARK["zh-CN"] in body) == (variant == "warm")
    # no outcome yet: both posteriors are flat, so the split is near even
    warm = sum(variant == "warm" for _, variant, _ in sent)
    assert 0.35 < warm / len(sent) < 0.65


def test_a_rerun_of_the_same_plan_assigns_the_same_variants(con, settings):
    add_store(con)
    add_sms_crowd(con, 300)
    loaded = _birthday_with(settings, _test())
    _plan(con, settings, loaded, run="first")
    first = _assigned(con)
    con.execute("DELETE FROM care_actions")
    con.execute("DELETE FROM campaign_runs")
    preview = _plan(con, settings, loaded, run="preview", dry_run=True)
    assert sum(preview.figures["variants"].values()) > 200
    assert _assigned(con, "plan_final") == first
    _plan(con, settings, loaded, run="again")
    assert _assigned(con) == first


def test_the_bandit_learns_from_outcomes_and_never_reads_the_holdout(con, settings):
    add_store(con)
    add_sms_crowd(con, 1200)
    stop = StoppingRule(p_best=0.99, min_outcomes=20, max_looks=30)
    loaded = _birthday_with(settings, _test(stop=stop, min_share=0.1), holdout=20.0)
    day = datetime(2026, 6, 15, 2, tzinfo=UTC)
    _plan(con, settings, loaded, now=day)
    # the held-out rows, given a variant, a send and delighted ratings by a broken writer,
    # must still not count
    con.execute(
        "UPDATE care_actions SET variant = 'standard', sent_at = ? WHERE status = 'held_out'",
        [day],
    )
    con.execute(
        """INSERT INTO latest_ratings (action_id, evaluation_id, subscriber_id,
               campaign_id, round, store_id, channel, score, comment, received_at)
               SELECT action_id, 'E' || action_id, subscriber_id,
               campaign_id, round, store_id, channel, 5, NULL, ?
           FROM care_actions WHERE status = 'held_out'""",
        [day + timedelta(hours=1)],
    )
    _rate(con, "warm", 5, day, day + timedelta(hours=1))
    _rate(con, "standard", 2, day, day + timedelta(hours=1))
    step = loaded.campaign.care
    counts = tally(con, "birthday", step, day + timedelta(days=1), 72)
    contacted = con.execute(
        "SELECT variant, count(*) FROM care_actions WHERE status = 'delivered' GROUP BY ALL"
    ).fetchall()
    assert dict(zip(counts.names, counts.outcomes.tolist(), strict=True)) == dict(contacted)
    assert counts.successes.tolist() == [0, dict(contacted)["warm"]]

    # the next day's plan sees warm far better: it is declared and gets all but 5%
    next_day = AS_OF + timedelta(days=1)
    add_sms_crowd_from(con, 2000, 600, born=date(1990, 6, 16))
    _plan(con, settings, loaded, as_of=next_day, run="r2", now=day + timedelta(days=1))
    declared = con.execute("SELECT variant, declared_on, look FROM variant_winners").fetchall()
    assert declared == [("warm", next_day, 2)]
    new = con.execute(
        "SELECT variant, count(*) FROM care_actions WHERE run_id = 'r2' AND variant IS NOT NULL "
        "GROUP BY ALL"
    ).fetchall()
    shares = dict(new)
    assert shares["standard"] == math.floor(0.05 * sum(shares.values()))

    # planning that day again, the winner now on record, assigns the same
    assigned = _assigned(con)
    con.execute("DELETE FROM care_actions WHERE run_id = 'r2'")
    con.execute("DELETE FROM campaign_runs WHERE run_id = 'r2'")
    _plan(con, settings, loaded, as_of=next_day, run="r2", now=day + timedelta(days=1))
    assert _assigned(con) == assigned
    assert con.execute("SELECT count(*) FROM variant_winners").fetchone() == (1,)


def test_the_response_rate_counts_a_send_once_its_reply_window_is_over(con, settings):
    add_store(con)
    add_sms_crowd(con, 300)
    loaded = _birthday_with(settings, _test(outcome="response"))
    day = datetime(2026, 6, 15, 2, tzinfo=UTC)
    _plan(con, settings, loaded, now=day)
    _rate(con, "warm", 5, day, day + timedelta(hours=1))
    con.execute("UPDATE care_actions SET sent_at = ? WHERE variant = 'standard'", [day])
    step = loaded.campaign.care
    early = tally(con, "birthday", step, day + timedelta(hours=2), reply_window_hours=72)
    assert early.outcomes.tolist() == [0, 0] and early.sends.sum() > 0
    late = tally(con, "birthday", step, day + timedelta(hours=73), reply_window_hours=72)
    assert late.outcomes.tolist() == late.sends.tolist()
    assert late.successes.tolist() == [0, late.sends[1]]


def add_sms_crowd_from(con, first: int, count: int, born: date) -> None:
    """``count`` more SMS-only subscribers born on ``born``, numbered from ``first``."""
    con.execute(
        """
        INSERT INTO subscribers
        SELECT 'S' || i, 'n', '+8613' || lpad(i::VARCHAR, 9, '0'), NULL, ?::DATE,
               DATE '2015-01-01', 'standard', 'ST1', 'Asia/Shanghai', 'zh-CN', true, false, false,
               NULL
        FROM range(?, ?) t(i)""",
        [born, first, first + count],
    )


def test_the_insights_command_and_the_monthly_report_show_the_same_figures(con, settings, tmp_path):
    add_store(con)
    add_sms_crowd(con, 400)
    loaded = _birthday_with(settings, _test(stop=StoppingRule(p_best=0.9, min_outcomes=10)))
    day = datetime(2026, 6, 15, 2, tzinfo=UTC)
    _plan(con, settings, loaded, now=day)
    _rate(con, "warm", 4, day, day + timedelta(hours=2))
    _rate(con, "standard", 3, day, day + timedelta(hours=2))
    now = datetime(2026, 7, 1, tzinfo=UTC)
    report = variant_report(con, "birthday", now, settings.reply_window_hours)
    shown = report.as_json()
    rows = {v["variant"]: v for v in shown["variants"]}
    assert rows["warm"]["rate"] == 1.0 and rows["standard"]["rate"] == 0.0
    assert rows["warm"]["ci_low"] > 0.9 and rows["standard"]["ci_high"] < 0.1
    assert 0.9999 < rows["warm"]["p_best"] < 1  # every draw, and still not certainty
    assert shown["winner"] is None  # nothing declared: no plan has looked since
    monthly = configured_monthly_report(con, settings, "2026-06", now)
    assert monthly.as_json()["variants"] == [shown]
    html = render_html(monthly)
    assert "Message variants" in html and "warm" in html
    written = write_reports(con, tmp_path, "t", "Asia/Shanghai", now=now)
    warm = rows["warm"]
    row = f"| warm | {warm['sends']} | {warm['outcomes']} | 100.0 | "
    assert row in written.path.read_text()
    with pytest.raises(CampaignError, match="campaigns that have: birthday"):
        variant_report(con, "tenure", now, settings.reply_window_hours)


def test_the_variants_command_prints_the_test_and_names_a_bad_argument(con, settings):
    add_store(con)
    add_sms_crowd(con, 300)
    loaded = _birthday_with(settings, _test())
    day = datetime(2026, 6, 15, 2, tzinfo=UTC)
    _plan(con, settings, loaded, now=day)
    _rate(con, "warm", 5, day, day + timedelta(hours=2))
    _rate(con, "standard", 1, day, day + timedelta(hours=2))
    con.close()  # the command opens the warehouse read-only
    runner = CliRunner()
    as_json = runner.invoke(
        app, ["insights", "variants", "--campaign", "birthday", "--format", "json"]
    )
    assert as_json.exit_code == 0, as_json.output
    shown = {v["variant"]: v for v in json.loads(as_json.output)["variants"]}
    assert shown["warm"]["rate"] == 1.0 and shown["standard"]["rate"] == 0.0
    assert shown["warm"]["outcomes"] + shown["standard"]["outcomes"] == sum(
        v["sends"] for v in shown.values()
    )
    table = runner.invoke(app, ["insights", "variants", "--campaign", "birthday"])
    assert "warm" in table.output and "no winner declared yet" in table.output
    unknown = runner.invoke(app, ["insights", "variants", "--campaign", "tenure"])
    assert unknown.exit_code != 0 and "'tenure' has planned nothing (an unknown" in unknown.output
    bad = runner.invoke(app, ["insights", "variants", "--campaign", "birthday", "--format", "xml"])
    assert bad.exit_code == 2 and "--format" in bad.output


def test_p_best_is_shown_to_four_places_and_never_as_certainty():
    from insights.variants import p_best_text

    assert [p_best_text(p) for p in (0.9998, 0.99995, 1.0, 0.5, 0.00004, 0.0)] == [
        "0.9998", ">0.9999", ">0.9999", "0.5000", "<0.0001", "<0.0001",
    ]  # fmt: skip
