from datetime import date

import numpy as np
import pytest

from segments.models import ModelError, score, train
from segments.registry import SegmentError, load_rules, materialize
from tests.factories import add_store
from warehouse.ratings import rebuild_ratings

AS_OF = date(2026, 3, 1)


@pytest.fixture
def rated(con):
    """300 customers, 4 ratings each; new standard-tier customers complain far more often."""
    add_store(con)
    rng = np.random.default_rng(11)
    for n in range(300):
        risky = n % 2 == 0
        con.execute(
            "INSERT INTO subscribers VALUES (?, 'c', NULL, NULL, NULL, ?, ?, 'ST1', "
            "'Asia/Shanghai', 'zh-CN', true, true, true, NULL)",
            [
                f"S{n:03d}",
                date(2025, 9, 1) if risky else date(2012, 1, 1),
                "standard" if risky else "platinum",
            ],
        )
        for k in range(4):
            unhappy = rng.random() < (0.5 if risky else 0.08)
            score_ = int(rng.integers(1, 3) if unhappy else rng.integers(4, 6))
            con.execute(
                "INSERT INTO evaluations (evaluation_id, dedupe_key, action_id, subscriber_id, "
                "campaign_id, round, channel, intent, score, attribution, received_at) VALUES "
                "(?, ?, ?, ?, 'birthday', 1, 'sms', 'rating', ?, 'matched', "
                "TIMESTAMPTZ '2026-01-01 00:00+00' + to_days(?) + to_hours(?))",
                [f"E{n}-{k}", f"k{n}-{k}", f"A{n}-{k}", f"S{n:03d}", score_, k * 14, n % 24],
            )
    rebuild_ratings(con)  # written as collect would have
    return con


def test_the_model_beats_a_constant_predictor_on_held_out_ratings(rated, tmp_path):
    first = train(rated, tmp_path)
    m = first.metrics
    assert m["held_out_rows"] == 240 and m["training_rows"] == 960
    assert m["auc"] > 0.7 > m["auc_constant"]
    assert m["brier"] < m["brier_constant"]
    assert len(m["calibration"]) >= 3
    assert first.version == 1 and first.path.exists()
    assert train(rated, tmp_path).version == 2  # versions, never overwrites


def test_scores_feed_the_at_risk_rule(rated, tmp_path):
    train(rated, tmp_path)
    assert score(rated, AS_OF) == 300
    risky, safe = rated.execute(
        "SELECT avg(probability) FILTER (s.tier = 'standard'), "
        "avg(probability) FILTER (s.tier = 'platinum') "
        "FROM model_scores JOIN subscribers s USING (subscriber_id)"
    ).fetchone()
    assert risky > 2 * safe
    rule = load_rules()["at_risk"]
    size = materialize(rated, rule, AS_OF, "members", {"threshold": 0.25})
    tiers = dict(
        rated.execute(
            "SELECT s.tier, count(*) FROM members "
            "JOIN subscribers s USING (subscriber_id) GROUP BY ALL"
        ).fetchall()
    )
    assert size > 0 and tiers.get("standard", 0) > 5 * tiers.get("platinum", 0)


def test_without_a_model_the_rule_says_what_to_run(con):
    with pytest.raises(ModelError, match="run 'careloop model train' first"):
        score(con, AS_OF)
    with pytest.raises(
        SegmentError,
        match=r"no at_risk scores for 2026-03-01: run careloop "
        r"model train",
    ):
        materialize(con, load_rules()["at_risk"], AS_OF, "members")


def test_too_little_history_is_refused(con, tmp_path):
    with pytest.raises(ModelError, match="not enough rated care"):
        train(con, tmp_path)


def test_the_demo_plants_a_signal_the_model_learns(con, tmp_path):
    """The demo's past (a year of rated visits) is drawn from the customers' moods: the model
    ranks held-out ratings well above chance, and the README's threshold finds members."""
    from demo.data import build_demo_data

    data = build_demo_data(con, subscribers=5000, seed=7, until=AS_OF, history_before=AS_OF)
    assert data.past_ratings > 4000
    metrics = train(con, tmp_path).metrics
    assert metrics["auc"] > 0.62 and metrics["brier"] < metrics["brier_constant"]
    score(con, AS_OF)
    size = materialize(con, load_rules()["at_risk"], AS_OF, "members", {"threshold": 0.4})
    assert 0 < size < 5000 / 4
    # who is at risk: the new and the standard tier, as planted
    new, old = con.execute(
        "SELECT avg(probability) FILTER (date_diff('day', s.joined_on, DATE '2026-03-01') < 700), "
        "avg(probability) FILTER (date_diff('day', s.joined_on, DATE '2026-03-01') > 3000) "
        "FROM model_scores JOIN subscribers s USING (subscriber_id)"
    ).fetchone()
    assert new > 1.3 * old
