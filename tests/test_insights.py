"""careloop insights on planted data: drivers ranked right where correlations rank them wrong,
a planted lift inside its interval, a planted hot topic found."""

import io
import itertools
import json
import math
import warnings

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LinearRegression
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_effectsize
from typer.testing import CliRunner

from careloop.cli import app
from insights.drivers import analyse, shapley_exact
from insights.exports import ExportError, bad_rows, numbers, read_export
from insights.lift import measure, measure_export
from insights.stats import sample_size, shown_p
from insights.topics import count_topics

runner = CliRunner()


def survey(n=6000, seed=1):
    """The overall score depends on problem_solved (1.0) and wait_time (0.9) only; staff_attitude
    has no effect but mirrors both, so its plain correlation with the score is the highest."""
    rng = np.random.default_rng(seed)
    solved, wait = rng.normal(size=n), rng.normal(size=n)
    staff = 0.3 * solved + 0.7 * wait + 0.5 * rng.normal(size=n)
    score = 1.0 * solved + 0.9 * wait + rng.normal(size=n)
    return pl.DataFrame(
        {"problem_solved": solved, "wait_time": wait, "staff_attitude": staff, "score": score}
    )


def shapley_r2(x, y):
    """Shapley-value regression, exactly (every subset): the reference relative weights
    approximate."""
    p = x.shape[1]

    def r2(cols):
        if not cols:
            return 0.0
        return LinearRegression().fit(x[:, cols], y).score(x[:, cols], y)

    values = np.zeros(p)
    for j in range(p):
        others = [k for k in range(p) if k != j]
        for size in range(p):
            for subset in itertools.combinations(others, size):
                weight = math.factorial(size) * math.factorial(p - size - 1) / math.factorial(p)
                values[j] += weight * (r2([*subset, j]) - r2(list(subset)))
    return values


def test_shapley_shares_are_exact_where_correlations_rank_wrong():
    frame = survey()
    names = ["problem_solved", "wait_time", "staff_attitude"]
    correlations = {a: np.corrcoef(frame[a], frame["score"])[0, 1] for a in names}
    assert max(correlations, key=correlations.get) == "staff_attitude"  # the wrong answer
    found = analyse(frame, "score", names)
    assert found.drivers[0].attribute == "problem_solved"  # the planted top driver
    # staff_attitude does nothing itself but mirrors wait_time, so it explains as much of the
    # score: a share of explained variance is not an effect, and their intervals say "a tie"
    staff, wait = (next(d for d in found.drivers if d.attribute == a) for a in names[2:0:-1])
    assert staff.interval[0] < wait.interval[1] and wait.interval[0] < staff.interval[1]
    assert sum(d.importance for d in found.drivers) == pytest.approx(1.0)
    x, y = frame.select(names).to_numpy(), frame["score"].to_numpy()
    assert found.r_squared == pytest.approx(LinearRegression().fit(x, y).score(x, y))
    exact = shapley_r2(x, y) / found.r_squared
    shares = {d.attribute: d.importance for d in found.drivers}
    assert [shares[a] for a in names] == pytest.approx(exact, abs=1e-9)  # relative weights: 0.03


# mtcars (Henderson and Velleman 1981, R's datasets), the table relaimpo's LMG is published on.
MTCARS = """\
model,mpg,cyl,disp,hp,drat,wt,qsec,vs,am,gear,carb
Mazda RX4,21.0,6,160.0,110,3.90,2.620,16.46,0,1,4,4
Mazda RX4 Wag,21.0,6,160.0,110,3.90,2.875,17.02,0,1,4,4
Datsun 710,22.8,4,108.0,93,3.85,2.320,18.61,1,1,4,1
Hornet 4 Drive,21.4,6,258.0,110,3.08,3.215,19.44,1,0,3,1
Hornet Sportabout,18.7,8,360.0,175,3.15,3.440,17.02,0,0,3,2
Valiant,18.1,6,225.0,105,2.76,3.460,20.22,1,0,3,1
Duster 360,14.3,8,360.0,245,3.21,3.570,15.84,0,0,3,4
Merc 240D,24.4,4,146.7,62,3.69,3.190,20.00,1,0,4,2
Merc 230,22.8,4,140.8,95,3.92,3.150,22.90,1,0,4,2
Merc 280,19.2,6,167.6,123,3.92,3.440,18.30,1,0,4,4
Merc 280C,17.8,6,167.6,123,3.92,3.440,18.90,1,0,4,4
Merc 450SE,16.4,8,275.8,180,3.07,4.070,17.40,0,0,3,3
Merc 450SL,17.3,8,275.8,180,3.07,3.730,17.60,0,0,3,3
Merc 450SLC,15.2,8,275.8,180,3.07,3.780,18.00,0,0,3,3
Cadillac Fleetwood,10.4,8,472.0,205,2.93,5.250,17.98,0,0,3,4
Lincoln Continental,10.4,8,460.0,215,3.00,5.424,17.82,0,0,3,4
Chrysler Imperial,14.7,8,440.0,230,3.23,5.345,17.42,0,0,3,4
Fiat 128,32.4,4,78.7,66,4.08,2.200,19.47,1,1,4,1
Honda Civic,30.4,4,75.7,52,4.93,1.615,18.52,1,1,4,2
Toyota Corolla,33.9,4,71.1,65,4.22,1.835,19.90,1,1,4,1
Toyota Corona,21.5,4,120.1,97,3.70,2.465,20.01,1,0,3,1
Dodge Challenger,15.5,8,318.0,150,2.76,3.520,16.87,0,0,3,2
AMC Javelin,15.2,8,304.0,150,3.15,3.435,17.30,0,0,3,2
Camaro Z28,13.3,8,350.0,245,3.73,3.840,15.41,0,0,3,4
Pontiac Firebird,19.2,8,400.0,175,3.08,3.845,17.05,0,0,3,2
Fiat X1-9,27.3,4,79.0,66,4.08,1.935,18.90,1,1,4,1
Porsche 914-2,26.0,4,120.3,91,4.43,2.140,16.70,0,1,5,2
Lotus Europa,30.4,4,95.1,113,3.77,1.513,16.90,1,1,5,2
Ford Pantera L,15.8,8,351.0,264,4.22,3.170,14.50,0,1,5,4
Ferrari Dino,19.7,6,145.0,175,3.62,2.770,15.50,0,1,5,6
Maserati Bora,15.0,8,301.0,335,3.54,3.570,14.60,0,1,5,8
Volvo 142E,21.4,4,121.0,109,4.11,2.780,18.60,1,1,4,2
"""


def mtcars():
    return pl.read_csv(io.StringIO(MTCARS)).drop("model").cast(pl.Float64)


def test_shares_match_relaimpos_published_lmg_on_mtcars():
    found = analyse(mtcars(), "mpg", ["am", "vs", "cyl"])
    shares = {d.attribute: d.importance for d in found.drivers}
    # relaimpo, calc.relimp(mpg ~ am + vs + cyl, type = "lmg", rela = TRUE)
    assert shares == pytest.approx({"am": 0.2329, "vs": 0.2660, "cyl": 0.5010}, abs=5e-5)
    assert found.n == 32 and found.method == "exact"
    for d in found.drivers:
        assert d.interval[0] < d.importance < d.interval[1]
    ranked = analyse(mtcars(), "mpg", ["cyl", "disp", "hp", "gear"])
    assert [d.attribute for d in ranked.drivers].index("hp") == 2  # third, as LMG ranks it


def test_a_nearly_redundant_attribute_gets_a_warning():
    frame = survey(800, seed=3)
    rng = np.random.default_rng(3)
    frame = frame.with_columns(
        (pl.col("problem_solved") + pl.col("wait_time") + 0.05 * rng.normal(size=800)).alias(
            "overall_service"
        )
    )
    names = ["problem_solved", "wait_time", "overall_service"]
    found = analyse(frame, "score", names)
    assert any(w.startswith("overall_service is nearly a combination of") for w in found.warnings)
    plain = analyse(frame, "score", names[:2])
    assert plain.warnings == ()
    exact_copy = frame.with_columns((pl.col("wait_time") * 2).alias("wait_twice"))
    doubled = analyse(exact_copy, "score", ["problem_solved", "wait_time", "wait_twice"])
    assert all(math.isfinite(d.importance) for d in doubled.drivers)
    assert sum(d.importance for d in doubled.drivers) == pytest.approx(1.0)
    assert doubled.warnings


def test_many_attributes_are_sampled_with_their_error_stated():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(600, 16)) + rng.normal(size=(600, 1))  # correlated attributes
    y = x @ np.linspace(0.1, 1.6, 16) + rng.normal(size=600) * 3
    names = [f"a{i}" for i in range(16)]
    frame = pl.DataFrame({**{n: x[:, i] for i, n in enumerate(names)}, "score": y})
    found = analyse(frame, "score", names)
    assert found.method == "sampled" and 0 < found.sampling_error < 0.02
    corr = np.corrcoef(np.column_stack([x, y]), rowvar=False)
    exact = shapley_exact(corr) / found.r_squared
    shares = {d.attribute: d.importance for d in found.drivers}
    assert [shares[n] for n in names] == pytest.approx(exact, abs=4 * found.sampling_error)


def test_drivers_command_on_a_csv_export(tmp_path):
    frame = survey(3000, seed=4)
    rated = frame.with_columns(  # 1-5 ratings, as a survey export holds them
        (pl.col(c) * 1.2 + 3).round().clip(1, 5).cast(pl.Int64) for c in frame.columns
    )
    path = tmp_path / "survey.csv"
    rated.with_columns(
        pl.int_range(0, rated.height).alias("respondent_id"), pl.lit("上海1号店").alias("store")
    ).write_csv(path)
    result = runner.invoke(app, ["insights", "drivers", str(path), "--target", "score",
                                 "--format", "json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    ranked = found["attributes"]
    assert [d["attribute"] for d in ranked] == ["problem_solved", "wait_time", "staff_attitude"]
    assert sum(d["importance"] for d in ranked) == pytest.approx(1.0, abs=1e-3)
    assert ranked[0]["performance"] == pytest.approx(rated["problem_solved"].mean(), abs=1e-3)
    assert found["n"] == 3000 and 0 < found["r_squared"] < 1 and found["method"] == "exact"
    assert all(d["interval"][0] <= d["importance"] <= d["interval"][1] for d in ranked)
    assert found["ignored_columns"] == ["respondent_id", "store"] and found["warnings"] == []
    table = runner.invoke(app, ["insights", "drivers", str(path), "--target", "score"])
    assert "ignored columns: respondent_id, store" in table.output


def test_drivers_errors_name_the_row_and_the_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("score,wait,staff\n5,4,3\n4,x,2\n3,3,3\n")
    result = runner.invoke(app, ["insights", "drivers", str(path), "--target", "score"])
    assert result.exit_code == 2
    assert "column wait: row 3 ('x') not a number" in result.output
    result = runner.invoke(app, ["insights", "drivers", str(path), "--target", "overall"])
    assert "no column overall (columns: score, wait, staff)" in result.output
    path.write_bytes("score,等待\n5,4\n".encode("gb18030"))  # a GB18030 export
    result = runner.invoke(app, ["insights", "drivers", str(path), "--target", "score"])
    assert result.exit_code == 2 and "line 1 is not UTF-8" in result.output


def test_a_spreadsheets_blank_last_rows_are_no_rows_and_an_empty_cell_is_said_so(tmp_path):
    """A BOM, CRLF export ending in ",,," stopped `insights kpis` on "row 403 (None) not a
    date", where `careloop load` takes such a line for no row."""
    path = tmp_path / "ratings.csv"
    path.write_bytes("\ufeffscore,wait\r\n5,4\r\n4,\r\n3,x\r\n,\r\n , \r\n".encode())
    frame, first_row = read_export(path)
    assert frame.height == 3  # the blank end gone, the empty cell of a row kept
    with pytest.raises(ExportError, match=r"column wait: row 4 \('x'\) not a number$"):
        numbers(frame, "wait", path, first_row)
    named = bad_rows(pl.Series([None, "x"]), pl.Series([True, True]), 2)
    assert named == "row 2 (empty), row 3 ('x')"  # it said "(None)"


def test_a_planted_lift_lies_inside_its_interval():
    rng = np.random.default_rng(5)
    treated = (rng.random(30000) < 0.90).astype(float)
    holdout = (rng.random(3000) < 0.86).astype(float)
    found = measure(treated, holdout)
    assert found.binary and found.significant
    assert found.ci_low < 0.04 < found.ci_high
    assert found.ci_high - found.ci_low < 0.03
    nothing = measure((rng.random(3000) < 0.9).astype(float), (rng.random(300) < 0.9).astype(float))
    assert nothing.ci_low < 0 < nothing.ci_high and not nothing.significant


def test_a_tiny_p_value_is_shown_as_itself_not_as_zero():
    """The JSON keeps a p-value's six significant digits, not six decimals (which showed the
    demo's lift, p 3.8e-12, as 0.0)."""
    rng = np.random.default_rng(5)
    found = measure(
        (rng.random(30000) < 0.94).astype(float), (rng.random(3000) < 0.88).astype(float)
    )
    shown = found.as_json()["p_value"]
    assert 0 < shown < 1e-6 and shown == pytest.approx(found.p_value, rel=1e-5)
    assert shown_p(0.10270843) == 0.102708 and shown_p(None) is None


def test_no_planted_effect_is_seldom_called_significant():
    rng = np.random.default_rng(8)
    calls = [measure(rng.normal(5, 2, 400), rng.normal(5, 2, 100)).significant for _ in range(400)]
    assert 0.02 < sum(calls) / len(calls) < 0.09  # about alpha = 5%


def counts(successes, n):
    return np.array([1.0] * successes + [0.0] * (n - successes))


def test_newcombes_example_and_the_edges_wald_got_wrong():
    # Newcombe 1998, Table II (e): 5/56 against 0/29, method 10: -0.0381 to 0.1926
    found = measure(counts(5, 56), counts(0, 29))
    assert (found.ci_low, found.ci_high) == pytest.approx((-0.0381, 0.1926), abs=5e-5)
    assert found.ci_low < 0 and not found.significant  # the interval and the test agree
    reference = confint_proportions_2indep(5, 56, 0, 29, method="newcomb", compare="diff")
    assert (found.ci_low, found.ci_high) == pytest.approx(reference, abs=1e-9)
    every = measure(counts(5, 5), counts(0, 5))  # Wald: [1, 1]
    assert -1 <= every.ci_low < 1 and every.ci_high <= 1 and every.significant
    nothing = measure(counts(0, 5), counts(0, 5))  # Wald: [0, 0]
    assert nothing.ci_low < 0 < nothing.ci_high and nothing.p_value == 1.0
    tiny = measure(counts(2, 2), counts(0, 2))  # Wald: -0.193 to 1.193
    assert tiny.ci_low >= -1 and tiny.ci_high <= 1


def test_the_interval_excludes_0_exactly_when_the_test_is_significant():
    for a, n, b, m in itertools.product(range(0, 13, 3), (12, 30), range(0, 13, 2), (8, 25)):
        found = measure(counts(min(a, n), n), counts(min(b, m), m))
        excludes = found.ci_low > 0 or found.ci_high < 0
        assert excludes == found.significant, (a, n, b, m, found)


@pytest.mark.parametrize(
    ("baseline", "lift", "share"),
    [(0.5, 0.1, 0.5), (0.8, 0.05, 0.5), (0.86, 0.04, 0.1), (0.3, -0.05, 0.2), (0.02, 0.01, 0.5)],
)
def test_sample_size_agrees_with_statsmodels_power(baseline, lift, share):
    h = proportion_effectsize(baseline + lift, baseline)
    ratio = share / (1 - share)
    treated = NormalIndPower().solve_power(abs(h), alpha=0.05, power=0.8, ratio=ratio)
    expected = treated * (1 + ratio)
    found = sample_size(baseline, lift, binary=True, holdout_share=share)
    assert expected <= found <= expected + 2
    sd = 2.0
    treated = TTestIndPower().solve_power(0.3 / sd, alpha=0.05, power=0.8, ratio=ratio)
    found = sample_size(5.0, 0.3, binary=False, sd=sd, holdout_share=share)
    assert treated * (1 + ratio) <= found <= treated * (1 + ratio) + 2
    with pytest.raises(ValueError, match="lift of 0"):
        sample_size(0.5, 0.0, binary=True)


def test_reference_holdout_sizing():
    # 0.80 against 0.85 at 95% / 80%: about 900 per group (the usual formula), 1,812 in all
    assert 1790 <= sample_size(0.80, 0.05, binary=True) <= 1830


@pytest.mark.parametrize(
    ("rows", "detect", "message"),
    [
        ("treated,1\ntreated,inf\nholdout,0\nholdout,1\n", [], "row 3 ('inf') not a finite"),
        ("treated,1\ntreated,nan\nholdout,0\nholdout,1\n", [], "row 3 ('nan') not a finite"),
        ("treated,1\ntreated,0\nholdout,0\nholdout,1\n", ["--detect", "nan"], "--detect nan"),
        ("treated,1\ntreated,0\nholdout,0\nholdout,1\n", ["--detect", "1.5"], "outside 0 to 1"),
        ("treated,4\ntreated,4\nholdout,3\nholdout,3\n", [], "no spread"),
        ("treated,4\nholdout,3\nholdout,3\n", [], "need at least 2 treated"),
    ],
)
def test_lift_input_that_cannot_give_a_figure_is_a_one_line_error(tmp_path, rows, detect, message):
    path = tmp_path / "outcomes.csv"
    path.write_text("group,outcome\n" + rows)
    result = runner.invoke(app, ["insights", "lift", str(path), "--group", "group",
                                 "--outcome", "outcome", *detect])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_lift_json_is_strict_even_when_nothing_moved(tmp_path):
    path = tmp_path / "outcomes.csv"
    path.write_text("group,outcome\n" + "treated,0\n" * 5 + "holdout,0\n" * 5)
    result = runner.invoke(app, ["insights", "lift", str(path), "--group", "group",
                                 "--outcome", "outcome", "--format", "json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    found = json.loads(result.output, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert found["p_value"] == 1 and found["significant"] is False
    assert found["ci_low"] < 0 < found["ci_high"]  # 0 of 5 against 0 of 5 is not "exactly 0"
    assert found["sample_size"] == {"lift": 0, "units": None}  # nothing to size: a null


def test_lift_command_json_and_bad_rows(tmp_path):
    rng = np.random.default_rng(2)
    group = np.where(np.arange(4000) % 5 == 0, "holdout", "treated")
    outcome = (rng.random(4000) < np.where(group == "treated", 0.7, 0.6)).astype(int)
    frame = pl.DataFrame({"customer_id": np.arange(4000), "group": group, "renewed": outcome})
    frame = frame.with_columns(
        pl.when(pl.col("customer_id") == 7).then(None).otherwise(pl.col("renewed")).alias("renewed")
    )
    path = tmp_path / "outcomes.parquet"
    frame.write_parquet(path)
    result = runner.invoke(app, ["insights", "lift", str(path), "--group", "group",
                                 "--outcome", "renewed", "--detect", "0.05",
                                 "--format", "json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    # a table by default, as the other insights commands give (it was JSON)
    table = runner.invoke(app, ["insights", "lift", str(path), "--group", "group",
                                "--outcome", "renewed"])  # fmt: skip
    assert table.exit_code == 0 and table.output.startswith("treated "), table.output
    assert "rows left out for an empty outcome: 1" in " ".join(table.output.split())
    assert set(found) >= {"treated_mean", "holdout_mean", "lift", "ci_low", "ci_high",
                          "p_value", "significant"}  # fmt: skip
    assert found["ci_low"] < 0.1 < found["ci_high"] and found["significant"] is True
    assert found["excluded_rows"] == 1 and found["n_treated"] + found["n_holdout"] == 3999
    assert found["sample_size"]["lift"] == 0.05 and found["sample_size"]["units"] > 4000

    bad = tmp_path / "bad.csv"
    bad.write_text("group,outcome\ntreated,1\nholdout,0\ncontrol,1\ntreated,yes\n")
    result = runner.invoke(app, ["insights", "lift", str(bad), "--group", "group",
                                 "--outcome", "outcome"])  # fmt: skip
    assert result.exit_code == 2 and "row 4 ('control')" in result.output
    with pytest.raises(ExportError, match=r"row 5 \('yes'\) not a number"):
        bad.write_text("group,outcome\ntreated,1\nholdout,0\ntreated,1\ntreated,yes\n")
        measure_export(bad, "group", "outcome")


def comments(month, counts, store="ST1"):
    rows = []
    for text, n in counts.items():
        rows += [{"month": month, "store_id": store, "comment": text}] * n
    return rows


STEADY = {
    "排队太久了": 20, "waited 40 minutes": 15, "店员态度很差": 20, "staff was rude": 10,
    "问题没解决": 15, "礼品没到账": 10, "charged for nothing": 3,
}  # fmt: skip


def test_a_planted_hot_topic_is_found_in_both_languages():
    rows = comments("2026-01", STEADY) + comments("2026-02", STEADY)
    rows += comments("2026-02", {"营业厅APP老是闪退": 18, "APP一打开就闪退": 6}, store="ST7")
    rows += comments("2026-02", {"新套餐扣费不对": 12, "charged twice for my new plan": 8})
    topics = {t.name: t for t in count_topics(pl.DataFrame(rows), "2026-02")}
    billing = topics["billing"]
    assert billing.hot and (billing.count, billing.previous) == (23, 3)
    new = next(t for t in topics.values() if not t.known)
    assert new.hot and "闪退" in new.label and new.count == 24 and new.previous == 0
    assert new.top_stores()[0] == ("ST7", 24)
    assert set(new.examples) <= {"营业厅APP老是闪退", "APP一打开就闪退"}
    waiting = topics["waiting"]
    assert (waiting.count, waiting.previous) == (35, 35) and not waiting.hot
    assert not topics["staff"].hot


def test_a_topic_file_mistake_names_the_topic(tmp_path):
    from core.errors import UserError
    from insights.topics import known_topics

    path = tmp_path / "topics.yaml"
    path.write_text("waiting:\n  label: {en: Waiting}\n  words: [wait]\nstaff:\n  words: [rude]\n")
    with pytest.raises(UserError, match="topic staff: needs label"):
        known_topics(path)


def test_topics_command_reads_the_warehouse(con, settings):
    con.execute(
        """INSERT INTO evaluations (evaluation_id, dedupe_key, store_id, channel, intent, score,
            comment, attribution, received_at)
        SELECT 'e' || i, 'd' || i, 'ST1', 'sms', 'rating', 1,
            CASE WHEN i < 30 THEN '5G信号很差' ELSE '排队太久了' END, 'matched',
            CASE WHEN i < 40 THEN TIMESTAMPTZ '2026-02-10 10:00:00+08'
                 ELSE TIMESTAMPTZ '2026-01-10 10:00:00+08' END
        FROM range(80) t(i)"""
    )
    con.close()
    result = runner.invoke(app, ["insights", "topics", "--month", "2026-02", "--format", "json"])
    assert result.exit_code == 0, result.output
    found = {t["topic"]: t for t in json.loads(result.output)["topics"]}
    assert found["network"]["hot"] and found["network"]["count"] == 30
    # its p-value as six significant digits (insights.stats.shown_p): six decimals showed 0.0
    p_value = found["network"]["p_value"]
    assert 0 < p_value < 1e-6 and p_value == float(f"{p_value:.6g}")
    assert found["waiting"]["count"] == 10 and found["waiting"]["previous"] == 40


def test_a_small_stores_intervals_stay_finite_when_resamples_are_constant():
    """Twelve 1-5 ratings, mostly the same: many resamples have a column of one value."""
    frame = pl.DataFrame(
        {
            "wait_time": [5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 4, 1],
            "staff_attitude": [5, 5, 5, 5, 5, 5, 5, 5, 5, 4, 5, 2],
            "problem_solved": [5, 5, 5, 5, 5, 5, 5, 5, 4, 5, 5, 1],
            "score": [5, 5, 5, 5, 5, 5, 5, 5, 4, 4, 4, 1],
        }
    ).cast(pl.Float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no inf - inf on the way
        found = analyse(frame, "score", ["wait_time", "staff_attitude", "problem_solved"])
    json.dumps(found.as_json(), allow_nan=False)
    for d in found.drivers:
        assert 0 <= d.interval[0] <= d.importance <= d.interval[1] <= 1


def test_drivers_on_values_of_any_size_give_the_same_shares():
    """Correlations do not depend on scale: a target 1e300 times an attribute is explained by
    it alone (its sums of squares used to overflow: R² 0 and even shares)."""
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=50), rng.normal(size=50)
    plain = analyse(pl.DataFrame({"a": a, "b": b, "overall": a}), "overall", ["a", "b"])
    huge = analyse(pl.DataFrame({"a": a, "b": b, "overall": a * 1e300}), "overall", ["a", "b"])
    assert huge.r_squared == pytest.approx(1.0) == plain.r_squared
    assert [d.importance for d in huge.drivers] == pytest.approx(
        [d.importance for d in plain.drivers]
    )


@pytest.mark.parametrize("command", ["drivers", "lift", "kpis"])
def test_values_too_large_to_square_are_named_not_summed(tmp_path, command):
    path = tmp_path / "huge.csv"
    value = [i * 1e300 if i == 3 else i for i in range(40)]  # one too large to square
    rows = ["group,day,a,value"] + [
        f"{'treated' if i % 2 else 'holdout'},2026-02-{1 + i % 20:02d},{i},{value[i]}"
        for i in range(40)
    ]
    path.write_text("\n".join(rows) + "\n")
    args = {
        "drivers": ["drivers", str(path), "--target", "value"],
        "lift": ["lift", str(path), "--group", "group", "--outcome", "value"],
        "kpis": ["kpis", str(path), "--month", "2026-02", "--date", "day", "--value", "value",
                 "--by", "group"],
    }[command]  # fmt: skip
    result = runner.invoke(app, ["insights", *args])
    assert result.exit_code == 2, result.output
    assert "column value: row 5 ('3e+300') larger than 1e+150" in result.output
    assert "Traceback" not in result.output and "inf" not in result.output.replace("info", "")
