"""The year benchmark's baselines: the empty day's faster run per step, and the month's ratios."""

from benchmarks.year_bench import Result, against_month, fastest, report, sending_rate


def test_each_step_takes_its_faster_empty_run_in_the_days_order() -> None:
    first = [Result("load", 5.0, 100), Result("report", 3.0, 900)]
    second = [Result("load", 4.0, 120), Result("report", 4.5, 800)]
    best = fastest([first, second])
    assert [(r.name, r.seconds, r.peak_mb) for r in best] == [
        ("load", 4.0, 120),
        ("report", 3.0, 900),
    ]


def test_the_month_comparison_names_the_step_the_history_beyond_it_slows_most() -> None:
    month = [Result("collect", 10.0, 1), Result("report", 16.0, 1)]
    year = [Result("collect", 11.0, 1), Result("report", 20.0, 1)]
    lines = against_month(month, year, 31, 365)
    assert any(line.startswith("report") and "1.25x" in line for line in lines)
    assert lines[-1] == "slowest step against 31 days of history: report 1.25x"


def test_a_run_stopped_by_the_timeout_leaves_the_other_runs_steps_as_the_baseline() -> None:
    stopped = [Result("load", 4.0, 1), Result("plan", 3600.0, 1, stopped=True)]
    finished = [Result("load", 5.0, 1), Result("plan", 7.0, 1), Result("report", 3.0, 1)]
    best = fastest([stopped, finished])
    assert [(r.name, r.seconds, r.stopped) for r in best] == [
        ("load", 4.0, False),
        ("plan", 7.0, False),
        ("report", 3.0, False),
    ]


def test_a_stopped_step_shows_no_ratio_and_is_not_the_slowest() -> None:
    month = [Result("dispatch", 3600.0, 1, stopped=True), Result("report", 10.0, 1)]
    year = [Result("dispatch", 1800.0, 1), Result("report", 12.0, 1)]
    lines = against_month(month, year, 31, 365)
    dispatch = next(line for line in lines if line.startswith("dispatch"))
    assert dispatch.endswith("stopped") and "x" not in dispatch.split()[-1]
    assert lines[-1] == "slowest step against 31 days of history: report 1.20x"


def test_the_sending_rate_leaves_out_the_same_command_with_nothing_due() -> None:
    dispatch = Result("dispatch", 12.0, 1, settled=80_000, idle_seconds=4.0)
    said = sending_rate(dispatch)
    assert "10,000 actions/s over 8.0 s" in said
    assert "less 4.0 s for the same command with nothing due" in said
    # a second run that sent more measured something else: no figure rather than a wrong one
    assert "not measured" in sending_rate(Result("dispatch", 12.0, 1, settled=80_000))


def test_the_columns_name_the_history_the_day_ran_on() -> None:
    """A smaller run (30 days) is not labelled a year's."""
    empty = [Result("dispatch", 10.0, 100, settled=1000, items=1000), Result("report", 3.0, 900)]
    month = [Result("dispatch", 11.0, 120, settled=1100, items=1100), Result("report", 4.5, 800)]
    lines = report(empty, month, "built", 1_000_000, 30)
    header = next(line for line in lines if line.startswith("step"))
    assert header.split() == ["step", "empty", "s", "30d", "s", "ratio", "empty", "MB", "30d", "MB"]
    assert any(line.startswith("dispatch on 30 days of history: 100 actions/s") for line in lines)
    assert any("30 days 10.000 ms (1,100 items)" in line for line in lines)
    assert not any("year" in line for line in lines[1:])
    longer = against_month(month, month, 31, 90)[0]
    assert longer.split()[:4] == ["step", "31d", "s", "90d"]
