"""The insights and report commands' arguments, and local times as campaign files give them."""

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from campaigns.spec import DEFINITIONS_DIR, CampaignError, parse_campaign
from careloop.cli import app
from careloop.groups import SummaryGroup, joined_summary
from tests.test_send_time import simulate
from warehouse.db import warehouse

CARELOOP = Path(sys.executable).parent / "careloop"


def own_home(home: Path) -> dict[str, str]:
    """This environment for a `careloop` process of the test's own: its home and Prefect's in
    ``home``, no width given (a pipe's table is as wide as its cells)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARELOOP_", "COLUMNS"))}
    return env | {"CARELOOP_HOME": str(home), "PREFECT_HOME": str(home / "prefect")}


@pytest.mark.parametrize(
    ("cutoff", "until"),
    [
        ("2026-05-31", "2026-05-01"),  # the cut-off after the end: an empty period
        ("2027-01-01", "2027-02-01"),  # a period after the last send (2026-05-31)
    ],
)
def test_a_period_with_no_sends_is_a_usage_error_not_advice(con, settings, cutoff, until):
    """The command refuses an empty held-out period (exit 2, naming the options), not a table
    of zeros with advice about the exploration share."""
    simulate(con, 1, planted=True, customers=200)
    result = CliRunner().invoke(
        app,
        ["insights", "send-time", "--campaign", "birthday", "--cutoff", cutoff, "--until", until],
    )
    assert result.exit_code == 2, result.output
    assert "--cutoff" in result.output and "exploration share" not in result.output


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("2026-02-30", "'2026-02-30' is not a day of the calendar (day is out of range"),
        ("2026-13-01", "'2026-13-01' is not a day of the calendar (month must be in 1..12)"),
        ("26-02-01", "'26-02-01': give it as YYYY-MM-DD"),
    ],
)
def test_a_day_the_calendar_has_not_is_said_to_be_so(settings, given, said):
    """Before, a day of the right shape that does not exist was refused as not matching
    the format '%Y-%m-%d', which it does."""
    result = CliRunner().invoke(app, ["audience", "preview", "birthday", "--as-of", given])
    assert result.exit_code == 2
    assert said in " ".join(result.output.replace("│", " ").split()), result.output  # boxed


def test_a_day_given_unpadded_is_read_as_before(con, settings):
    con.close()
    result = CliRunner().invoke(app, ["audience", "preview", "birthday", "--as-of", "2026-3-1"])
    assert result.exit_code == 0, result.output


def test_each_month_keeps_its_own_loop_report(con, settings):
    """The loop report is now scoped to the month (like the KPI report beside it, which is
    written as kpi-YYYY-MM.html). It is still written to one fixed kpi_report.md, so the
    report of one month silently replaces the other's, and a report for a month with no
    care at all (a typo, 2030-01) overwrites last month's with an empty one."""
    con.close()
    runner = CliRunner()
    for month in ("2026-01", "2026-02"):
        result = runner.invoke(app, ["report", "--month", month])
        assert result.exit_code == 0, result.output
    titles = [p.read_text().splitlines()[0] for p in settings.reports_dir.glob("*.md")]
    assert "# careloop: the loop in 2026-01" in titles, titles


def test_the_current_months_loop_report_covers_it_so_far(con, settings, monkeypatch):
    """Run on the 5th, it said "cases opened and opt-outs from 2026-12-01 to 2026-12-31"."""
    from datetime import UTC, datetime

    import core.clock

    con.close()
    monkeypatch.setattr(core.clock, "utc_now", lambda: datetime(2026, 12, 5, 8, tzinfo=UTC))
    result = CliRunner().invoke(app, ["report", "--month", "2026-12"])
    assert result.exit_code == 0, result.output
    text = (settings.reports_dir / "loop-2026-12.md").read_text()
    assert "from 2026-12-01 to 2026-12-05" in text and "2026-12-31" not in text, text


def test_a_month_that_has_not_begun_is_refused_and_nothing_is_written(con, settings):
    """`careloop report --month 2030-01` (a typo) wrote an empty KPI report, loop report and
    lists, and exited 0."""
    con.close()
    result = CliRunner().invoke(app, ["report", "--month", "2030-01"])
    assert result.exit_code == 2, result.output
    assert "month '2030-01' has not begun: it is 20" in result.output
    assert not list(settings.reports_dir.glob("*2030-01*"))
    result = CliRunner().invoke(app, ["report", "--month", "2030-01", "--format", "json"])
    assert result.exit_code == 2 and "has not begun" in result.output


@pytest.mark.parametrize(
    ("field", "line"),
    [
        ("send_time_fallback", "send_time: learned\nsend_time_fallback: 10:00\n"),
        ("send_time", "send_time: 11:00\n"),
        ("send_window", "send_window: [10:00, 21:00]\n"),
    ],
)
def test_an_unquoted_yaml_time_is_read_as_written_or_refused(tmp_path, field, line):
    """YAML 1.1 reads an unquoted 10:00 as the sexagesimal integer 600, which pydantic takes
    as 600 seconds: ``send_time_fallback: 10:00`` becomes 00:10 UTC (the customers without
    history and the held-out group then go at the window's opening, and ``insights
    send-time`` compares against hour 0), ``send_window: [10:00, 21:00]`` an 11-minute
    window after midnight. The file should mean 10:00, or be refused naming the field."""
    raw = (DEFINITIONS_DIR / "birthday.yaml").read_text()
    kept = [x for x in raw.splitlines(keepends=True)
            if not x.startswith(("send_time", "send_window"))]  # fmt: skip
    path = tmp_path / "birthday.yaml"
    path.write_text(line + "".join(kept))
    try:
        campaign = parse_campaign(path)
    except CampaignError as exc:
        assert field in str(exc)
        return
    value = getattr(campaign, field)
    times = value if isinstance(value, tuple) else (value,)
    assert all(t.hour >= 9 and t.tzinfo is None for t in times), value


def test_migrate_says_what_it_applied_and_then_that_nothing_was_left(settings):
    runner = CliRunner()
    first = runner.invoke(app, ["migrate"])
    again = runner.invoke(app, ["migrate"])
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    said = " ".join(first.output.split())
    assert "applied now: 0001_initial," in said and "0031_evaluations_unkeyed" in said
    assert "nothing to apply" in again.output and "applied now" not in again.output


@pytest.mark.parametrize(
    ("group", "command", "summary"),
    [
        ([], "deploy", "(PREFECT_API_URL, or the stack `make up` started), daily schedules"),
        (["insights"], "lift", "with its 95% interval, p-value and the sample size a campaign"),
        (["managers"], "revoke", "refuse the links issued until now (a lost phone, a leaked"),
    ],
)
def test_a_groups_list_gives_each_summary_as_a_paragraph(group, command, summary):
    """A docstring wrapped at the source's width was listed with its line breaks: `careloop
    --help` had "(PREFECT_API_URL, or the stack `make" on a line of its own. Wide enough for
    the summary, its line holds it whole."""
    result = CliRunner().invoke(app, [*group, "--help"], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if f"│ {command} " in row)
    assert summary in line, result.output


@pytest.mark.parametrize(
    ("args", "flag"),
    [([], "--debug"), (["run"], "--no-send"), (["load", "visits"], "--quarantine")],
)
def test_a_flag_shows_no_value_to_give(args, flag):
    """Typer showed ``<bool>`` beside every flag, the help option's too, which read as a value
    to give: `careloop --debug true campaigns` took "true" for a command."""
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert flag in result.output and "<bool>" not in result.output


def test_a_days_default_is_shown_as_a_day():
    """``demo-data --help`` showed ``[default: 2026-03-01 00:00:00]`` for a YYYY-MM-DD option:
    typer shows the datetime it holds the day as."""
    result = CliRunner().invoke(app, ["demo-data", "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "[default: 2026-03-01]" in result.output and "00:00:00" not in result.output


def _listing_app() -> typer.Typer:
    """A group of three commands: a wrapped docstring, a kept block, a summary given."""
    listing = typer.Typer(cls=SummaryGroup)

    @listing.command()
    def wrapped() -> None:
        """A summary that the source wraps, as a docstring is
        wrapped at the source's width, and goes on after it."""

    @listing.command(help="\b\nline one\nline two")
    def kept() -> None:
        pass

    @listing.command(short_help="a summary given")
    def given() -> None:
        """A docstring that the list does not show."""

    return listing


def test_a_kept_block_and_a_given_summary_are_listed_as_written():
    """Only a first paragraph wrapped at the source's width is joined: a kept block ("\\b")
    keeps its lines, and a summary given explicitly is the one listed."""
    result = CliRunner().invoke(_listing_app(), ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    row = next(i for i, line in enumerate(lines) if "│ kept " in line)
    assert "line one" in lines[row] and "line two" not in lines[row]
    assert "line two" in lines[row + 1], result.output
    assert any("│ given " in line and "a summary given" in line for line in lines)
    assert any(
        "│ wrapped " in line and "source wraps, as a docstring is wrapped at the" in line
        for line in lines
    ), result.output


def test_shell_completion_gives_one_line_a_command():
    """Fish and PowerShell read a completion candidate per line: a summary that ran over
    several lines gave each of its lines as a candidate of its own."""
    env = {
        "_CARELOOP_COMPLETE": "complete_fish",
        "_TYPER_COMPLETE_FISH_ACTION": "get-args",
        "_TYPER_COMPLETE_ARGS": "careloop ",
        "COLUMNS": "80",
    }
    result = CliRunner().invoke(app, [], env=env, prog_name="careloop")
    commands = {c.name for c in typer.main.get_command(app).commands.values()}  # type: ignore[attr-defined]
    candidates = [line.split("\t")[0] for line in result.output.splitlines() if line]
    assert "deploy" in candidates, result.output
    assert set(candidates) <= commands, result.output


def test_what_follows_a_form_feed_is_never_joined_into_the_summary():
    """Click shows nothing after a "\\f" (internal notes); joined, it became the summary's end."""
    shown = joined_summary("Do the\n    thing.\n\f\n:param ctx: internal.")
    assert shown.partition("\f")[0].strip() == "Do the thing."
    assert joined_summary("\b\nline one\nline two") == "\b\nline one\nline two"


@pytest.mark.parametrize("columns", [None, "60", "", "wide", "0"])
def test_a_table_piped_or_logged_keeps_every_cell_whole(tmp_path, columns):
    """Off a terminal (a pipe, a scheduled run's log) a table is as wide as its cells: fitted
    into 80 columns it cut the ones that did not fit ("新套餐扣费不…") or broke them over
    lines. COLUMNS, when set, still decides the width."""
    env = own_home(tmp_path)
    if columns is not None:
        env["COLUMNS"] = columns  # a width when it is one; empty, a word or 0: none given
    shown = subprocess.run(
        [CARELOOP, "campaigns"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    descriptions = [parse_campaign(p).description for p in sorted(DEFINITIONS_DIR.glob("*.yaml"))]
    assert descriptions and all(len(d) > 60 for d in descriptions)  # longer than 80 columns hold
    whole = [any(d in line for line in shown.splitlines()) for d in descriptions]
    widest = max(len(line) for line in shown.splitlines())
    if columns and columns.isdigit() and int(columns) > 0:
        assert not any(whole) and widest <= int(columns), shown
    else:
        assert all(whole) and widest > 80, shown


def test_a_rules_sql_piped_is_its_lines_not_the_consoles_width(tmp_path):
    """Off a terminal the console is as wide as a table needs: the rule's SQL, which rich's
    Syntax pads to the console's width (10,000 columns), is written as it is."""
    from segments.registry import load_rules

    env = own_home(tmp_path)
    shown = subprocess.run(
        [CARELOOP, "segment", "show", "birthday"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout.splitlines()  # fmt: skip
    sql = [line.rstrip() for line in load_rules()["birthday"].sql.splitlines()]
    header = shown[: len(shown) - len(sql)]
    assert shown[len(header) :] == sql  # no line padded
    assert max(map(len, shown)) <= max(map(len, header + sql))


def test_a_command_with_its_error_output_closed_still_does_its_work(tmp_path):
    """Started with stderr closed (``2>&-``: Python has no sys.stderr), a command still runs:
    deciding the consoles' width asked the missing stream whether it is a terminal."""
    env = own_home(tmp_path)
    shown = subprocess.run(
        ["bash", "-c", f"'{CARELOOP}' campaigns 2>&-"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0 and "birthday" in shown.stdout, shown


@pytest.mark.parametrize("closed", [">&-", "<&- >&-", "<&- >&- 2>&-"])
def test_a_command_started_without_its_output_does_its_work(tmp_path, closed):
    """Started with stdout closed (``>&-``, a cron line), a command failed with "'NoneType'
    object has no attribute 'write'" once its work was done, and the warehouse it opened took
    the free descriptor 1. The closed streams are /dev/null: the load is done and says
    nothing, and the warehouse holds no printed text."""
    import duckdb

    env = own_home(tmp_path)
    stores = tmp_path / "stores.csv"
    stores.write_text(
        "store_id,name,city,region,timezone,manager_name,manager_email\n"
        "ST9,Store 9,Wuhan,central,Asia/Shanghai,Li Na,li.na@example.com\n"
    )

    done = subprocess.run(
        ["bash", "-c", f"'{CARELOOP}' load stores '{stores}' {closed}; echo rc=$?"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.stdout == "rc=0\n" and "NoneType" not in done.stderr, done
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT store_id, city FROM stores").fetchall() == [("ST9", "Wuhan")]
    finally:
        con.close()


def test_the_reports_period_is_a_note_under_its_table_not_a_cell(tmp_path):
    """Off a terminal a table is as wide as its cells: the period's sentence, a cell, made the
    value column 150 columns wide, every figure far to the right of its name."""
    env = own_home(tmp_path)
    shown = subprocess.run(
        [CARELOOP, "report", "--month", "2026-02"],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    ).stdout.splitlines()  # fmt: skip
    table = [line for line in shown if line.startswith(("┃", "│", "┏", "└"))]
    assert table and max(len(line) for line in table) < 60, shown
    said = " ".join(line.strip() for line in shown)
    assert "period: No first-round care planned in this period" in said, shown


def test_what_data_says_is_shown_as_written_in_every_table(capsys):
    """A customer's comment, a rule's description or a campaign named with brackets is text:
    shown as console markup, "[/b]" stopped the table with a MarkupError and "[sms, email]"
    was dropped."""
    import polars as pl
    from rich.console import Console

    from core.output import print_frame
    from core.tables import PlainTable

    said = ["[/b] 排队[太]久", "channels: [sms, email", "[red]x[/red]"]
    console = Console(width=200, force_terminal=False)
    print_frame(pl.DataFrame({"comment": said}), "table", console, "[/b] replies")
    table = PlainTable("campaign", "[sms, email] [/u]", title="[bold]campaigns")
    table.add_row("[/i]", said[1])
    console.print(table)
    shown = capsys.readouterr().out
    assert all(
        text in shown
        for text in [*said, "[/b] replies", "[bold]campaigns", "[/i]", "[sms, email] [/u]"]
    )
    import careloop.insights_cli  # its lines are data: its console reads no markup

    assert careloop.insights_cli.console._markup is False


@pytest.mark.parametrize("where", ["a-file", "a-file/below", "a-link/below"])
def test_a_home_that_cannot_be_a_folder_is_refused_naming_the_setting_before_any_server(
    tmp_path, where
):
    """It failed with a bare FileNotFoundError (or NotADirectoryError), after a temporary
    Prefect server had started."""
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-link").symlink_to(tmp_path / "nowhere")
    home = tmp_path / where
    result = subprocess.run(
        [CARELOOP, "run", "birthday", "--no-send"],
        env=own_home(home) | {"PREFECT_HOME": str(tmp_path / "prefect")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    said = " ".join(result.stderr.split())
    blocked = tmp_path / where.split("/")[0]
    assert f"CARELOOP_HOME={home}: {blocked} is a " in said, said
    assert "Traceback" not in result.stderr and "Prefect server" not in result.stderr
    assert not (tmp_path / "prefect").exists()  # nothing started


def test_a_missing_home_is_made_owner_only(tmp_path):
    home = tmp_path / "new" / "home"
    result = subprocess.run(
        [CARELOOP, "segment", "list"], env=own_home(home), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert home.is_dir() and home.stat().st_mode & 0o777 == 0o700


def test_a_past_as_of_is_told_once(tmp_path):
    """The flow's warning (kept for the run's log on the server) and the command's notice
    both printed it."""
    env = own_home(tmp_path / "home")
    past = ["run", "birthday", "--as-of", "2026-02-28", "--no-send"]
    for args in (["demo-data", "--subscribers", "300"], past):
        done = subprocess.run(
            [CARELOOP, *args], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert said.count("is in the past") == 1, said
    assert "notice: as of 2026-02-28 is in the past" in " ".join(said.split())


def test_a_run_on_an_empty_warehouse_says_where_the_customers_are(tmp_path):
    """It said "targeted 0" and nothing about the warehouse holding no one (a newcomer's
    first run, on the default home, with the demo's data in its own)."""
    done = subprocess.run(
        [CARELOOP, "run", "birthday", "--no-send"], env=own_home(tmp_path / "home"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = " ".join((done.stdout + done.stderr).split())
    assert said.count("the warehouse holds no subscribers") == 1, said
    assert "careloop load subscribers FILE" in said and "CARELOOP_HOME=.careloop/demo" in said


def test_a_long_list_of_figures_all_zero_says_nothing_to_do():
    """An empty second round's birthday step said only "send time (learned 0, fallback 0)"
    (a mapping of zeros counted as a figure), where tenure's said "queued none, suppressed
    none, held out 0". A plan with no members now gives only the latter
    (test_planning), and a short list keeps its zeros ("left or unknown 0")."""
    from core.progress import describe

    empty = {"queued": {}, "suppressed": {}, "held_out": 0}
    learned = {"learned": 0, "fallback": 0}
    assert describe(empty) == "queued none, suppressed none, held out 0"
    assert describe(empty | {"send_time": learned, "variants": {}}) == "nothing to do"
    assert describe({"left_or_unknown": 0, "already_planned": 0}) == (
        "left or unknown 0, already planned 0"
    )
    short = empty | {"queued": {"sms": 3}}
    assert describe(short) == "queued (sms 3), suppressed none, held out 0"  # short: all shown
    some = short | {"send_time": learned | {"fallback": 3}}
    assert describe(some) == "queued (sms 3), send time (learned 0, fallback 3)"


def test_links_name_a_serve_of_the_homes_own_on_its_port_while_it_runs(tmp_path):
    """With `careloop serve --port` and no CARELOOP_PUBLIC_URL, the service named itself but
    `managers link` (and dispatch's rating links) still named port 8000, where nothing ran.
    A second serve that cannot bind names nothing (it took the first one's name away), and
    one that stops gives the name back to the one before it."""
    env = own_home(tmp_path / "home") | {"CARELOOP_SERVICE_PORT": "8000"}
    stores = tmp_path / "stores.csv"
    stores.write_text(
        "store_id,name,city,region,timezone,manager_name,manager_email\n"
        "ST1,One,Shanghai,East,Asia/Shanghai,Wang,wang@example.com\n"
    )
    loaded = subprocess.run([CARELOOP, "load", "stores", str(stores)], env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr

    said: list[str] = []

    def link() -> str:
        done = subprocess.run([CARELOOP, "managers", "link", "ST1"], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        said.append(done.stderr)
        return done.stdout.split("/m/login/")[0]

    first, second = _free_port(), _free_port()
    with _serving(env, first):
        assert link() == f"http://127.0.0.1:{first}"
        taken = subprocess.run([CARELOOP, "serve", "--port", str(first)], env=env,
                               capture_output=True, text=True, timeout=300)  # fmt: skip
        assert taken.returncode != 0  # the port is the first one's
        assert link() == f"http://127.0.0.1:{first}"
        with _serving(env, second):
            assert link() == f"http://127.0.0.1:{second}"
        assert link() == f"http://127.0.0.1:{first}"  # the second stopped (SIGTERM)
    assert not (tmp_path / "home" / "run" / "serve-url").exists()  # gone with the first
    assert not any(said)  # while a serve of the home's answered, nothing to say
    assert link() == "http://127.0.0.1:8000"
    # none runs: another home's service may answer on the port, and the link opened it
    assert "no careloop service runs for this home" in " ".join(said[-1].split())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _serving(env: dict[str, str], port: int) -> Iterator[None]:
    """`careloop serve --port PORT` until it answers, stopped (SIGTERM) at the end."""
    import requests

    service = subprocess.Popen([CARELOOP, "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        while service.poll() is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                threading.Event().wait(0.25)  # not listening yet: ask again shortly
        assert service.poll() is None, "the service stopped"
        yield
    finally:
        service.terminate()
        service.wait(timeout=60)


def test_demo_data_does_not_replace_loaded_data_unasked(settings, tmp_path):
    """A newcomer loaded their stores, then ran `demo-data` from the README's command list:
    it replaced them with 48 generated stores, saying nothing of it."""
    stores = tmp_path / "stores.csv"
    stores.write_text(
        "store_id,name,city,region,timezone,manager_name,manager_email\n"
        "ST9001,店,Shanghai,East China,Asia/Shanghai,王伟,m@example.com\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    assert runner.invoke(app, ["load", "stores", str(stores)]).exit_code == 0
    refused = runner.invoke(app, ["demo-data", "--subscribers", "50"])
    assert refused.exit_code == 2
    said = " ".join(refused.output.split())
    assert "holds what 1 loaded file(s) put there" in said and "--replace-loaded" in said
    with warehouse(settings.warehouse_path) as con:
        assert con.execute("SELECT list(store_id) FROM stores").fetchone() == (["ST9001"],)
    replaced = runner.invoke(app, ["demo-data", "--subscribers", "50", "--replace-loaded"])
    assert replaced.exit_code == 0, replaced.output
    with warehouse(settings.warehouse_path) as con:
        assert con.execute("SELECT count(*) FROM subscribers").fetchone() == (50,)
    # replaced once, asked no more (it refused ever after, the loads long gone)
    again = runner.invoke(app, ["demo-data", "--subscribers", "60", "--seed", "3"])
    assert again.exit_code == 0, again.output
