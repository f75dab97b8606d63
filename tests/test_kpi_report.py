"""The monthly KPI report on planted data: a store's drop is flagged and drilled down to that
store, mix is told from rate, noise is called noise, and the report opens offline."""

import json
import re
from datetime import UTC, date, datetime

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from careloop.cli import app
from insights.export_panorama import export_panorama
from insights.kpis import kpi_moments, shift_month
from insights.monthly import build_monthly_report, configured_monthly_report
from insights.panorama import contributions, kpi_rows
from insights.report_html import render_html, write_month
from insights.targets import Targets, TargetsError, load_targets
from warehouse.ratings import rebuild_ratings

NOW = datetime(2026, 3, 10, tzinfo=UTC)
STORES = ("ST1", "ST2", "ST3", "ST4")


def add_stores(con, stores=STORES):
    for n, store in enumerate(stores):
        con.execute(
            "INSERT INTO stores (store_id, name, city, region, timezone, manager_name, "
            "manager_email) VALUES (?, ?, 'c', ?, 'Asia/Shanghai', 'm', 'm@example.com')",
            [store, store, "North" if n < 2 else "South"],
        )


def plant_ratings(con, store, month, n, satisfied, *, campaign="store_visit", tag=""):
    """``n`` first-round rated surveys at ``store`` in ``month`` (mid-month, Shanghai),
    exactly ``satisfied`` of them rated 5, the rest 1."""
    day = f"{month}-15 10:00:00+08"
    prefix = f"{store}-{month}-{campaign}{tag}-"
    params = {"p": prefix, "campaign": campaign, "store": store, "day": day, "n": n}
    con.execute(
        """
        INSERT INTO care_actions (action_id, idempotency_key, run_id, campaign_id, subscriber_id,
            occasion, round, store_id, tier, locale, channel, survey, status, created_at,
            sent_at, updated_at)
        SELECT $p || i, $p || i, 'r', $campaign, 'S' || $p || i, 'o', 1, $store, 'standard',
            'en', 'sms', true, 'delivered', $day::TIMESTAMPTZ, $day::TIMESTAMPTZ,
            $day::TIMESTAMPTZ
        FROM range($n) t(i)""",
        params,
    )
    con.execute(
        """
        INSERT INTO evaluations (evaluation_id, dedupe_key, action_id, subscriber_id,
            campaign_id, round, store_id, channel, intent, score, attribution, received_at)
        SELECT 'e' || $p || i, 'd' || $p || i, $p || i, 'S' || $p || i, $campaign, 1, $store,
            'sms', 'rating', CASE WHEN i < $satisfied THEN 5 ELSE 1 END, 'matched',
            $day::TIMESTAMPTZ + INTERVAL 1 HOUR
        FROM range($n) t(i)""",
        {**params, "satisfied": satisfied},
    )
    rebuild_ratings(con)  # written as collect would have


def register_campaign(con, campaign, segment):
    con.execute(
        "INSERT INTO campaigns (campaign_id, segment, definition, checksum) "
        "VALUES (?, ?, '{}', 'x')",
        [campaign, segment],
    )


def st1_csat(con, january, february):
    """The stores, and ST1's store-visit ratings in January and February 2026, each month
    given as (rated, satisfied)."""
    add_stores(con)
    register_campaign(con, "store_visit", "store_visit")
    plant_ratings(con, "ST1", "2026-01", *january)
    plant_ratings(con, "ST1", "2026-02", *february)


def rows_of(con, month="2026-02", targets=None):
    moments = kpi_moments(con, month, "Asia/Shanghai", sla_hours=48, now=NOW, reply_window_hours=72)
    return moments, {
        (r.kpi, r.scope, r.key): r for r in kpi_rows(moments, month, targets or Targets())
    }


def february_report(con):
    """The monthly report for February 2026, as of NOW, with the usual settings."""
    return build_monthly_report(
        con,
        "2026-02",
        "Asia/Shanghai",
        now=NOW,
        sla_hours=48,
        targets=Targets(),
        lift_days=90,
        reply_window_hours=72,
    )


def st2_drops(con):
    """Four stores at 80% CSAT in January; in February ST2 falls to 50%, the others hold."""
    add_stores(con)
    register_campaign(con, "store_visit", "store_visit")
    for store in STORES:
        plant_ratings(con, store, "2026-01", 300, 240)
        plant_ratings(con, store, "2026-02", 300, 150 if store == "ST2" else 240)


def test_a_five_point_drop_in_one_store_is_flagged_and_drilled_down_to_it(con):
    add_stores(con)
    register_campaign(con, "store_visit", "store_visit")
    for store in STORES:
        plant_ratings(con, store, "2026-01", 3000, 2400)  # 80%
        plant_ratings(con, store, "2026-02", 3000, 2250 if store == "ST2" else 2400)  # 75%
    _moments, rows = rows_of(con)

    st2 = rows[("csat", "store", "ST2")]
    assert (st2.value, st2.previous) == (0.75, 0.8)
    assert st2.change == pytest.approx(-0.0625)
    assert st2.flag == "down" and st2.significant and st2.good is False
    for other in ("ST1", "ST3", "ST4"):
        row = rows[("csat", "store", other)]
        assert row.flag is None and not row.significant
    overall = rows[("csat", "overall", None)]
    assert overall.change == pytest.approx(-0.015625)  # below the 5% flag ...
    assert overall.flag is None and overall.significant  # ... but real, so it is drilled

    report = february_report(con)
    parts = report.drilldowns["csat"]
    top = parts[0]
    assert (top.scope, top.key) == ("store", "ST2")
    assert top.rate == pytest.approx(-0.0125) and top.mix == pytest.approx(0.0)
    assert rows[("dissatisfied_rate", "store", "ST2")].flag == "up"


def test_mix_and_rate_parts_add_up_to_the_change(con):
    """A low-scoring store that triples its volume lowers CSAT by mix alone."""
    add_stores(con)
    register_campaign(con, "store_visit", "store_visit")
    plant_ratings(con, "ST1", "2026-01", 1000, 900)
    plant_ratings(con, "ST2", "2026-01", 500, 250)
    plant_ratings(con, "ST1", "2026-02", 1000, 900)
    plant_ratings(con, "ST2", "2026-02", 1500, 750)
    moments, rows = rows_of(con)
    overall = rows[("csat", "overall", None)]
    parts = {c.key: c for c in contributions(moments, "csat", "store", "2026-02")}
    assert sum(c.total for c in parts.values()) == pytest.approx(overall.value - overall.previous)
    assert parts["ST2"].rate == pytest.approx(0.0)
    assert parts["ST1"].rate == pytest.approx(0.0)
    # ST2, below the overall figure, grew; ST1, above it, shrank: both pulled CSAT down, ST2
    # (the one that changed) the most
    assert parts["ST2"].mix < parts["ST1"].mix < 0
    assert parts["ST1"].mix + parts["ST2"].mix == pytest.approx(overall.value - overall.previous)


def test_a_store_at_the_overall_rate_that_grows_moves_nothing(con):
    add_stores(con)
    register_campaign(con, "store_visit", "store_visit")
    plant_ratings(con, "ST1", "2026-01", 500, 400)  # 80%
    plant_ratings(con, "ST2", "2026-01", 500, 400)  # 80%
    plant_ratings(con, "ST1", "2026-02", 1000, 800)  # 80%, twice the volume
    plant_ratings(con, "ST2", "2026-02", 500, 400)
    moments, rows = rows_of(con)
    assert rows[("csat", "overall", None)].value == pytest.approx(0.8)
    for part in contributions(moments, "csat", "store", "2026-02"):
        assert (part.mix, part.rate) == pytest.approx((0.0, 0.0))  # was +13.3 and -13.3 points


def steady_month(rng, sizes, rates, dropped):
    """Ratings of steady stores for January and February; ``dropped`` loses 8 points."""
    rows = []
    for month, drop in (("2026-01", 0.0), ("2026-02", 0.08)):
        for i, (size, rate) in enumerate(zip(sizes, rates, strict=True)):
            n = int(rng.poisson(size))
            k = float(rng.binomial(n, rate - (drop if i == dropped else 0.0)))
            rows.append(("csat", month, "store", f"ST{i:02d}", n, k, k))
    columns = ["kpi", "month", "scope", "key", "n", "total", "squares"]
    return pl.DataFrame(rows, schema=columns, orient="row")


def test_the_store_that_dropped_is_first_in_the_drill_down():
    """200 simulated months of 40 steady stores (500-1,500 ratings a month, CSAT 60-90%), one of
    them, of middle size, dropping 8 points: it should head the drill-down."""
    rng = np.random.default_rng(23)
    first = 0
    for _ in range(200):
        sizes, rates = rng.uniform(500, 1500, 40), rng.uniform(0.6, 0.9, 40)
        sizes[7] = 1000
        frame = steady_month(rng, sizes, rates, dropped=7)
        parts = contributions(frame, "csat", "store", "2026-02")
        overall = [frame.filter(pl.col("month") == m) for m in ("2026-02", "2026-01")]
        change = overall[0]["total"].sum() / overall[0]["n"].sum() - (
            overall[1]["total"].sum() / overall[1]["n"].sum()
        )
        assert sum(p.total for p in parts) == pytest.approx(change, abs=1e-12)
        first += parts[0].key == "ST07"
    assert first >= 180  # measured 185 of 200; from each store's own level (before): 68


def test_the_drill_down_names_the_stores(con):
    st2_drops(con)
    con.execute("UPDATE stores SET name = '上海' || store_id")
    report = february_report(con)
    top = report.as_json()["drilldown"]["csat"][0]
    assert (top["key"], top["name"]) == ("ST2", "上海ST2")
    assert "ST2 上海ST2" in render_html(report)


def test_a_kpi_rising_from_zero_is_flagged(con):
    """A move from 0 has no relative change, and was never flagged: a store whose customers
    all gave 1-2 in January and some 4-5 in February moved the most of all."""
    st1_csat(con, (40, 0), (40, 20))  # 0%, then 50%
    _, rows = rows_of(con)
    overall = rows[("csat", "overall", None)]
    assert overall.previous == 0 and overall.change is None
    assert overall.flag == "up" and overall.good is True
    _, few = rows_of(con, targets=Targets(min_units=50))
    assert few[("csat", "overall", None)].flag is None  # too few units to flag at all


def test_a_move_from_zero_on_an_export_is_flagged_by_its_sign_and_noise_is_not(tmp_path):
    """A numeric KPI from 0 down is flagged down; one whose values sum to 0 (a mean of 1e-17,
    float rounding) is not flagged and has no change; a store short of units in only the
    month before is not flagged either."""
    rows = [("2026-01-15", 0.0, s) for s in ("A", "B", "E") for _ in range(40)]
    rows += [("2026-01-15", 0.0, "C")] * 10  # too few units last month
    rows += [("2026-02-15", v, "A") for v in [-1.0, 0.0] * 20]  # mean -0.5
    # 0.1, 0.2 and -0.3 dealt to B and E in turn: each sums to 0, B's mean comes out 9e-18
    rows += [("2026-02-15", v, "BE"[i % 2]) for i, v in enumerate([0.1, 0.2, -0.3] * 20)]
    rows += [("2026-02-15", 1.0, "C")] * 40
    path = tmp_path / "export.csv"
    pl.DataFrame(rows, schema=["day", "v", "store"], orient="row").write_csv(path)
    panorama = export_panorama(
        path, "2026-02", date="day", value="v", by=["store"], targets=Targets(min_units=30)
    )
    by_key = {(r.scope, r.key): r for r in panorama.rows}
    assert by_key[("store", "A")].flag == "down" and by_key[("store", "A")].change is None
    noise = by_key[("store", "B")]
    assert noise.previous == 0 and 0 < abs(noise.value) < 1e-12  # rounding, not a move
    assert noise.flag is None and noise.change is None
    assert by_key[("store", "C")].flag is None  # 10 units in January


def test_a_move_of_exactly_the_threshold_is_not_flagged(con):
    """CSAT from 100% to 95% is a change of -0.05000000000000004 in floats: not more than
    the 5% the flag asks for."""
    st1_csat(con, (40, 40), (40, 38))  # 100%, then 95%
    _, rows = rows_of(con)
    overall = rows[("csat", "overall", None)]
    assert overall.change == pytest.approx(-0.05) and overall.flag is None


def test_a_big_move_on_few_units_is_flagged_but_called_noise(con):
    st1_csat(con, (40, 32), (40, 28))  # 80%, then 70%: -12.5%
    _, rows = rows_of(con)
    overall = rows[("csat", "overall", None)]
    assert overall.flag == "down" and not overall.significant
    assert overall.difference_interval[0] < 0 < overall.difference_interval[1]
    store = rows[("csat", "store", "ST1")]
    assert store.flag == "down"  # 40 units >= min_units 30
    _, few = rows_of(con, targets=Targets(min_units=50))
    assert few[("csat", "store", "ST1")].flag is None  # too few units to flag at all


def test_segment_and_campaign_scopes_and_the_twelve_month_trend(con):
    add_stores(con)
    register_campaign(con, "store_visit", "store_visit")
    register_campaign(con, "birthday", "birthday")
    for back in range(14):
        plant_ratings(con, "ST1", shift_month("2026-02", -back), 100, 80 - back)
    plant_ratings(con, "ST1", "2026-02", 100, 50, campaign="birthday")
    moments, rows = rows_of(con)
    assert rows[("csat", "segment", "birthday")].value == 0.5
    assert rows[("csat", "campaign", "store_visit")].value == 0.8
    assert rows[("csat", "region", "North")].n == 200
    assert rows[("csat", "tier", "standard")].n == 200
    assert rows[("csat", "channel", "sms")].n == 200
    from insights.panorama import trend

    points = trend(moments, "csat", "2026-02")
    assert next(p.month for p in points) == "2025-03" and points[-1].month == "2026-02"
    assert [p.n for p in points] == [100] * 11 + [200]
    assert points[0].value == pytest.approx(0.69)


def test_json_has_one_row_per_kpi_and_scope(con, settings):
    st1_csat(con, (100, 80), (100, 60))
    con.close()
    result = CliRunner().invoke(app, ["report", "--month", "2026-02", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # indented for people reading it: one line per figure, not the whole report on one line
    assert result.output.startswith('{\n  "month": "2026-02",\n')
    assert data["month"] == "2026-02"
    csat = next(r for r in data["kpis"] if r["kpi"] == "csat" and r["scope"] == "overall")
    assert csat["key"] is None and csat["value"] == 0.6 and csat["previous"] == 0.8
    assert csat["change"] == -0.25 and csat["flag"] == "down" and csat["significant"] is True
    assert csat["n"] == 100 and csat["target"] == load_targets().kpis["csat"].target
    # the p-value keeps six significant digits (six decimals made it 0.00205)
    from insights.stats import Moments, compare

    p_value = compare(Moments(100, 60.0, 60.0), Moments(100, 80.0, 80.0), binary=True).p_value
    assert csat["p_value"] == float(f"{p_value:.6g}") != round(p_value, 6)
    assert {r["scope"] for r in data["kpis"]} == {
        "overall", "store", "region", "segment", "channel", "campaign", "tier",
    }  # fmt: skip
    for row in data["kpis"]:
        assert set(row) >= {"kpi", "scope", "key", "value", "previous", "target", "change",
                            "flag", "significant", "n"}  # fmt: skip
        assert row["flag"] in ("up", "down", None)
    written = CliRunner().invoke(app, ["report", "--month", "2026-02"])
    assert written.exit_code == 0, written.output
    # the file the report writes says the same, in the same words
    assert (settings.reports_dir / "kpi-2026-02.json").read_text() + "\n" == result.output


def test_the_report_commands_loop_figures_cover_its_month_alone(con, settings):
    """Care planned in other months is not the month's loop report (nor read for it: a
    report's cost does not grow with the history behind it)."""
    st1_csat(con, (100, 80), (50, 30))
    con.close()
    for month, rated, csat in (("2026-02", 50, "60.0"), ("2026-01", 100, "80.0")):
        result = CliRunner().invoke(app, ["report", "--month", month])
        assert result.exit_code == 0, result.output
        # no case: each store's list is its header alone
        assert "lists: 4 CSV files, 0 with cases listed" in " ".join(result.output.split())
        text = (settings.reports_dir / f"loop-{month}.md").read_text()  # each month its own
        assert f"| **all** | {rated} | 0 | 0 | {rated} ({rated}/0/0) |" in text
        assert f"| {csat} |" in text and f"the loop in {month}" in text


@pytest.mark.parametrize("month", ["2026-13", "2026-2", "26-02", "2026-02-01"])
def test_report_command_refuses_a_bad_month(settings, month):
    result = CliRunner().invoke(app, ["report", "--month", month])
    assert result.exit_code == 2
    said = "there is no month 13" if month == "2026-13" else "give it as YYYY-MM"
    assert said in result.output


@pytest.mark.parametrize(
    "month", ["9999-12", "0000-12", "0001-01", "0001-12", "0002-01", "0002-12"]
)
@pytest.mark.parametrize(
    "command", [["report"], ["report", "--format", "json"], ["insights", "topics"]]
)
def test_a_month_whose_reads_run_off_the_calendar_is_refused_by_name(settings, month, command):
    """A report reads the next month's first day and the thirteen months before its own, with
    days around them: at the calendar's ends it is refused, naming the month given (not one
    computed from it, 10000-01, nor an OverflowError), before it opens the warehouse."""
    result = CliRunner().invoke(app, [*command, "--month", month], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert f"month '{month}': a report covers a month from 0003-01 to 9999-11" in result.output
    assert not settings.warehouse_path.exists()


def test_the_first_and_last_months_a_report_covers_are_reported(con, settings):
    result = CliRunner().invoke(app, ["report", "--month", "0003-01", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["month"] == "0003-01"
    # the last has not begun (the command refuses it as such): reported as of its end
    at = datetime(9999, 11, 30, 12, tzinfo=UTC)
    assert configured_monthly_report(con, settings, "9999-11", at).as_json()["month"] == "9999-11"


def test_a_shift_off_the_calendar_names_the_month_it_started_from():
    with pytest.raises(ValueError, match=r"month '9999-12': \+1 months from it is outside"):
        shift_month("9999-12", 1)
    assert shift_month("0001-12", -11) == "0001-01"


def test_html_report_opens_offline_and_shows_the_arrows(con, settings):
    st2_drops(con)
    report = february_report(con)
    html, data = write_month(report, settings.reports_dir)
    text = html.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text, re.I)
    assert "@import" not in text and not re.search(r"url\((?!#)", text)  # only in-page refs
    assert text.count("<svg") == 7 + 2  # a trend per KPI; csat's and dissatisfied's drill-down
    assert 'class="arrow bad"' in text and "ST2" in text
    assert json.loads(data.read_text())["month"] == "2026-02"


def test_an_empty_warehouse_still_gives_a_report(con):
    report = february_report(con)
    assert [(r.n, r.value, r.flag) for r in report.overall()] == [(0, None, None)] * 7
    text = render_html(report)
    assert "No dissatisfied comments" in text and "No attribute ratings" in text
    assert text.count("n = 0") == 7 and " · n = 0" not in text  # no interval, no separator


def test_targets_file_errors_name_the_field(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("kpis:\n  cast: {target: 0.8}\n")
    with pytest.raises(TargetsError, match="unknown KPI cast"):
        load_targets(bad)
    bad.write_text("flag_threshold: 5\n")
    with pytest.raises(TargetsError, match="flag_threshold"):
        load_targets(bad)
    good = tmp_path / "g.yaml"
    good.write_text("kpis: {csat: {target: 0.8}}\noverrides: {store: {ST9: {csat: 0.6}}}\n")
    targets = load_targets(good)
    assert targets.target("csat", "store", "ST9") == 0.6
    assert targets.target("csat", "store", "ST1") == 0.8


def test_retention_lift_in_the_warehouse_recovers_a_planted_effect(con):
    """Customers held out leave more often: 12% against 6% within 90 days (drawn at random)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(3)
    held = np.arange(20000) % 10 == 0
    leaves = rng.random(20000) < np.where(held, 0.12, 0.06)
    people = pl.DataFrame({"i": np.arange(20000), "held": held, "leaves": leaves})
    con.register("people", people.to_arrow())
    con.execute(
        """
        INSERT INTO subscribers (subscriber_id, name, joined_on, tier, timezone, locale,
            sms_consent, email_consent, voice_consent, left_on)
        SELECT 'S' || i, 'n', DATE '2020-01-01', 'standard', 'Asia/Shanghai', 'en', true,
            true, true, CASE WHEN leaves THEN DATE '2025-07-01' END
        FROM people"""
    )
    con.execute(
        """
        INSERT INTO care_actions (action_id, idempotency_key, run_id, campaign_id,
            subscriber_id, occasion, round, tier, locale, survey, status, created_at, updated_at)
        SELECT 'A' || i, 'k' || i, 'r', 'tenure', 'S' || i, 'o', 1, 'standard', 'en', true,
            CASE WHEN held THEN 'held_out' ELSE 'delivered' END,
            TIMESTAMPTZ '2025-06-01 10:00:00+08', TIMESTAMPTZ '2025-06-01 10:00:00+08'
        FROM people"""
    )
    from insights.lift import retention_lifts

    (found,) = retention_lifts(
        con, date(2026, 2, 28), "Asia/Shanghai", days=90, since=date(2025, 3, 1)
    )
    assert (found.treated, found.held_out) == (18000, 2000)
    assert found.lift is not None and found.lift.significant
    planted = 0.06  # retention 94% cared for against 88% held out
    assert found.lift.ci_low < planted < found.lift.ci_high
    # a window that has not passed yet is not measured
    assert (
        retention_lifts(con, date(2025, 8, 1), "Asia/Shanghai", days=90, since=date(2025, 3, 1))
        == []
    )


LIFT_ZONE = "Asia/Shanghai"


def plant_care(con, rng, rows, start, end, edges, count, *, status=None):
    """``count`` care actions between ``start`` and ``end`` (some minutes either side of the
    local midnights ``edges``) for 900 customers, of two campaigns, mostly round 1, in every
    status; appended to ``rows`` as (id, customer, campaign, round, status, created_at)."""
    from datetime import timedelta

    span = int((end - start).total_seconds() // 60)
    new = []
    for _ in range(count):
        i = len(rows) + len(new)
        if i % 3 == 0:
            at = edges[i % len(edges)] + timedelta(minutes=int(rng.integers(-90, 90)))
        else:
            at = start + timedelta(minutes=int(rng.integers(0, span)))
        chosen = status or ("held_out", "delivered", "suppressed", "failed")[rng.integers(4)]
        new.append((f"A{i}", f"S{rng.integers(900)}", ("tenure", "birthday")[rng.integers(2)],
                    1 + (i % 11 == 0), chosen, at.astimezone(UTC)))  # fmt: skip
    con.executemany(
        """INSERT INTO care_actions (action_id, idempotency_key, run_id, campaign_id,
            subscriber_id, occasion, round, tier, locale, survey, status, created_at, updated_at)
        VALUES (?, ?, 'r', ?, ?, 'o', ?, 'standard', 'en', true, ?, ?, ?)""",
        [(a, a, c, s, r, st, at, at) for a, s, c, r, st, at in new],
    )
    rows.extend(new)


def expected_units(rows, left, since, last, days):
    """The lift's units written out per row: each customer's first round-1 care per campaign
    (suppressed ones left out) dated in the business zone, from ``since`` to ``last``;
    per campaign, the 0/1 retention of the treated and of the held out, and the dates."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    firsts = {}
    for _, subscriber, campaign, round_, status, at in rows:
        cared_on = at.astimezone(ZoneInfo(LIFT_ZONE)).date()
        if round_ != 1 or status == "suppressed" or not since <= cared_on <= last:
            continue
        if (campaign, subscriber) not in firsts or at < firsts[campaign, subscriber][0]:
            firsts[campaign, subscriber] = (at, status, cared_on)
    expected = {}
    for (campaign, subscriber), (_, status, cared_on) in firsts.items():
        gone = left.get(subscriber)
        retained = int(gone is None or gone > cared_on + timedelta(days=days))
        groups, dates = expected.setdefault(campaign, ({True: [], False: []}, []))
        groups[status == "held_out"].append(retained)
        dates.append(cared_on)
    return expected


def assert_lifts_match(con, rows, left, as_of, since, days):
    from datetime import timedelta

    from insights.lift import retention_lifts

    expected = expected_units(rows, left, since, as_of - timedelta(days=days), days)
    found = retention_lifts(con, as_of, LIFT_ZONE, days=days, since=since)
    assert [c.campaign_id for c in found] == sorted(expected)
    for lift in found:
        groups, dates = expected[lift.campaign_id]
        assert (lift.treated, lift.held_out) == (len(groups[False]), len(groups[True]))
        assert lift.lift is not None
        assert lift.lift.treated_mean == pytest.approx(np.mean(groups[False]))
        assert lift.lift.holdout_mean == pytest.approx(np.mean(groups[True]))
        assert (lift.first, lift.last) == (min(dates), max(dates))
    return found


def test_retention_lift_counts_each_customers_first_care_in_the_window(con):
    """The lift's units against their definition written out per row, report after report
    (each stores the days that settled, insights/first_care.py): care falls minutes either
    side of local midnight at the windows' edges, customers are cared for again and again
    (held out first, then contacted), a queued action holds its day back until dispatch
    suppresses it, and windows start on months before, at and after the stored days' first
    (a window starts on a month's first day: any other start is refused)."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from insights.lift import retention_lifts

    rng = np.random.default_rng(7)
    local = [datetime(2025, m, d, tzinfo=ZoneInfo(LIFT_ZONE)) for m, d in
             ((3, 1), (5, 16), (5, 17), (7, 1), (8, 20), (8, 21), (9, 30))]  # fmt: skip
    rows = []
    plant_care(con, rng, rows, local[0] - timedelta(days=40), local[3], local[:4], 2500)
    left = {f"S{i}": date(2025, 3, 1) + timedelta(days=int(rng.integers(0, 250)))
            for i in range(900) if i % 4}  # fmt: skip
    con.executemany(
        """INSERT INTO subscribers (subscriber_id, name, joined_on, tier, timezone, locale,
            sms_consent, email_consent, voice_consent, left_on)
        VALUES (?, 'n', DATE '2020-01-01', 'standard', 'Asia/Shanghai', 'en',
            true, true, true, ?)""",
        [(f"S{i}", left.get(f"S{i}")) for i in range(900)],
    )
    days, since = 30, date(2025, 3, 1)
    first = assert_lifts_match(con, rows, left, date(2025, 6, 16), since, days)  # to May 17
    assert min(f.first for f in first) == since and max(f.last for f in first) == date(2025, 5, 17)
    # later care, one of it queued on Aug 20 (dispatch may still suppress it): stored to the
    # 19th, the rest read from the outbox, and the queued customer counted as planned
    plant_care(con, rng, rows, local[3], local[6], local[3:], 1500)
    plant_care(con, rng, rows, local[4] + timedelta(hours=9), local[4] + timedelta(hours=10),
               local[4:5], 1, status="queued")  # fmt: skip
    for window_start in (since, date(2025, 1, 1), date(2025, 5, 1), date(2025, 6, 1)):
        assert_lifts_match(con, rows, left, date(2025, 9, 30), window_start, days)
    stored = con.execute("SELECT through FROM care_firsts_stored").fetchall()
    assert stored == [(date(2025, 8, 19),)]
    # dispatch suppresses it (an opt-out came): its day is stored without it
    queued = rows[-1]
    con.execute("UPDATE care_actions SET status = 'suppressed' WHERE action_id = ?", [queued[0]])
    rows[-1] = (*queued[:4], "suppressed", queued[5])
    for window_start in (since, date(2025, 5, 1), date(2025, 8, 1)):
        assert_lifts_match(con, rows, left, date(2025, 9, 30), window_start, days)
    assert con.execute("SELECT through FROM care_firsts_stored").fetchall() == [
        (date(2025, 8, 31),)
    ]
    with pytest.raises(ValueError, match="2025-05-17"):
        retention_lifts(con, date(2025, 9, 30), LIFT_ZONE, days=days, since=date(2025, 5, 17))


def test_each_collect_stores_the_settled_days_up_to_the_day_before_yesterday(con):
    """A collect stores the lift's settled days up to the day before yesterday
    (flows/collect_feedback.py), so a month's report finds them stored. Yesterday is not
    stored: care dated 23:55 local by a plan run again with that time after midnight (or a
    host whose clock is behind) is counted; an action still queued holds its day back. The
    lift then reads only stored days, and its units still match their definition row by row."""
    from zoneinfo import ZoneInfo

    from insights.first_care import store_past_days, stored_through

    zone = ZoneInfo(LIFT_ZONE)
    rng = np.random.default_rng(11)
    rows = []
    months = [datetime(2025, m, 1, tzinfo=zone) for m in (3, 4, 5, 6)]
    plant_care(con, rng, rows, months[0], datetime(2025, 6, 15, 23, 0, tzinfo=zone), months,
               2000)  # fmt: skip
    con.executemany(
        """INSERT INTO subscribers (subscriber_id, name, joined_on, tier, timezone, locale,
            sms_consent, email_consent, voice_consent)
        VALUES (?, 'n', DATE '2020-01-01', 'standard', 'Asia/Shanghai', 'en', true, true, true)""",
        [(f"S{i}",) for i in range(900)],
    )
    store_past_days(con, LIFT_ZONE, datetime(2025, 6, 16, 0, 10, tzinfo=zone))
    assert stored_through(con, LIFT_ZONE) == date(2025, 6, 14)
    # care dated 23:55 the evening before, written after that collect: a campaign's first
    # care, half of it held out
    late = datetime(2025, 6, 15, 23, 55, tzinfo=zone).astimezone(UTC)
    add_care(con, rows, [(f"L{i}", f"S{i}", "store_visit", ("held_out", "delivered")[i % 2],
                          late) for i in range(40)])  # fmt: skip
    store_past_days(con, LIFT_ZONE, datetime(2025, 6, 16, 23, 50, tzinfo=zone))
    assert stored_through(con, LIFT_ZONE) == date(2025, 6, 14)
    store_past_days(con, LIFT_ZONE, datetime(2025, 6, 17, 0, 30, tzinfo=zone))
    assert stored_through(con, LIFT_ZONE) == date(2025, 6, 15)
    # the next day's care, one action still queued: that day waits for dispatch
    queued = datetime(2025, 6, 16, 9, tzinfo=zone).astimezone(UTC)
    add_care(con, rows, [("Q1", "S1", "tenure", "queued", queued)])
    store_past_days(con, LIFT_ZONE, datetime(2025, 6, 18, 20, tzinfo=zone))
    assert stored_through(con, LIFT_ZONE) == date(2025, 6, 15)
    # the report's lift to June 15 stores nothing more, and counts the late care
    read = con.execute("SELECT count(*) FROM care_firsts").fetchone()
    found = assert_lifts_match(con, rows, {}, date(2025, 7, 15), months[0].date(), 30)
    assert "store_visit" in [c.campaign_id for c in found]
    assert con.execute("SELECT count(*) FROM care_firsts").fetchone() == read
    assert stored_through(con, LIFT_ZONE) == date(2025, 6, 15)


def test_a_lift_of_one_day_stores_no_day_a_collect_would_not(con):
    """With CARELOOP_LIFT_DAYS=1 the report's window ends yesterday: it reads that day from
    the outbox instead of storing it (a collect stores up to the day before yesterday), so
    care dated yesterday after the report is counted by the next one."""
    from zoneinfo import ZoneInfo

    from insights.first_care import stored_through

    zone = ZoneInfo(LIFT_ZONE)
    rng = np.random.default_rng(3)
    rows = []
    months = [datetime(2025, m, 1, tzinfo=zone) for m in (4, 5, 6)]
    plant_care(con, rng, rows, months[0], datetime(2025, 5, 31, 22, tzinfo=zone), months, 1500)
    con.executemany(
        """INSERT INTO subscribers (subscriber_id, name, joined_on, tier, timezone, locale,
            sms_consent, email_consent, voice_consent)
        VALUES (?, 'n', DATE '2020-01-01', 'standard', 'Asia/Shanghai', 'en', true, true, true)""",
        [(f"S{i}",) for i in range(900)],
    )
    assert_lifts_match(con, rows, {}, date(2025, 6, 1), date(2025, 4, 1), 1)
    assert stored_through(con, LIFT_ZONE) == date(2025, 5, 30)
    late = datetime(2025, 5, 31, 23, 30, tzinfo=zone).astimezone(UTC)
    add_care(con, rows, [(f"L{i}", f"S{i}", "store_visit", ("held_out", "delivered")[i % 2],
                          late) for i in range(40)])  # fmt: skip
    found = assert_lifts_match(con, rows, {}, date(2025, 6, 20), date(2025, 4, 1), 1)
    assert "store_visit" in [c.campaign_id for c in found]


def test_a_months_lift_counts_no_care_after_the_month_however_late_it_runs(con):
    """A month's report counts the lift's customers first cared for in the twelve months to
    the month's end (the report says so): run months later, the care after the month is not
    counted; run on the 1st, the window ends where the outcome is known (90 days before)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(LIFT_ZONE)
    rng = np.random.default_rng(5)
    rows = []
    months = [datetime(2025, m, 1, tzinfo=zone) for m in (1, 2, 3, 4)]
    plant_care(con, rng, rows, months[0], datetime(2025, 4, 30, tzinfo=zone), months, 3000)
    con.executemany(
        """INSERT INTO subscribers (subscriber_id, name, joined_on, tier, timezone, locale,
            sms_consent, email_consent, voice_consent)
        VALUES (?, 'n', DATE '2020-01-01', 'standard', 'Asia/Shanghai', 'en', true, true, true)""",
        [(f"S{i}",) for i in range(900)],
    )
    for now, last in (
        (datetime(2025, 3, 1, 21, tzinfo=zone), date(2025, 1, 30)),  # as_of - 30 days
        (datetime(2025, 9, 1, 21, tzinfo=zone), date(2025, 2, 28)),  # the month's end
    ):
        report = build_monthly_report(
            con, "2025-02", LIFT_ZONE, now=now.astimezone(UTC), sla_hours=48, targets=Targets(),
            lift_days=30, reply_window_hours=72,
        )  # fmt: skip
        expected = expected_units(rows, {}, date(2024, 3, 1), last, 30)
        found = {c.campaign_id: (c.treated, c.held_out, c.last) for c in report.lifts}
        assert found == {c: (len(g[False]), len(g[True]), max(d)) for c, (g, d) in expected.items()}
        assert max(c.last for c in report.lifts) <= last
        # the window is shown as counted, in the JSON and the HTML
        assert report.lift_window == (date(2024, 3, 1), last)
        assert report.as_json()["lift_window"] == {"from": "2024-03-01", "to": last.isoformat()}
        assert f"(first care from 2024-03-01 to {last})" in render_html(report)
    # a month whose window has no day yet (its days have not passed): no lift, no window shown
    early = build_monthly_report(
        con, "2025-02", LIFT_ZONE, now=datetime(2024, 3, 15, tzinfo=UTC), sla_hours=48,
        targets=Targets(), lift_days=30, reply_window_hours=72,
    )  # fmt: skip
    assert early.lifts == [] and early.as_json()["lift_window"] is None
    assert "(first care from" not in render_html(early)


def add_care(con, rows, actions):
    """First-round care: (id, customer, campaign, status, created_at UTC), appended to rows."""
    con.executemany(
        """INSERT INTO care_actions (action_id, idempotency_key, run_id, campaign_id,
            subscriber_id, occasion, round, tier, locale, survey, status, created_at, updated_at)
        VALUES (?, ?, 'r', ?, ?, 'o', 1, 'standard', 'en', true, ?, ?, ?)""",
        [(a, a, c, s, st, at, at) for a, s, c, st, at in actions],
    )
    rows.extend((a, s, c, 1, st, at) for a, s, c, st, at in actions)


def plant_cases(con, tag, opened, cases):
    """Store managers' cases opened at ``opened`` (UTC), one per (second round sent at or
    None for none, its status): each on a rated first-round action and its second round."""
    plant_ratings(con, "ST1", opened[:7], len(cases), 0, tag=tag)
    prefix = f"ST1-{opened[:7]}-store_visit{tag}-"
    for i, (sent, status) in enumerate(cases):
        second = f"{prefix}{i}-r2" if sent else None
        if sent:
            con.execute(
                """INSERT INTO care_actions (action_id, idempotency_key, run_id, campaign_id,
                    subscriber_id, occasion, round, store_id, tier, locale, channel, survey,
                    status, created_at, sent_at, updated_at)
                VALUES (?, ?, 'r', 'store_visit', 'S' || ?, 'o', 2, 'ST1', 'standard', 'en',
                    'sms', true, 'delivered', ?::TIMESTAMPTZ, ?::TIMESTAMPTZ, ?::TIMESTAMPTZ)""",
                [second, second, second, sent, sent, sent],
            )
        con.execute(
            """INSERT INTO manager_cases (evaluation_id, store_id, subscriber_id, campaign_id,
                action_id, score, opened_at, second_round_action_id, recovered_score, status)
            VALUES (?, 'ST1', ?, 'store_visit', ?, 1, ?::TIMESTAMPTZ, ?, ?, ?)""",
            [f"case-{prefix}{i}", f"S{prefix}{i}", f"{prefix}{i}", opened, second,
             5 if status == "recovered" else None, status],
        )  # fmt: skip


def test_recovery_counts_only_cases_whose_outcome_is_due(con):
    """A month that has just ended still has second rounds waiting for their answer: they are
    not yet "not recovered", as SLA compliance does not count cases not yet due."""
    add_stores(con)
    register_campaign(con, "store_visit", "store_visit")
    settled = [("2026-01-11 02:00+00", "recovered")] * 20
    plant_cases(con, "a", "2026-01-10 02:00+00", settled + [("2026-01-11 02:00+00", "open")] * 20)
    plant_cases(con, "b", "2026-02-10 02:00+00", [("2026-02-11 02:00+00", "recovered")] * 10)
    plant_cases(con, "c", "2026-02-10 02:00+00", [("2026-02-11 02:00+00", "unresolved")] * 9)
    plant_cases(con, "d", "2026-02-10 02:00+00", [(None, "open")])  # none to send: due at once
    plant_cases(con, "e", "2026-02-27 02:00+00", [("2026-02-28 02:00+00", "open")] * 30)
    plant_cases(con, "f", "2026-02-27 02:00+00", [(None, "open")])  # within the reply window
    moments = kpi_moments(
        con, "2026-02", "Asia/Shanghai", sla_hours=48, now=datetime(2026, 3, 1, 12, tzinfo=UTC),
        reply_window_hours=72,
    )  # fmt: skip
    rows = {(r.kpi, r.scope, r.key): r for r in kpi_rows(moments, "2026-02", Targets())}
    recovery = rows[("recovery_rate", "overall", None)]
    assert (recovery.n, recovery.value) == (20, 0.5)  # 10 recovered of the 20 due
    assert (recovery.previous_n, recovery.previous) == (40, 0.5)  # January: all due
    assert recovery.flag is None  # not a built-in "down" (it was 10 of 51: 0.196)


def test_the_panorama_on_an_export_gives_the_reports_figures(con, settings, tmp_path):
    add_stores(con)
    register_campaign(con, "store_visit", "store_visit")
    units = []
    for month in ("2026-01", "2026-02"):
        for n, store in enumerate(STORES):
            satisfied = 2250 if (store, month) == ("ST2", "2026-02") else 2400
            plant_ratings(con, store, month, 3000, satisfied)
            region = "North" if n < 2 else "South"
            units += [(f"{month}-15", int(i < satisfied), store, region) for i in range(3000)]
    con.close()
    report = CliRunner().invoke(app, ["report", "--month", "2026-02", "--format", "json"])
    assert report.exit_code == 0, report.output
    expected = json.loads(report.output)
    path = tmp_path / "ratings.csv"
    pl.DataFrame(
        units, schema=["rated_on", "satisfied", "store", "region"], orient="row"
    ).write_csv(path)
    result = CliRunner().invoke(app, ["insights", "kpis", str(path), "--month", "2026-02",
                                      "--date", "rated_on", "--value", "satisfied",
                                      "--by", "store,region", "--kpi", "csat",
                                      "--format", "json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    found = json.loads(result.output, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    mine = {(r["kpi"], r["scope"], r["key"]): r for r in found["kpis"]}
    theirs = {
        (r["kpi"], r["scope"], r["key"]): r
        for r in expected["kpis"]
        if r["kpi"] == "csat" and r["scope"] in ("overall", "store", "region")
    }
    assert mine == theirs
    assert [r["key"] for r in found["kpis"] if r["scope"] == "store"] == list(STORES)
    drill = [{k: v for k, v in c.items() if k != "name"} for c in found["drilldown"]["csat"]]
    report_drill = [
        {k: v for k, v in c.items() if k != "name"}
        for c in expected["drilldown"]["csat"]
        if c["scope"] == "store"
    ]
    assert drill[: len(report_drill)] == report_drill and drill[0]["key"] == "ST2"
    html = CliRunner().invoke(app, ["insights", "kpis", str(path), "--month", "2026-02",
                                    "--date", "rated_on", "--value", "satisfied",
                                    "--by", "store", "--format", "html"])  # fmt: skip
    assert html.exit_code == 0 and "<script" not in html.output and "ST2" in html.output


def test_the_panorama_tables_rows_left_out_as_its_json_and_html_do(tmp_path):
    """Only the JSON (excluded_rows) and the HTML said a row with an empty value was left
    out; the table, what an analyst reads first, did not."""
    path = tmp_path / "units.csv"
    path.write_text("day,value,store\n2026-02-01,1,ST1\n2026-02-02,,ST1\n2026-01-03,0,ST2\n")
    args = ["insights", "kpis", str(path), "--month", "2026-02", "--date", "day", "--value",
            "value", "--by", "store"]  # fmt: skip
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "rows left out for an empty value: 1" in table.output
    as_json = CliRunner().invoke(app, [*args, "--format", "json"])
    assert json.loads(as_json.output)["excluded_rows"] == 1


def test_the_panorama_on_an_export_names_bad_cells(tmp_path):
    path = tmp_path / "units.csv"
    path.write_text("day,value,store\n2026-02-01,1,ST1\n2026-13-01,0,ST1\n2026-02-03,x,ST2\n")
    args = ["insights", "kpis", str(path), "--month", "2026-02", "--date", "day", "--value",
            "value", "--by", "store"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "column day: row 3 ('2026-13-01') not a date" in result.output
    path.write_text("day,value,store\n2026-02-01,1,ST1\n2026-02-03,x,ST2\n")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "column value: row 3 ('x') not a number" in result.output
    result = CliRunner().invoke(app, [*args[:-1], "shop"])
    assert result.exit_code == 2 and "no column shop" in result.output


def test_each_change_sits_in_the_interval_given_in_its_own_units(con):
    """The interval is of value - previous (points for a share). Shown beside the relative
    change only, a store's change of -0.408 sat outside its own interval [-0.382, -0.168]."""
    st2_drops(con)
    rows = [row for row in february_report(con).as_json()["kpis"] if row["difference_interval"]]
    assert rows and all("change_interval" not in row for row in rows)
    for row in rows:
        low, high = row["difference_interval"]
        assert low <= row["difference"] <= high
        assert row["difference"] == pytest.approx(row["value"] - row["previous"], abs=1e-4)


def test_a_rebuilt_demo_past_forgets_the_stored_first_care(con):
    """The demo's population rebuilt on the same warehouse gets a new past: the lift counts
    the new past's customers, not the days stored from the old one."""
    from datetime import timedelta

    from demo.data import build_demo_data
    from insights.lift import retention_lifts

    as_of, since = date(2026, 3, 1), date(2025, 4, 1)

    def lifts():
        return [
            (c.campaign_id, c.treated, c.held_out, c.first, c.last)
            for c in retention_lifts(con, as_of, LIFT_ZONE, days=60, since=since)
        ]

    def rows():
        found = con.execute(
            "SELECT action_id, subscriber_id, campaign_id, round, status, created_at "
            "FROM care_actions"
        ).fetchall()
        left = dict(con.execute("SELECT subscriber_id, left_on FROM subscribers").fetchall())
        return found, {s: d for s, d in left.items() if d is not None}

    build_demo_data(con, subscribers=400, seed=3, until=as_of, history_before=as_of)
    first = lifts()
    assert first  # the old past's units, stored
    build_demo_data(con, subscribers=400, seed=4, until=as_of, history_before=as_of)
    found, left = rows()
    expected = expected_units(found, left, since, as_of - timedelta(days=60), 60)
    again = lifts()
    assert again != first
    assert again == [
        (c, len(g[False]), len(g[True]), min(d), max(d)) for c, (g, d) in sorted(expected.items())
    ]


def test_drivers_and_topics_do_not_depend_on_the_order_the_ratings_are_stored_in(con):
    """A closed month's report is shown again later, after the warehouse rewrote its rows
    (migration 0031 stored the evaluations in received order): its key drivers' bootstrap
    and its topics' stores and examples read the same ratings the same way."""
    add_stores(con)
    con.execute(
        """
        INSERT INTO evaluations (evaluation_id, dedupe_key, action_id, subscriber_id,
            campaign_id, round, store_id, channel, intent, score, comment, attribution,
            received_at, attributes)
        SELECT 'e' || i, 'd' || i, 'a' || i, 'S' || i, 'store_visit', 1,
            'ST' || (1 + i % 4), 'email', 'rating', 1 + (i * 7) % 5,
            CASE WHEN (i * 7) % 5 < 2 THEN ['waited too long', 'staff were rude',
                'the line was slow and long', 'rude staff, long wait'][1 + i % 4] END,
            'matched', TIMESTAMPTZ '2026-02-10 02:00:00+00' + to_minutes(i),
            json_object('wait', 1 + (i * 7 + i % 3) % 5, 'staff', 1 + (i * 3) % 5,
                        'problem_solved', 1 + (i * 7 + i % 2) % 5)
        FROM range(400) t(i)"""
    )
    rebuild_ratings(con)

    def drivers_and_topics():
        report = february_report(con).as_json()
        return report["drivers"], report["drivers_by_store"], report["topics"]

    stored_in_order = drivers_and_topics()
    assert stored_in_order[0] is not None and stored_in_order[2]
    con.execute("CREATE TEMP TABLE shuffled AS SELECT * FROM evaluations ORDER BY md5(dedupe_key)")
    con.execute("DELETE FROM evaluations")
    con.execute("INSERT INTO evaluations SELECT * FROM shuffled")
    assert drivers_and_topics() == stored_in_order


def test_significance_and_contributions_are_not_painted_good_or_bad(con, settings):
    """The "significant" tag was green beside a red arrow (a significant drop), and every
    contribution's rate bar red, also where it raised CSAT: only the arrows say good or bad."""
    from insights.charts import contribution_chart
    from insights.panorama import Contribution

    st2_drops(con)
    html, _ = write_month(february_report(con), settings.reports_dir)
    style = html.read_text(encoding="utf-8")
    assert 'class="arrow bad"' in style and "significant</span>" in style
    sig = re.search(r"\.tag\.sig \{([^}]*)\}", style).group(1)
    assert "#dcfce7" not in sig and "#15803d" not in sig and "#b91c1c" not in sig
    parts = [
        Contribution("store", "ST1", 0.02, 0.01, 0.5, 0.6, 100, 100),
        Contribution("store", "ST2", -0.03, 0.0, 0.5, 0.4, 100, 100),
    ]
    svg = contribution_chart(parts, 100).lower()
    assert "#b91c1c" not in svg and "#15803d" not in svg
