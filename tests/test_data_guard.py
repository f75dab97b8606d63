"""Data that stays where it belongs (issue 22): ids from a file never name a path outside its
folder, everything under the home is its owner's only whatever the umask, labels from data
draw as plain text and spreadsheet cells never start a formula."""

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

import pytest
import requests

from core.errors import UserError
from core.files import spreadsheet_safe, xlsx_bytes
from insights.charts import contribution_chart, importance_performance_chart
from insights.drivers import Driver
from insights.panorama import Contribution
from tests.factories import add_action, add_store, add_subscriber
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
    }


def _store_line(store_id: str, region: str = "East China") -> str:
    return f'"{store_id}",店,Shanghai,{region},Asia/Shanghai,王伟,m@example.com\n'


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

    add_store(con)
    add_subscriber(con, "S1")
    add_action(con, "A1", "S1", recipient="+8613800000001", sent_at=datetime.now(UTC))
    con.execute(
        "INSERT INTO manager_cases (evaluation_id, store_id, subscriber_id, campaign_id, "
        "action_id, score, comment, opened_at, status) "
        "VALUES ('E1', 'ST1', 'S1', 'birthday', 'A1', 1, '\u00a0＝HYPERLINK(1)', now(), 'open')"
    )
    write_store_lists(con, settings.reports_dir / "store_lists")
    text = (settings.reports_dir / "store_lists" / "ST1.csv").read_text(encoding="utf-8")
    (row,) = csv.DictReader(io.StringIO(text))
    assert row["comment"] == "'\u00a0＝HYPERLINK(1)"
