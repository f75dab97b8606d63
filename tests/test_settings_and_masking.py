import json
import logging

import pytest
from typer.testing import CliRunner

from careloop.cli import app
from core.masking import MaskingFilter, mask_email, mask_phone, mask_text
from core.settings import ConfigError, load_settings


def test_bad_setting_is_named(monkeypatch):
    monkeypatch.setenv("CARELOOP_FREQUENCY_CAP", "often")
    with pytest.raises(ConfigError, match="CARELOOP_FREQUENCY_CAP"):
        load_settings()


def test_unknown_provider_is_named(monkeypatch):
    monkeypatch.setenv("CARELOOP_PROVIDER", "carrier-pigeon")
    with pytest.raises(ConfigError, match="CARELOOP_PROVIDER"):
        load_settings()


def test_secrets_never_print(monkeypatch):
    monkeypatch.setenv("CARELOOP_LINK_SECRET", "s3cret-value")
    settings = load_settings()
    assert "s3cret-value" not in repr(settings) and "s3cret-value" not in str(settings)
    assert settings.link_secret.get_secret_value() == "s3cret-value"


def test_tiers_from_a_comma_list(monkeypatch):
    monkeypatch.setenv("CARELOOP_TIERS", "basic, premium")
    assert load_settings().tiers == ("basic", "premium")


@pytest.mark.parametrize(
    ("tiers", "said"), [("", "names no tier"), (" , ,", "names no tier"), ("a,b,a", "twice")]
)
def test_tiers_that_name_no_tier_or_one_twice_are_refused_naming_the_setting(
    monkeypatch, tiers, said
):
    """An empty CARELOOP_TIERS was taken: a load then said "tier 'gold' is not a tier ()" and
    `careloop campaigns` blamed birthday.yaml's offers."""
    monkeypatch.setenv("CARELOOP_TIERS", tiers)
    with pytest.raises(ConfigError, match=f"CARELOOP_TIERS.*{said}"):
        load_settings()


def test_masking():
    assert mask_phone("+8613812345678") == "+86*******5678"
    assert mask_phone("+12125550100") == "+1******0100"
    assert mask_email("li.wei@example.com") == "l***@example.com"
    assert (
        mask_text("to +8613812345678 and li.wei@example.com")
        == "to +86*******5678 and l***@example.com"
    )


def test_log_records_are_masked():
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "sent to %s", ("+12125550100",), None
    )
    MaskingFilter().filter(record)
    assert record.getMessage() == "sent to +1******0100"


def test_cli_lists_commands_and_parses_replies():
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    for command in ("demo-data", "run", "collect", "second-round", "demo", "segment", "replies"):
        assert command in result.output
    parsed = runner.invoke(app, ["replies", "parse", "2 排队太久了"])
    assert parsed.exit_code == 0
    # indented as the reports' JSON, the Chinese kept as written
    shown = '{\n  "intent": "rating",\n  "score": 2,\n  "comment": "排队太久了"\n}\n'
    assert parsed.output == shown


def test_json_is_printed_whatever_the_output_encoding_says():
    """An output set up for ASCII (a pipe, PYTHONIOENCODING) still gets the Chinese text."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = subprocess.run(
        [sys.executable, "-m", "careloop.cli", "replies", "parse", "2 排队太久了"],
        env=env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert '"comment": "排队太久了"'.encode() in done.stdout
    # an encoding without the text (latin-1) gets the same JSON, its escapes for the Chinese
    env["PYTHONIOENCODING"] = "latin-1"
    done = subprocess.run(
        [sys.executable, "-m", "careloop.cli", "replies", "parse", "2 排队太久了 café"],
        env=env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert json.loads(done.stdout.decode("latin-1"))["comment"] == "排队太久了 café"
    # a preview's rows too (core.output.print_frame)
    show = (
        "import polars as pl; from rich.console import Console; from core.output import "
        "print_frame; print_frame(pl.DataFrame({'store': ['上海1号店']}), 'json', Console())"
    )
    done = subprocess.run(
        [sys.executable, "-c", show], env=env, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert json.loads(done.stdout.decode("latin-1")) == [{"store": "上海1号店"}]


def _latin1_run(code: str):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONIOENCODING": "latin-1"}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=120, check=False
    )


def test_tables_csv_and_pages_on_an_output_without_the_text():
    """latin-1 cannot write Chinese. What people read (tables, the command's lines) is
    written with escapes; CSV, data a program reads, fails in one clear line and writes
    nothing; a page gets character references, the same page to a browser."""
    frame = "pl.DataFrame({'store': ['上海1号店'], 'note': ['café']})"
    table = _latin1_run(
        "import polars as pl; from careloop.cli import console; from core.output import "
        f"print_frame; print_frame({frame}, 'table', console); console.print('门店 ok')"
    )
    assert table.returncode == 0, table.stderr.decode(errors="replace")
    shown = table.stdout.decode("latin-1")
    assert "\\u4e0a\\u6d771\\u53f7\\u5e97" in shown and "café" in shown
    assert "\\u95e8\\u5e97 ok" in shown
    csv_out = _latin1_run(
        "import polars as pl; from core.output import print_frame; "
        f"print_frame({frame}, 'csv', None)"
    )
    assert csv_out.returncode == 1 and csv_out.stdout == b""
    said = csv_out.stderr.decode("latin-1")
    assert "OutputEncodingError" in said and "PYTHONIOENCODING=utf-8" in said
    page = _latin1_run("from core.output import echo_html; echo_html('<p>上海 café</p>')")
    assert page.returncode == 0, page.stderr.decode(errors="replace")
    assert page.stdout == b"<p>&#19978;&#28023; caf&#233;</p>\n"


def test_the_inbox_url_is_checked_named_and_never_printed(monkeypatch):
    monkeypatch.setenv("CARELOOP_INBOX_URL", "mysql://care:hunter2@db/care")
    with pytest.raises(ConfigError, match=r"CARELOOP_INBOX_URL: .*must start with") as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)
    monkeypatch.setenv("CARELOOP_INBOX_URL", "postgresql://care:hunter2@db/care")
    settings = load_settings()
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())


def test_the_demo_refuses_a_shared_inbox(monkeypatch, tmp_path):
    from core.errors import UserError
    from flows.demo import run_demo

    monkeypatch.setenv("CARELOOP_INBOX_URL", "postgresql://care@db/care")
    with pytest.raises(UserError, match="unset CARELOOP_INBOX_URL"):
        run_demo(subscribers=10, days=1, home=tmp_path / "demo")
    assert not (tmp_path / "demo").exists()


def test_the_demo_command_refuses_a_demos_own_home_before_anything_starts(monkeypatch, tmp_path):
    from flows.demo import DEMO_MARK

    home = tmp_path / "demo"
    home.mkdir()
    (home / DEMO_MARK).write_text("a demo's home\n")
    (home / "keep.txt").write_text("kept")
    monkeypatch.setenv("CARELOOP_HOME", str(home))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = CliRunner().invoke(app, ["demo", "--subscribers", "100", "--days", "1"])
    assert result.exit_code == 2 and "is a demo's home" in result.output
    assert "temporary Prefect server" not in result.output  # refused before any flow session
    assert sorted(p.name for p in home.iterdir()) == [DEMO_MARK, "keep.txt"]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_previews_rows_are_printed_whatever_the_output_encoding_says(monkeypatch, fmt):
    """As print_json: a segment or audience preview's text (a rule may give names) reaches an
    output set up for ASCII instead of failing on it."""
    import io
    import sys

    import polars as pl
    from rich.console import Console

    from core.output import print_frame

    raw = io.BytesIO()
    ascii_out = io.TextIOWrapper(raw, encoding="ascii")
    monkeypatch.setattr(sys, "stdout", ascii_out)
    print_frame(pl.DataFrame({"name": ["客户1"]}), fmt, Console())
    ascii_out.flush()
    assert "客户1".encode() in raw.getvalue()


def test_a_previews_json_is_strict_where_a_rule_gives_nan_or_infinity(capsys):
    """A rule's 0/0 is NaN: json.dumps would print NaN and Infinity, which strict parsers
    (jq, JavaScript) refuse. They go as null; the other values as they are."""
    import polars as pl

    from core.output import console, print_frame

    nan, inf = float("nan"), float("inf")
    frame = pl.DataFrame(
        {
            "ratio": [0.5, nan, -inf, None],
            "n": [1, 2, 3, 4],
            "scores": [[1.0, nan], [inf], [], None],  # a list of floats
            "cell": [{"x": nan}, {"x": 1.5}, {"x": None}, {"x": 2.0}],  # a struct
        }
    )
    frame = frame.with_columns(half=pl.Series([1.0, nan, inf, None], dtype=pl.Float16))
    print_frame(frame, "json", console())
    strict = json.loads(capsys.readouterr().out, parse_constant=pytest.fail)
    assert [row.pop("half") for row in strict] == [1.0, None, None, None]
    assert strict == [
        {"ratio": 0.5, "n": 1, "scores": [1.0, None], "cell": {"x": None}},
        {"ratio": None, "n": 2, "scores": [None], "cell": {"x": 1.5}},
        {"ratio": None, "n": 3, "scores": [], "cell": {"x": None}},
        {"ratio": None, "n": 4, "scores": None, "cell": {"x": 2.0}},
    ]


def test_a_previews_json_gives_moments_in_iso_and_decimals_as_numbers(capsys):
    """JSON has no type for a moment or a decimal: a moment goes in ISO 8601 (with its T, as
    a parser reads it), a decimal as a number (a rule's money column: jq can add it up)."""
    from datetime import UTC, date, datetime, time
    from decimal import Decimal

    import polars as pl

    from core.output import console, print_frame

    frame = pl.DataFrame(
        {
            "at": [datetime(2027, 3, 1, 7, 30, tzinfo=UTC), None],
            "on": [date(2027, 3, 1), None],
            "hour": [time(19, 5), None],
            "paid": pl.Series([Decimal("12.50"), Decimal("3")], dtype=pl.Decimal(10, 2)),
            "spans": [[datetime(2027, 3, 1)], []],
        }
    )
    print_frame(frame, "json", console())
    assert json.loads(capsys.readouterr().out) == [
        {
            "at": "2027-03-01T07:30:00+00:00",
            "on": "2027-03-01",
            "hour": "19:05:00",
            "paid": 12.5,
            "spans": ["2027-03-01T00:00:00"],
        },
        {"at": None, "on": None, "hour": None, "paid": 3, "spans": []},
    ]


def test_the_console_writes_past_riches_own_stdout_while_a_bar_is_live(monkeypatch, capsys):
    """On a terminal, a live progress bar stands rich's proxy in for stdout, which prints
    what it is given through the console again: written to, the console would loop."""
    import copy
    import sys

    from rich.file_proxy import FileProxy

    from core.output import console

    class Proxy(FileProxy):
        writing = False

        def write(self, text: str) -> int:
            assert not Proxy.writing, "the console wrote back into rich's proxy: a loop"
            Proxy.writing = True
            try:
                return super().write(text)
            finally:
                Proxy.writing = False

    shown = console()
    monkeypatch.setattr(sys, "stdout", Proxy(shown, sys.stdout))
    print("a plain print meanwhile")  # what rich's proxy is for
    shown.print("门店 done")
    monkeypatch.undo()
    out = capsys.readouterr().out
    assert "门店 done" in out and "a plain print meanwhile" in out
    copy.copy(shown.file), copy.deepcopy(shown.file)  # a copy finds its own attributes


@pytest.mark.parametrize("home", ["", "  "])
def test_an_empty_home_is_refused_not_taken_for_the_current_folder(monkeypatch, home):
    """CARELOOP_HOME= was the current folder, which every start then made its owner's only,
    everything in it included."""
    monkeypatch.setenv("CARELOOP_HOME", home)
    with pytest.raises(ConfigError, match=r"CARELOOP_HOME: .*is empty"):
        load_settings()


def test_links_default_to_the_port_the_homes_stack_serves_on(monkeypatch):
    """With CARELOOP_SERVICE_PORT set, the demo's mails still linked port 8000."""
    monkeypatch.delenv("CARELOOP_PUBLIC_URL", raising=False)
    monkeypatch.setenv("CARELOOP_SERVICE_PORT", "8444")
    settings = load_settings()
    assert settings.public_url == "http://127.0.0.1:8444"
    assert "public_url" not in settings.model_fields_set  # a default: a serve names itself
    for said in ("eighty", "²", "99999"):  # '²' is a digit to str.isdigit, no int's
        monkeypatch.setenv("CARELOOP_SERVICE_PORT", said)
        with pytest.raises(ConfigError, match=f"CARELOOP_SERVICE_PORT='{said}': a port number"):
            load_settings()
