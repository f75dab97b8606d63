"""Files that hold customers' contact data: readable by their owner only (0600, in 0700
folders), named only from plain ids that stay inside their folder, and, for lists people open
in a spreadsheet, safe against formula injection."""

from __future__ import annotations

import csv
import io
import os
import re
import stat
import string
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import polars as pl

from core.errors import UserError

# What careloop creates is its owner's only: the mask every entry point sets, so files other
# libraries create (DuckDB's WAL and spill files, Prefect's database, logs) are 0600 too.
OWNER_ONLY = 0o077
PRIVATE_FILE, PRIVATE_DIR = 0o600, 0o700

# An id that may name a file: ASCII letters, digits, "-", "_" and ".", starting with a letter,
# digit or "_" (no "..", no hidden file, nothing a command reads as an option, such as "-rf"),
# short enough for any file system. Loads check every id column against it, so data never
# carries a path.
PLAIN_ID = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
PLAIN_ID_RULE = "letters, digits, -, _ or ., starting with a letter, digit or _, at most 64"
_PLAIN_ID = re.compile(PLAIN_ID)


class UnsafeNameError(UserError, ValueError):
    """A value from data that would name a file outside its folder, or a hidden one."""


# OWASP CSV injection: a cell starting with one of these may run as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A plain number (a phone in E.164, a negative score) runs as nothing: it is kept as it is.
PLAIN_NUMBER = re.compile(r"^[+-]?[0-9][0-9 .]*$")
# What a spreadsheet program passes over or folds before it looks for a formula: NFKC turns
# the full-width ＝＋－＠ into = + - @; leading white space (NBSP, the ideographic space, line
# breaks) and invisible characters (zero-width, joiners, marks, BOM, soft hyphen) are skipped.
LEADING_IGNORED = re.compile(r"^[\s\u00ad\u180e\u200b-\u200f\u2060-\u2064\ufeff]+")


def is_formula(value: Any) -> bool:
    """Whether a spreadsheet could run the cell: the first character it reads starts a
    formula (a tab or CR does by itself), and the cell is not a plain number."""
    if not isinstance(value, str):
        return False
    if value.startswith(("\t", "\r")):
        return True
    if value[:1].isalnum():  # most cells: no letter or digit folds into a formula's start
        return False
    read = LEADING_IGNORED.sub("", unicodedata.normalize("NFKC", value))
    return read.startswith(FORMULA_START) and not PLAIN_NUMBER.match(read)


# A text cell starting with an ASCII letter or digit is never a formula (``is_formula``'s
# quick answer): the CSV writers test that inline and call ``spreadsheet_safe`` for the other
# cells only (a year's store lists are millions of cells; a call per cell cost seconds).
_PLAIN_FIRST = frozenset(string.ascii_letters + string.digits)


def safe_row(row: Iterable[Any]) -> list[Any]:
    """A row of cells, each as ``spreadsheet_safe`` leaves it."""
    return [
        spreadsheet_safe(cell) if isinstance(cell, str) and cell[:1] not in _PLAIN_FIRST else cell
        for cell in row
    ]


def spreadsheet_safe(value: Any) -> Any:
    """A text cell that would start a formula gets a leading apostrophe (the original text
    kept after it); others unchanged."""
    return "'" + value if is_formula(value) else value


def is_plain_id(name: str) -> bool:
    return _PLAIN_ID.fullmatch(name) is not None


def plain_name(name: str, suffix: str = "") -> str:
    """``name + suffix`` as a file name, once ``name`` is a plain id: never a path, never
    hidden. Every file name built from data passes here."""
    if not is_plain_id(name):
        raise UnsafeNameError(f"{name!r} cannot name a file ({PLAIN_ID_RULE})")
    return name + suffix


def path_inside(folder: Path, name: str, suffix: str = "") -> Path:
    """``folder/name+suffix``, checked to stay inside ``folder`` (also when a link in it
    points elsewhere)."""
    path = folder / plain_name(name, suffix)
    if path.resolve().parent != folder.resolve():
        raise UnsafeNameError(f"{name!r} cannot name a file: it leads out of {folder}")
    return path


def owner_only_process() -> None:
    """Files and folders this process creates from now on are its owner's only."""
    os.umask(OWNER_ONLY)


def private_parents(path: Path) -> Path:
    """``path``'s folder, every folder made on the way owner-only (mkdir gives missing parents
    the umask's mode, and its own mode passes through the umask); folders that exist already
    are left as they are: they may not be ours (an inbox file named anywhere)."""
    missing = [folder for folder in path.parents if not folder.is_dir()]
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        folder.chmod(PRIVATE_DIR)
    return path.parent


def private_dir(path: Path) -> Path:
    """``path`` as an owner-only folder of careloop's own."""
    private_parents(path / "_")
    path.chmod(PRIVATE_DIR)
    return path


def new_private_file(path: Path) -> Path:
    """``path`` created empty and owner-only if it is not there yet (SQLite gives its -wal,
    -shm and -journal files the database file's own mode), and made owner-only if it is."""
    private_parents(path)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
    return close_up(path)


def close_up(path: Path) -> Path:
    """``path`` made its owner's only (a folder 0700; a file loses group and other bits)."""
    info = path.lstat()
    mode = info.st_mode
    if stat.S_ISLNK(mode) or info.st_uid != os.geteuid():
        return path  # a link's own mode means nothing; another's file is not ours to change
    if stat.S_ISDIR(mode):
        path.chmod(PRIVATE_DIR)
    elif stat.S_IMODE(mode) & OWNER_ONLY:
        path.chmod(stat.S_IMODE(mode) & ~OWNER_ONLY)  # the owner's own bits as they were
    return path


# What careloop makes at its home's top level: the settings' stores, the stack's folders, the
# models insights train, the benchmarks' and the demo's homes, the demo's mark; beside a
# store, the files its database keeps next to it.
_STORES = ("warehouse.duckdb", "inbox.sqlite", "sandbox.sqlite", "simulator.sqlite")
_FOLDERS = frozenset({"reports", "run", "prefect", "models", "bench", "demo"})
HOME_ENTRIES = frozenset({*_STORES, *_FOLDERS, "DEMO.txt"})


def _careloops(name: str) -> bool:
    # Beside a store: its WAL, journal and spill files, its turn files (and theirs), and the
    # hidden draft a new SQLite store is made in
    return name in HOME_ENTRIES or any(
        name.removeprefix(".").startswith(store + end) for store in _STORES for end in ".-"
    )


def foreign_entries(home: Path) -> list[str]:
    return sorted(entry.name for entry in home.iterdir() if not _careloops(entry.name))


def close_home(home: Path) -> None:
    """A home an older version left open (0755, its files 0644) made its owner's only, on
    start: everything in it first, the home last, so a start cut short does it again. A home
    that is owner-only already costs one stat. In a folder that also holds what careloop did
    not make (one shared with other work: $HOME, a mounted volume's lost+found) only its
    stores are closed, which no one else names so: a 'reports' there may be someone's own,
    and the folder theirs."""
    if not home.is_dir() or not stat.S_IMODE(home.stat().st_mode) & OWNER_ONLY:
        return
    shared = bool(foreign_entries(home))
    for entry in home.iterdir():
        if _careloops(entry.name) and not (shared and entry.name in _FOLDERS):
            _close_tree(entry)  # a store's spill folder (warehouse.duckdb.tmp) included
    if not shared:
        close_up(home)


def _close_tree(top: Path) -> None:
    if top.is_dir() and not top.is_symlink():
        for folder, dirs, files in os.walk(top):  # links are not followed
            for name in [*dirs, *files]:
                close_up(Path(folder) / name)
    close_up(top)


def _private_descriptor(path: Path) -> int:
    """``path`` opened for writing, readable by its owner only from the moment it exists."""
    private_dir(path.parent)
    # Never through a link: one left in the folder would lead the write elsewhere.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    descriptor = os.open(path, flags, PRIVATE_FILE)
    os.fchmod(descriptor, PRIVATE_FILE)  # an existing file keeps its old mode through O_CREAT
    return descriptor


@contextmanager
def _private_file(path: Path, encoding: str = "utf-8") -> Iterator[TextIO]:
    with os.fdopen(_private_descriptor(path), "w", encoding=encoding, newline="") as handle:
        yield handle


def write_private_text(path: Path, text: str) -> None:
    with _private_file(path) as handle:
        handle.write(text)


def write_private_bytes(path: Path, data: bytes) -> None:
    with os.fdopen(_private_descriptor(path), "wb") as handle:
        handle.write(data)


def write_private_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A CSV for people to open: owner-only, every cell safe against formula injection, and
    UTF-8 with a BOM (``csv_bytes``'s bytes), which spreadsheet programs need to read Chinese
    right; careloop's own loader and polars read it back as they read any CSV."""
    with _private_file(path, encoding="utf-8-sig") as handle:
        _write_safe_csv(handle, header, rows)


def _write_safe_csv(handle: TextIO, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    writer = csv.writer(handle)
    writer.writerow(safe_row(header))
    writer.writerows(safe_row(row) for row in rows)


def write_private_csvs(frame: pl.DataFrame, by: str, paths: Mapping[Any, Path]) -> dict[Any, int]:
    """One CSV per value of column ``by``, at ``paths[value]``, each the bytes ``csv_bytes``
    makes of its rows (with a BOM: store managers open them in spreadsheet programs) but
    written by polars: a year's store lists are hundreds of thousands of rows. Returns the
    rows per value. Text, integers and nulls only: polars writes other types (times, floats,
    booleans) otherwise than the csv module, and a categorical column would pass the formula
    guard unread. A value of ``paths`` with no rows gets the header alone."""
    for name, kind in frame.schema.items():
        if not (kind == pl.String or kind == pl.Null or kind.is_integer()):
            raise TypeError(f"column {name!r} is {kind}: write it as text or an integer")
    safe = safe_frame(frame)
    header = dict(zip(frame.columns, safe_row(frame.columns), strict=True))
    written = {}
    for (value, *_), part in safe.partition_by(by, maintain_order=True, as_dict=True).items():
        _write_csv_frame(paths[value], part.rename(header))
        written[value] = part.height
    for value in paths.keys() - written.keys():  # no rows: the header alone says so
        _write_csv_frame(paths[value], safe.clear().rename(header))
        written[value] = 0
    return written


def _write_csv_frame(path: Path, frame: pl.DataFrame) -> None:
    with os.fdopen(_private_descriptor(path), "wb") as handle:
        frame.write_csv(handle, line_terminator="\r\n", include_bom=True)


# The text cells ``is_formula`` can answer without Python: null, a letter or number first
# (``str.isalnum``'s classes) or a plain number (the ASCII digits of PLAIN_NUMBER, read as
# they are: no ignored character can come first).
_NEVER_A_FORMULA = r"^[\p{L}\p{N}]|" + PLAIN_NUMBER.pattern


def safe_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with each text cell as ``spreadsheet_safe`` leaves it, and empty text as
    null (the csv module writes both as nothing). Only the cells the vectorised test cannot
    clear are looked at in Python, each distinct value once."""
    texts = [name for name, kind in frame.schema.items() if kind == pl.String]
    quoted = {}
    for name in texts:
        unclear = frame.get_column(name).filter(
            ~frame.get_column(name).str.contains(_NEVER_A_FORMULA)
        )
        formulas = {value: "'" + value for value in unclear.unique() if is_formula(value)}
        if formulas:
            quoted[name] = formulas
    return frame.with_columns(
        pl.col(name).replace(quoted.get(name, {})).replace("", None) for name in texts
    )


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """The same safe CSV, as bytes for an attachment (UTF-8 with a BOM, which spreadsheet
    programs need to read Chinese correctly)."""
    buffer = io.StringIO()
    _write_safe_csv(buffer, header, rows)
    return buffer.getvalue().encode("utf-8-sig")


def xlsx_bytes(sheets: dict[str, tuple[Sequence[str], list[Sequence[Any]]]]) -> bytes:
    """A workbook, one sheet per entry; every cell written as a plain string or number, so
    no cell can become a formula whatever it holds. A string a spreadsheet would read as a
    formula is marked quote-prefixed (Excel's hidden apostrophe): its text is kept exactly and
    it stays text when someone edits the cell."""
    import xlsxwriter

    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {"in_memory": True})
    quoted = workbook.add_format({"quote_prefix": True})

    def text(sheet: Any, r: int, col: int, value: str) -> None:
        sheet.write_string(r, col, value, quoted if is_formula(value) else None)

    for title, (header, rows) in sheets.items():
        sheet = workbook.add_worksheet(title[:31])
        for col, name in enumerate(header):
            text(sheet, 0, col, str(name))
        for r, row in enumerate(rows, start=1):
            for col, cell in enumerate(row):
                if isinstance(cell, int | float) and not isinstance(cell, bool):
                    sheet.write_number(r, col, cell)
                elif cell is not None:
                    text(sheet, r, col, str(cell))
    workbook.close()
    return buffer.getvalue()
