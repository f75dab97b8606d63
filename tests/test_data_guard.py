"""Data that stays where it belongs (issue 22): ids from a file never name a path outside its
folder, everything under the home is its owner's only whatever the umask, labels from data
draw as plain text and spreadsheet cells never start a formula."""

import codecs
import csv
import io
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import requests

from core.errors import UserError
from core.files import (
    csv_bytes,
    foreign_entries,
    safe_row,
    spreadsheet_safe,
    write_private_csv,
    write_private_csvs,
    xlsx_bytes,
)
from insights.charts import contribution_chart, importance_performance_chart
from insights.drivers import Driver
from insights.panorama import Contribution
from tests.factories import add_action, add_listed_case, add_store, add_subscriber
from warehouse.db import connect
from warehouse.loading import LoadRefusedError, load_file

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STORE_HEADER = "store_id,name,city,region,timezone,manager_name,manager_email\n"

# Each id a file could carry to reach a file elsewhere, or break what draws or opens it.
HOSTILE_IDS = [
    "../../../../../../tmp/x/pwned",
    "..",
    ".hidden",
    "a/b",
    "a\\b",
    "ST 1",
    "ST9$\\frac{a}{$",
    "店1",
    "x" * 65,
    "-rf",  # a command would read it as an option (careloop managers link -rf)
]


def _careloop(env, *args, umask=0o022, timeout=600):
    return subprocess.run(
        [BIN / "careloop", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        umask=umask,
    )


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARELOOP_", "PREFECT_"))}
    return env | {
        "CARELOOP_HOME": str(home),
        "PREFECT_HOME": str(home / "prefect"),  # Prefect's own files under the home too
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "False",
        "COLUMNS": "400",  # messages on one line each, as the tests read them
    }


def _store_line(store_id: str, region: str = "East China") -> str:
    return f'"{store_id}",店,Shanghai,{region},Asia/Shanghai,王伟,m@example.com\n'


# -- ids ------------------------------------------------------------------------------------


def test_hostile_store_ids_are_refused_by_the_load_command(tmp_path):
    stores = tmp_path / "stores.csv"
    lines = [_store_line(i) for i in HOSTILE_IDS] + [_store_line("ST-1_a.b", "../../x")]
    stores.write_text(STORE_HEADER + "".join(lines), encoding="utf-8")
    done = _careloop(_env(tmp_path / "home"), "load", "stores", str(stores))
    assert done.returncode == 1, done.stdout + done.stderr  # a refused file, as every load
    said = " ".join(done.stderr.split())  # the console wraps long lines
    for line, store_id in enumerate(HOSTILE_IDS, start=2):
        assert f"line {line}: store_id {store_id!r} is not a plain id" in said, store_id
    assert f"line {len(HOSTILE_IDS) + 2}: region '../../x' is not a region's name" in said
    assert "nothing loaded" in said


@pytest.mark.parametrize(
    ("kind", "header", "row", "column"),
    [
        ("regions", "region,contact_name,contact_email", "../r,陈,c@example.com", "region"),
        (
            "subscribers",
            "subscriber_id,name,phone,joined_on,tier,home_store_id,timezone,locale,"
            "sms_consent,email_consent,voice_consent",
            "S/1,Li,+8613812345678,2015-01-01,gold,ST1,Asia/Shanghai,zh-CN,true,true,true",
            "subscriber_id",
        ),
        (
            "subscribers",
            "subscriber_id,name,phone,joined_on,tier,home_store_id,timezone,locale,"
            "sms_consent,email_consent,voice_consent",
            "S1,Li,+8613812345678,2015-01-01,gold,.ST1,Asia/Shanghai,zh-CN,true,true,true",
            "home_store_id",
        ),
        (
            "visits",
            "visit_id,subscriber_id,store_id,visited_at,service_type",
            "../v,S1,ST1,2026-01-01T10:00:00+08:00,repair",
            "visit_id",
        ),
        (
            "visits",
            "visit_id,subscriber_id,store_id,visited_at,service_type",
            "V1,S1,../ST1,2026-01-01T10:00:00+08:00,repair",
            "store_id",
        ),
    ],
)
def test_every_id_column_takes_plain_ids_only(con, settings, tmp_path, kind, header, row, column):
    add_store(con)
    add_subscriber(con, "S1")
    path = tmp_path / f"{kind}.csv"
    path.write_text(f"{header}\n{row}\n", encoding="utf-8")
    with pytest.raises(LoadRefusedError) as refused:
        load_file(con, settings, kind, path)
    assert f"line 2: {column} " in str(refused.value)
    assert "is not a plain id" in str(refused.value) or "is not a region's name" in str(
        refused.value
    )
    expectations = refused.value.result.report()["expectations"]
    assert any(
        e["column"] == column and e["expectation"] == "expect_column_values_to_match_regex"
        and not e["success"]
        for e in expectations
    )  # fmt: skip


def test_the_report_writes_no_list_outside_its_folder(tmp_path):
    """A store id an older version let in: the report names it and writes nothing for it."""
    home = tmp_path / "home"
    target = tmp_path / "x"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    victim = target / "pwned.csv"
    victim.write_text("keep me\n")
    hostile = "../" * 12 + str(target / "pwned").lstrip("/")
    con = connect(home / "warehouse.duckdb")
    try:
        add_store(con, store_id=hostile)
        add_subscriber(con, "S1", home_store_id=None)
        add_action(con, "A1", "S1", recipient="+8613800000001", sent_at=datetime.now(UTC))
        con.execute(
            "INSERT INTO manager_cases (evaluation_id, store_id, subscriber_id, campaign_id, "
            "action_id, score, comment, opened_at, status) "
            "VALUES ('E1', ?, 'S1', 'birthday', 'A1', 1, 'slow', now(), 'open')",
            [hostile],
        )
    finally:
        con.close()
    done = _careloop(_env(home), "report", "--month", "2026-02")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot name a file" in " ".join(done.stderr.split())
    assert victim.read_text() == "keep me\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert list(target.iterdir()) == [victim]


@pytest.mark.parametrize("name", [*HOSTILE_IDS, "", "ok/../../x"])
def test_no_path_is_built_outside_its_folder(tmp_path, name):
    from core.files import path_inside

    with pytest.raises(UserError, match="cannot name a file"):
        path_inside(tmp_path, name, ".csv")
    assert path_inside(tmp_path, "ST-1_a.b", ".csv") == tmp_path / "ST-1_a.b.csv"


def test_a_link_in_the_folder_leads_no_write_elsewhere(tmp_path):
    from core.files import path_inside, write_private_text

    victim = tmp_path / "victim.csv"
    victim.write_text("keep me\n")
    folder = tmp_path / "store_lists"
    folder.mkdir()
    (folder / "ST1.csv").symlink_to(victim)
    with pytest.raises(UserError, match="cannot name a file"):
        path_inside(folder, "ST1", ".csv")
    with pytest.raises(OSError):
        write_private_text(folder / "ST1.csv", "+8613800000001\n")
    assert victim.read_text() == "keep me\n"


def test_attachment_names_come_from_plain_ids_only():
    from cases.digest import attachment_stem

    assert attachment_stem("ST1", "digest:ST1:2026-03-02") == "ST1-2026-03-02"
    with pytest.raises(UserError, match="cannot name a file"):
        attachment_stem("../../etc/ST1", "digest:../../etc/ST1:2026-03-02")


# -- owner-only files -----------------------------------------------------------------------


def _loose(home: Path) -> list[str]:
    """Everything under the home that anyone but its owner could read or enter."""
    found = []
    for path in [home, *home.rglob("*")]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        if mode & 0o077 or (path.is_dir() and mode != wanted):
            found.append(f"{path.relative_to(home.parent)} {mode:o}")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_once(env: dict[str, str], umask: int) -> None:
    """Start the service, wait until it answers, take one request, stop it."""
    port = _free_port()
    process = subprocess.Popen(
        [BIN / "careloop", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        umask=umask,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                threading.Event().wait(0.25)  # not listening yet: ask again shortly
        else:
            pytest.fail("the service did not answer /healthz")
        requests.post(f"http://127.0.0.1:{port}/webhooks/twilio/sms", data={}, timeout=10)
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_everything_under_the_home_is_its_owners_only(tmp_path, umask):
    home = tmp_path / "home"
    env = _env(home)
    stores = tmp_path / "stores.csv"
    stores.write_text(STORE_HEADER + _store_line("ST9001"), encoding="utf-8")
    for args in (
        ["demo-data", "--subscribers", "300", "--until", "2026-03-01"],
        ["load", "stores", str(stores)],
        ["run", "birthday", "--as-of", "2026-02-28"],
        ["report", "--month", "2026-02"],
    ):
        done = _careloop(env, *args, umask=umask)
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    _serve_once(env, umask)
    assert (home / "inbox.sqlite").exists() and (home / "sandbox.sqlite").exists()
    assert (home / "prefect").is_dir()
    loose = _loose(home)
    assert not loose, "\n".join(loose)
    # What careloop makes is what close_home knows as its own, so an open home is closed
    assert not foreign_entries(home), foreign_entries(home)


def test_a_shared_folder_as_home_keeps_the_others_files_as_they_were(tmp_path):
    """Pointed at a folder shared with other work ($HOME), a start made everything in it
    owner-only; a later version refused such a home, the next closed a 'reports' of
    someone's own there, and the next left an older version's open warehouse open. Only
    careloop's stores are closed there."""
    shared = tmp_path / "shared"
    (shared / "reports" / "team").mkdir(parents=True)
    (shared / "reports" / "team" / "q3.csv").write_text("theirs\n")
    (shared / "notes.txt").write_text("someone else's\n")
    for path in (shared, *shared.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    done = _careloop(_env(shared), "demo-data", "--subscribers", "50", "--until", "2026-03-01")
    assert done.returncode == 0, done.stderr
    (shared / "warehouse.duckdb").chmod(0o644)  # as an older version left them
    (shared / "simulator.sqlite").write_bytes(b"")  # a store this command does not open
    (shared / "simulator.sqlite").chmod(0o644)
    spill = shared / "warehouse.duckdb.tmp"  # DuckDB's spill folder, the warehouse's pages
    spill.mkdir(mode=0o755)
    spill.chmod(0o755)
    (spill / "block.tmp").write_bytes(b"x")
    (spill / "block.tmp").chmod(0o644)
    done = _careloop(_env(shared), "report", "--month", "2026-02")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert stat.S_IMODE((shared / "reports" / "team").stat().st_mode) == 0o755
    assert stat.S_IMODE((shared / "reports" / "team" / "q3.csv").stat().st_mode) == 0o644
    assert stat.S_IMODE((shared / "notes.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((shared / "warehouse.duckdb").stat().st_mode) == 0o600
    assert stat.S_IMODE((shared / "simulator.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE(spill.stat().st_mode) == 0o700
    assert stat.S_IMODE((spill / "block.tmp").stat().st_mode) == 0o600
    assert stat.S_IMODE((shared / "reports" / "store_lists").stat().st_mode) == 0o700


def test_a_home_from_an_older_version_is_made_private_on_start(tmp_path):
    home = tmp_path / "home"
    env = _env(home)
    done = _careloop(env, "demo-data", "--subscribers", "100", "--until", "2026-03-01")
    assert done.returncode == 0, done.stderr
    (home / "reports" / "old").mkdir(parents=True)
    (home / "reports" / "old" / "list.csv").write_text("+8613800000001\n")
    for path in [home, *home.rglob("*")]:  # as an older version left it
        path.chmod(0o755 if path.is_dir() else 0o644)
    done = _careloop(env, "report", "--month", "2026-02")
    assert done.returncode == 0, done.stderr
    loose = _loose(home)
    assert not loose, "\n".join(loose)


# -- labels and cells -----------------------------------------------------------------------

MATH = "ST9$\\frac{a}{$"


def test_labels_from_data_are_drawn_as_plain_text():
    part = Contribution("store", MATH, 0.01, -0.02, 0.5, 0.6, 100, 100)
    svg = contribution_chart([part], 100)
    assert "frac" in svg
    drivers = [Driver(MATH, 0.6, 3.1, 50), Driver("wait_$time$", 0.4, 2.9, 50)]
    assert "frac" in importance_performance_chart(drivers)


@pytest.mark.parametrize(
    "cell",
    [
        "＝1+1",
        "＋SUM(A1)",
        "－2+3",
        "＠cmd",
        " =1+1",
        "  +SUM(A1)",
        '\u00a0=HYPERLINK("http://evil.example")',
        "\n=1+1",
        "\u200b=1+1",
        "\ufeff@cmd",
        "\u3000＝1",
    ],
)
def test_disguised_formulas_are_neutralised_like_plain_ones(cell):
    assert spreadsheet_safe(cell) == "'" + cell


@pytest.mark.parametrize("cell", [" +8613800000001", "＋８６１３８００００００００１", "排队 太久"])
def test_plain_text_and_numbers_stay_as_they_are(cell):
    assert spreadsheet_safe(cell) == cell


def test_a_csv_row_is_made_safe_cell_by_cell_as_each_alone():
    # the CSV writers' shortcut (an ASCII letter or digit first) must agree with the full test
    cells = ["＝1+1", " =1+1", "\u200b=1+1", "\tx", "\rx", "=1+1", "+SUM(A1)", "-2+3", "@cmd",
             "+8613800000001", " +8613800000001", "-5", "A=1", "9+1", "zh-CN", "排队 太久", "",
             "'=1", 3, 2.5, None, True]  # fmt: skip
    assert safe_row(cells) == [spreadsheet_safe(cell) for cell in cells]
    assert safe_row(cells)[:3] == ["'＝1+1", "' =1+1", "'\u200b=1+1"]


def test_a_frame_is_written_byte_for_byte_as_the_attachment_writer_writes_it(tmp_path):
    # the store lists go through polars; its vectorised shortcut must agree with the full test
    texts = ["＝1+1", " =1+1", "\u200b=1+1", "\tx", "\rx", "=1+1", "+SUM(A1)", "-2+3", "@cmd",
             "+8613800000001", " +8613800000001", "-5", "+12\n", "A=1", "9+1", "排队 太久", "",
             None, "'=1", "ﹰ=1", "①=1", "\u3000＝1", "a,b", 'x"y', "l\nb", "=1+1"]  # fmt: skip
    frame = pl.DataFrame(
        {
            "store": ["ST1", "ST2"] * (len(texts) // 2),
            "=comment": texts,
            "score": [n if n % 4 else None for n in range(len(texts))],
        },
        schema={"store": pl.String, "=comment": pl.String, "score": pl.Int32},
    )
    paths = {store: tmp_path / f"{store}.csv" for store in ("ST1", "ST2")}
    assert write_private_csvs(frame, "store", paths) == {"ST1": 13, "ST2": 13}
    for store, path in paths.items():
        rows = frame.filter(pl.col("store") == store).rows()
        assert path.read_bytes() == csv_bytes(frame.columns, rows)
        write_private_csv(tmp_path / "rows.csv", frame.columns, rows)  # the row writer too
        assert path.read_bytes() == (tmp_path / "rows.csv").read_bytes()
        assert path.stat().st_mode & 0o777 == 0o600
    assert paths["ST1"].read_bytes().startswith(codecs.BOM_UTF8)  # spreadsheets read Chinese right
    assert "'=1+1" in paths["ST2"].read_text(encoding="utf-8-sig")


@pytest.mark.parametrize("kind", [pl.Categorical, pl.Float64, pl.Boolean])
def test_a_column_the_frame_writer_cannot_write_as_the_row_writer_is_refused(tmp_path, kind):
    # a categorical "=1" would pass the formula guard unread; floats and booleans print
    # otherwise than the csv module prints them
    value = {pl.Categorical: "=1", pl.Float64: 1e-05, pl.Boolean: True}[kind]
    frame = pl.DataFrame({"store": ["ST1"], "cell": [value]}).with_columns(
        pl.col("cell").cast(kind)
    )
    with pytest.raises(TypeError, match="column 'cell'"):
        write_private_csvs(frame, "store", {"ST1": tmp_path / "ST1.csv"})
    assert not (tmp_path / "ST1.csv").exists()


def test_workbook_cells_that_look_like_formulas_stay_text_when_edited():
    book = xlsx_bytes({"cases": (["comment"], [["＝1+1"], [" =cmd"], ["fine"]])})
    archive = zipfile.ZipFile(io.BytesIO(book))
    sheet = archive.read("xl/worksheets/sheet1.xml").decode()
    styles = archive.read("xl/styles.xml").decode()
    assert "<f>" not in sheet
    assert 'quotePrefix="1"' in styles
    # the two disguised formulas carry the quote-prefix style, plain text does not
    assert sheet.count(' s="1"') == 2


def test_store_list_cells_are_read_back_neutralised(con, settings):
    from insights.report import write_store_lists

    add_listed_case(con, "\u00a0＝HYPERLINK(1)", datetime.now(UTC))
    write_store_lists(con, settings.reports_dir / "store_lists", datetime.now(UTC))
    text = (settings.reports_dir / "store_lists" / "ST1.csv").read_text(encoding="utf-8-sig")
    (row,) = csv.DictReader(io.StringIO(text))
    assert row["comment"] == "'\u00a0＝HYPERLINK(1)"
