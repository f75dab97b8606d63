"""Files that hold customers' contact data: readable by their owner only (0600, in 0700
folders), and, for lists people open in a spreadsheet, safe against formula injection."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

# OWASP CSV injection: a cell starting with one of these may run as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A plain number (a phone in E.164, a negative score) runs as nothing: it is kept as it is.
PLAIN_NUMBER = re.compile(r"^[+-]?[0-9][0-9 .]*$")


def spreadsheet_safe(value: Any) -> Any:
    """A text cell that would start a formula gets a leading apostrophe; others unchanged."""
    formula = isinstance(value, str) and value.startswith(FORMULA_START)
    return "'" + value if formula and not PLAIN_NUMBER.match(value) else value


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


@contextmanager
def _private_file(path: Path) -> Iterator[TextIO]:
    """``path`` opened for writing, readable by its owner only from the moment it exists."""
    private_dir(path.parent)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its old mode through O_CREAT
    with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
        yield handle


def write_private_text(path: Path, text: str) -> None:
    with _private_file(path) as handle:
        handle.write(text)


def write_private_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A CSV for people to open: owner-only, every cell safe against formula injection."""
    with _private_file(path) as handle:
        writer = csv.writer(handle)
        writer.writerow([spreadsheet_safe(h) for h in header])
        writer.writerows([spreadsheet_safe(cell) for cell in row] for row in rows)


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """The same safe CSV, as bytes for an attachment (UTF-8 with a BOM, which spreadsheet
    programs need to read Chinese correctly)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([spreadsheet_safe(h) for h in header])
    writer.writerows([spreadsheet_safe(cell) for cell in row] for row in rows)
    return buffer.getvalue().encode("utf-8-sig")


def xlsx_bytes(sheets: dict[str, tuple[Sequence[str], list[Sequence[Any]]]]) -> bytes:
    """A workbook, one sheet per entry; every cell written as a plain string or number, so
    no cell can become a formula whatever it holds."""
    import xlsxwriter

    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {"in_memory": True})
    for title, (header, rows) in sheets.items():
        sheet = workbook.add_worksheet(title[:31])
        for col, name in enumerate(header):
            sheet.write_string(0, col, str(name))
        for r, row in enumerate(rows, start=1):
            for col, cell in enumerate(row):
                if isinstance(cell, int | float) and not isinstance(cell, bool):
                    sheet.write_number(r, col, cell)
                elif cell is not None:
                    sheet.write_string(r, col, str(cell))
    workbook.close()
    return buffer.getvalue()
