"""Load stores, subscribers and visits (CSV or Parquet), validated before the warehouse sees them.

A file is read as text (UTF-8; the first line that is not is named), its columns matched to
the kind's (missing ones refuse the file, extra ones are reported and ignored), then the Great
Expectations suite (``warehouse.expectations``) validates every row. By default a file with
any bad row is refused whole, with every bad row listed by line and reason; with
``quarantine`` the good rows are upserted and the bad ones kept in the quarantine table (and a
CSV beside the report). Every load, refused or not, leaves a ``load_reports`` row and its
validation JSON in ``$CARELOOP_HOME/reports/validation/``.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from core.clock import business_date
from core.errors import UserError
from core.files import path_inside, write_private_csv, write_private_text
from core.progress import tracked
from core.settings import Settings
from warehouse.checks import email_validity, phone_validity
from warehouse.db import query_frame, register_frame
from warehouse.entities import ENTITIES, Entity
from warehouse.expectations import (
    REPEATED,
    DerivedCheck,
    Gate,
    Validation,
    merged,
    suite_rules,
    validate,
)

# Times are normalised to one shape before parsing: "T" between date and time, seconds, and
# an offset written +HH:MM (or none: then the time is the store's local time).
ISO_SHAPE = [
    (r"^(\d{4}-\d{2}-\d{2}) ", "${1}T"),
    (r"T(\d{2}:\d{2})($|[Z+-])", "T${1}:00${2}"),
    (r"Z$", "+00:00"),
    (r"([+-]\d{2})(\d{2})$", "${1}:${2}"),
]
CHUNK_BYTES = 1 << 20
# Rows validated and staged at a time: memory follows this, not the file's size. GX's
# per-batch overhead (about 0.1 s) is small beside half a million rows' work.
CHUNK_ROWS = 500_000
# DuckDB's memory while a load stages rows: beyond it the staged rows spill to disk. With
# half a million rows in polars, pandas and GX at once (about 1.1 GB), 1 GB here brought a
# 10-million-row load to 2.9 GB. The upsert at the end, when no chunk is held, needs more
# (the table's key index: 0.4 GB for 10 million ids; 512 MB ran out of memory), and a
# file that changes every row of 10 million (an UPDATE of all: 1 GB ran out, 2 GB did not).
STAGE_MEMORY = "512MB"
WRITE_MEMORY = "2GB"


class LoadError(UserError, ValueError):
    """A file refused as a whole: unreadable, empty, not UTF-8, or a column missing."""


@dataclass
class LoadResult:
    load_id: str
    entity: str
    source: str
    mode: str  # refuse | quarantine
    rows_read: int = 0
    rows_loaded: int = 0
    bad_rows: dict[int, list[str]] = field(default_factory=dict)  # line -> reasons
    ignored_columns: list[str] = field(default_factory=list)
    absent_columns: list[str] = field(default_factory=list)  # known ids keep their values
    refused: str | None = None  # why the whole file was refused before any row was read
    quarantine_file: Path | None = None
    validation: Validation | None = None

    @property
    def success(self) -> bool:
        return not self.bad_rows and self.refused is None

    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "load_id": self.load_id,
            "entity": self.entity,
            "source": self.source,
            "mode": self.mode,
            "success": self.success,
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "ignored_columns": self.ignored_columns,
            "absent_columns": self.absent_columns,
            "refused": self.refused,
            "bad_rows": {str(line): reasons for line, reasons in sorted(self.bad_rows.items())},
        }
        if self.validation:
            report |= {
                "statistics": self.validation.statistics,
                "expectations": self.validation.summary,
                "great_expectations": self.validation.gx_result,
            }
        return report


# Bad rows shown on a terminal or in an error; the load's report (and, quarantining, its CSV)
# holds every one: a file refused for a wrong column has a bad row on every line.
SHOWN_BAD_ROWS = 20


def bad_row_lines(bad_rows: dict[int, list[str]], report: Path | None = None) -> list[str]:
    """The first bad rows by line with their reasons, then how many more and where they are."""
    first = sorted(bad_rows)[:SHOWN_BAD_ROWS]
    lines = [f"line {line}: {'; '.join(bad_rows[line])}" for line in first]
    if len(bad_rows) > len(first):
        where = f": every one is in {report}" if report else ": every one is in the load's report"
        lines.append(f"... and {len(bad_rows) - len(first):,} more bad row(s){where}")
    return lines


class LoadRefusedError(LoadError):
    def __init__(self, result: LoadResult) -> None:
        super().__init__(
            f"{len(result.bad_rows):,} bad row(s) in {result.entity}; nothing loaded:\n"
            + "\n".join(bad_row_lines(result.bad_rows))
        )
        self.result = result


def load_file(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    kind: str,
    path: Path,
    *,
    quarantine: bool = False,
    today: date | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> LoadResult:
    """Validate then upsert by id; refuse the whole file on any bad row unless quarantining.

    The file is read ``chunk_rows`` at a time; each chunk is checked, validated by GX and its
    good rows staged in a temporary table, so memory does not grow with the file. Only at
    the end, in one transaction, do the staged rows reach the warehouse (refuse mode: only if
    no row anywhere was bad)."""
    entity = entity_named(kind)
    load_id = f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    result = LoadResult(load_id, kind, str(path), "quarantine" if quarantine else "refuse")
    try:
        with tracked(f"{kind}: reading {path.name}"):
            source = open_source(path, entity)
        result.ignored_columns = source.ignored
        result.absent_columns = [c for c in entity.names if c not in source.present]
        with _staging(con, entity, source.present) as stage:
            with tracked(f"{kind}: finding repeated ids"):
                repeated = source.repeated_keys(con, entity)
            _validate_chunks(
                con, settings, entity, source, stage, result, repeated, today, chunk_rows
            )
            with tracked(f"{kind}: writing"):
                _write(con, settings, entity, stage, result, quarantine)
    except LoadError as refused:
        result.refused = str(refused)
        _keep_report(con, settings, result)
        raise
    if result.bad_rows and not quarantine:
        raise LoadRefusedError(result)
    return result


def _validate_chunks(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    entity: Entity,
    source: Source,
    stage: Stage,
    result: LoadResult,
    repeated: pl.Series,
    today: date | None,
    chunk_rows: int,
) -> None:
    """Each chunk through the checks and the gate; its good rows staged, its bad ones kept
    (quarantine mode) with their reasons. Refuse mode stops staging at the first bad row."""
    derived = [DerivedCheck("once", entity.key, REPEATED), *DERIVED[entity.kind]]
    rules = suite_rules(entity, settings, today or business_date(settings.zone), derived)
    gate, known = Gate(entity, rules), dict[str, Any]()
    repeats = Repeats(entity.key)
    with tracked(f"{entity.kind}: validating") as advance:
        for raw in source.chunks(entity, chunk_rows):
            frame = checked_frame(con, raw, entity, repeated, known)
            repeats.add(frame)
            validation = validate(frame, gate)
            result.rows_read += raw.height
            result.validation = (
                merged(result.validation, validation) if result.validation else validation
            )
            result.bad_rows = result.validation.bad_rows
            if result.mode == "quarantine" or not result.bad_rows:
                stage.add(frame, validation.bad_rows)
            advance(raw.height)
    if result.validation is None:
        raise LoadError(f"{source.path}: no rows below the header")
    repeats.name_the_others(result.bad_rows, stage)


SHOWN_OTHER_LINES = 5  # a repeated id's reason names this many of its other lines


class Repeats:
    """The lines of each id the file holds more than once, so that each line's reason can
    name the others: a chunk sees only its own, and only the first bad rows are shown."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.lines: dict[str, list[int]] = {}

    def add(self, frame: pl.DataFrame) -> None:
        repeated = frame.filter(pl.col("ok_once").not_()).select(self.key, "_line")
        for key, line in repeated.iter_rows():
            self.lines.setdefault(key, []).append(line)

    def name_the_others(self, bad_rows: dict[int, list[str]], stage: Stage) -> None:
        """Each repeated id's reason, on each of its lines, with its other lines; the staged
        bad rows' reasons too (the quarantine keeps them)."""
        named = {}
        for lines in self.lines.values():
            # the first few lines name the others: a line's own is left out of them (linear in
            # the lines: every other line, listed for each, was quadratic, hours for an id
            # on a million lines)
            first = lines[: SHOWN_OTHER_LINES + 1]
            for line in lines:
                if line not in bad_rows:  # not a bad row: nothing to name
                    continue
                shown = [other for other in first if other != line][:SHOWN_OTHER_LINES]
                also = _other_lines(shown, len(lines) - 1)
                named[line] = [
                    f"{reason} ({also})" if reason.endswith(REPEATED) else reason
                    for reason in bad_rows[line]
                ]
        bad_rows.update(named)
        stage.reword(named)


def _other_lines(shown: list[int], others: int) -> str:
    """``also on lines 3, 7 and 2 more``: ``shown`` of the ``others`` lines."""
    more = others - len(shown)
    return f"also on line{'s' if others > 1 else ''} {', '.join(map(str, shown))}" + (
        f" and {more:,} more" if more > 0 else ""
    )


def entity_named(kind: str) -> Entity:
    if kind not in ENTITIES:
        raise LoadError(f"unknown kind {kind!r}; use {', '.join(ENTITIES)}")
    return ENTITIES[kind]


@dataclass(frozen=True)
class Source:
    """A file opened for reading in chunks: its header checked, nothing read yet."""

    path: Path
    parquet: bool
    present: list[str]  # the kind's columns the file has
    ignored: list[str]  # the file's other columns
    quoted: bool = True  # CSV: a quote anywhere, so a field may hold a line break
    header_lines: int = 1  # CSV: with the empty lines before it, and a quoted name's breaks

    def _scan(self) -> pl.LazyFrame:
        if self.parquet:
            return pl.scan_parquet(self.path, glob=False)
        # the file named, never a pattern: "list[1].csv" read "list1.csv" (Polars globs)
        return pl.scan_csv(self.path, infer_schema=False, glob=False)

    def chunks(self, entity: Entity, rows: int) -> Iterator[pl.DataFrame]:
        """The kind's columns as trimmed text (empty is null), ``rows`` at a time, with the
        source line number (CSV: the header is line 1, and a record whose quoted fields hold
        line breaks spans as many lines). A blank CSV line, or one of empty fields only (an
        editor's or a spreadsheet's extra line), is no row: left out, never a bad one."""
        if self.parquet:
            yield from self._parquet_chunks(entity, rows)
            return
        line = self.header_lines + 1
        batches = (
            self._scan().select(*self.present, *self._csv_extras()).collect_batches(chunk_size=rows)
        )
        for batch in _readable(self.path, batches):
            breaks = (
                batch["_breaks"].cast(pl.Int64)
                if self.quoted
                else pl.repeat(0, batch.height, dtype=pl.Int64, eager=True)
            )
            spans = breaks + 1  # the lines each record takes
            starts = (spans.cum_sum() - spans + line).alias("_line")  # its first line
            line += int(spans.sum())
            shaped = _shaped(batch.select(self.present), entity, starts)
            blank = pl.all_horizontal(pl.col(c).is_null() for c in entity.names)
            if self.ignored:
                blank = blank & ~batch["_other_text"]
            kept = shaped.filter(~blank)
            if not kept.is_empty():
                yield kept

    def _csv_extras(self) -> list[pl.Expr]:
        """``_breaks``: the line breaks within a record's fields (only where a quote can put
        them there); ``_other_text``: whether a column not the kind's has text."""
        every = [*self.present, *self.ignored]
        extras = []
        if self.quoted:
            counts = [pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in every]
            extras.append(pl.sum_horizontal(counts).alias("_breaks"))
        if self.ignored:
            texts = [_trimmed(pl.col(c)).is_not_null() for c in self.ignored]
            extras.append(pl.any_horizontal(texts).alias("_other_text"))
        return extras

    def _parquet_chunks(self, entity: Entity, rows: int) -> Iterator[pl.DataFrame]:
        line = 1
        batches = self._scan().select(self.present).collect_batches(chunk_size=rows)
        for batch in _readable(self.path, batches):
            if batch.is_empty():
                continue
            lines = pl.int_range(line, line + batch.height, dtype=pl.Int64, eager=True)
            yield _shaped(_as_text(batch), entity, lines.alias("_line"))
            line += batch.height

    def repeated_keys(self, con: duckdb.DuckDBPyConnection, entity: Entity) -> pl.Series:
        """The ids the file holds more than once: a chunk alone cannot see a repeat in another
        chunk. One pass over the key column into DuckDB, which counts them within its memory
        limit (polars' streaming group-by held every distinct id: 1.1 GB for 10 million)."""
        key = _trimmed(pl.col(entity.key).cast(pl.String))
        batches = self._scan().select(key).collect_batches(chunk_size=CHUNK_ROWS)
        con.execute("CREATE OR REPLACE TEMP TABLE load_keys (k VARCHAR)")
        try:
            for batch in _readable(self.path, batches):
                register_frame(con, "chunk_keys", batch)
                con.execute("INSERT INTO load_keys SELECT * FROM chunk_keys")
                con.unregister("chunk_keys")
            repeated = query_frame(
                con, "SELECT k FROM load_keys WHERE k IS NOT NULL GROUP BY k HAVING count(*) > 1"
            )
        finally:
            con.execute("DROP TABLE IF EXISTS load_keys")
        return repeated.get_column("k").cast(pl.String)


def _readable(path: Path, items: Iterator[Any]) -> Iterator[Any]:
    """Polars' read errors, met while reading, as the file's refusal."""
    try:
        yield from items
    except pl.exceptions.NoDataError:
        raise LoadError(f"{path}: the file is empty") from None
    except (OSError, pl.exceptions.PolarsError) as exc:
        said = _malformed(path) if _MALFORMED.search(str(exc)) else None
        raise LoadError(f"{path}: {said or f'cannot read: {exc}'}") from None


# Polars' words for a record it cannot split, which name no line: "found more fields than
# defined in 'Schema'", "CSV malformed: expected 0 rows, actual 1 rows, in chunk ...", "could
# not parse `"Mary" Smith` as dtype `str`" (with the offset in bytes).
_MALFORMED = re.compile(r"more fields than defined|CSV malformed|could not parse")
# Python's csv module's words for what is wrong with a quote, as a person would fix it.
_QUOTE_FAULTS = {
    "unexpected end of data": "a quote opens a field that no quote closes",
    "',' expected after '\"'": "text follows a field's closing quote",
}
_QUOTING = 'a field holding a comma or a quote is quoted, its quotes doubled ("Li ""Leo"", Wei")'


def _malformed(path: Path) -> str | None:
    """Which records Polars could not split, read again with Python's csv module, which says
    where (only for such a file): a quote left open or followed by text, a quote inside an
    unquoted field that leaves the record's quotes unpaired ("Li "Leo Wei", which the csv
    module takes as text and Polars does not), or more fields than the header names (a
    field's unquoted comma shifts every field after it). The file is refused whole: which
    field a value belongs to is no longer known."""
    wide: list[str] = []  # records of more fields than the header's
    width = more = 0
    quote = ""
    csv.field_size_limit(sys.maxsize)  # a long quoted field is a field, not the fault
    with path.open(encoding="utf-8-sig", newline="") as handle:
        lines = _Kept(handle)
        records, last_line = csv.reader(lines, strict=True), 0
        try:
            for record in records:
                first_line, last_line = last_line + 1, records.line_num
                if not quote and lines.taken().count('"') % 2:
                    quote = f"line {first_line}: {UNPAIRED_QUOTE}"
                if not width:
                    width = len(record)  # the header: blank lines before it are no record
                elif len(record) > width and len(wide) < SHOWN_BAD_ROWS:
                    wide.append(f"line {first_line} has {len(record)}")
                elif len(record) > width:
                    more += 1
        except csv.Error as exc:
            quote = quote or f"line {last_line + 1}: {_QUOTE_FAULTS.get(str(exc), str(exc))}"
    faults = [quote] if quote else []
    if wide:
        also = f", and {more:,} more line(s)" if more else ""
        faults.insert(0, f"{', '.join(wide)}{also} field(s) where the header names {width}")
    return f"{'; '.join(faults)}: {_QUOTING}; nothing loaded" if faults else None


UNPAIRED_QUOTE = "a quote inside a field that is not quoted itself"


class _Kept:
    """The file's lines as the csv module reads them, each record's own kept until taken."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines, self.read = lines, list[str]()

    def __iter__(self) -> _Kept:
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.read.append(line)
        return line

    def taken(self) -> str:
        """The lines read since the last call: the record just read."""
        text, self.read = "".join(self.read), []
        return text


def open_source(path: Path, entity: Entity) -> Source:
    """Check the header (and, for CSV, that the file is UTF-8) before any row is read."""
    parquet, quoted, header_lines = path.suffix.lower() == ".parquet", False, 1
    try:
        if parquet:
            columns = list(pl.scan_parquet(path, glob=False).collect_schema())
        else:
            quoted = check_utf8(path)
            columns = pl.read_csv(path, n_rows=0, infer_schema=False, glob=False).columns
            # the reader skips empty lines before the header; a quoted name may span lines
            header_lines = _blank_lines_first(path) + 1 + sum(c.count("\n") for c in columns)
    except pl.exceptions.NoDataError:
        raise LoadError(f"{path}: the file is empty") from None
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise LoadError(f"{path}: cannot read: {exc}") from None
    missing = [c.name for c in entity.columns if c.required and c.name not in columns]
    if missing and any("\r" in c for c in columns):  # the whole file read as its header
        raise LoadError(f"{path}: {LONE_CR}")
    if missing:
        raise LoadError(
            f"{path}: missing column(s) {', '.join(missing)}"
            f"{header_hint(missing, columns) or _split_hint(columns)}"
        )
    present = [c for c in entity.names if c in columns]
    ignored = [c for c in columns if c not in entity.names]
    return Source(path, parquet, present, ignored, quoted=quoted, header_lines=header_lines)


def header_hint(missing: list[str], columns: list[str]) -> str:
    """What the header may have meant by a missing column: one written otherwise
    ("Subscriber_ID", " phone ")."""
    written = {c.strip().lower().replace(" ", "_"): c for c in columns}
    otherwise = [f"{written[m]!r} for {m}" for m in missing if m in written]
    if otherwise:
        return f" (the file has {', '.join(otherwise)}: names are lower case, exactly)"
    return ""


def _split_hint(columns: list[str]) -> str:
    """A header read as one column, split by another delimiter than the comma."""
    if len(columns) == 1 and (split := next((d for d in ";\t|" if d in columns[0]), None)):
        return f" (its header is one column split by {split!r}: save it comma-separated)"
    return ""


LONE_CR = (
    "its lines end with a lone CR, as Excel for Mac's 'CSV (Macintosh)' saves them; save it "
    "as 'CSV UTF-8' (lines ending CRLF or LF)"
)


def _blank_lines_first(path: Path) -> int:
    """The empty lines before a CSV's header."""
    with path.open("rb") as handle:
        start = handle.read(CHUNK_BYTES).removeprefix(b"\xef\xbb\xbf")
    lines = start.split(b"\n")
    blank = 0
    for line in lines[:-1]:  # the last piece has no line end: the header, or cut off
        if line.rstrip(b"\r"):  # the reader skips empty lines only (a space is a field)
            break
        blank += 1
    return blank


def _trimmed(column: pl.Expr) -> pl.Expr:
    return column.str.strip_chars().replace("", None)


def _shaped(batch: pl.DataFrame, entity: Entity, lines: pl.Series) -> pl.DataFrame:
    """Every column of the kind (optional ones absent from the file: empty), trimmed, with
    each row's line."""
    absent = [c for c in entity.names if c not in batch.columns]
    batch = batch.with_columns(pl.lit(None, pl.String).alias(c) for c in absent)
    dates = entity.of_type("date")

    def shaped(name: str) -> pl.Expr:
        value = _trimmed(pl.col(name))
        return (_day_of_midnight(value) if name in dates else value).alias(name)

    return batch.select(shaped(c) for c in entity.names).with_columns(lines)


# A day written as its midnight: a spreadsheet's "1990-02-28 00:00:00", or a Parquet
# timestamp column (pandas keeps dates so, localised to a zone too: the day is the one
# written). Any other time of day is no date.
_MIDNIGHT = r"^(\d{4}-\d{2}-\d{2})[T ]00:00(?::00(?:\.0+)?)?(?:Z|[+-](?:0\d|1[0-4]):?[0-5]\d)?$"


def _day_of_midnight(column: pl.Expr) -> pl.Expr:
    return column.str.replace(_MIDNIGHT, "${1}")


# What a text file's first bytes show it is not: an export saved in another format was
# refused as "line 1 is not UTF-8 (byte 0x8f)", sending its reader to the wrong fix.
OTHER_FORMATS = (
    (b"PK\x03\x04", "an Excel workbook (XLSX) or another ZIP file"),
    (b"\xd0\xcf\x11\xe0", "an Excel 97-2003 workbook (XLS)"),
    (b"\xff\xfe\x00\x00", "UTF-32 text"),
    (b"\x00\x00\xfe\xff", "UTF-32 text"),
    (b"\xff\xfe", "UTF-16 text (Excel's 'Unicode Text')"),
    (b"\xfe\xff", "UTF-16 text"),
    (b"PAR1", "a Parquet file"),
    (b"\x1f\x8b", "a gzip-compressed file"),
)


def _refuse_another_format(path: Path, head: bytes) -> None:
    for magic, what in OTHER_FORMATS:
        if head.startswith(magic):
            raise LoadError(
                f"{path}: is {what}, not CSV: save it as CSV UTF-8, or as Parquet named .parquet"
            )


def check_utf8(path: Path) -> bool:
    """Refuse a file that is not UTF-8 (a GB18030 export, say), naming its first bad line, or
    one with a line ending in CR alone (where no quote lets a field hold one: all its lines, as
    Excel for Mac saves them, or some among LF lines), which the reader took for one long
    header or a row of too many fields; whether it holds a quote (only then can a field hold a
    line break: Source.chunks)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, quoted, lone_cr = 1, False, None
    with path.open("rb") as handle:
        _refuse_another_format(path, handle.read(8))
        handle.seek(0)
        while chunk := handle.read(CHUNK_BYTES):
            if chunk.endswith(b"\r"):  # its LF, if any, begins the next chunk
                chunk += handle.read(1)
            quoted = quoted or b'"' in chunk
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                bad = line + exc.object.count(b"\n", 0, exc.start)
                raise LoadError(
                    f"{path}: line {bad} is not UTF-8 (byte 0x{exc.object[exc.start]:02x}); "
                    "save the file as UTF-8"
                ) from None
            if lone_cr is None and (found := _LONE_CR.search(chunk)):
                lone_cr = line + chunk.count(b"\n", 0, found.start())
            line += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise LoadError(f"{path}: line {line} is not UTF-8 (cut off at the end)") from None
    if lone_cr is not None and not quoted:
        raise LoadError(f"{path}: line {lone_cr}: {LONE_CR}")
    return quoted


_LONE_CR = re.compile(rb"\r(?!\n)")


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """A Parquet file's typed columns as the text a CSV would hold."""

    def text(name: str, dtype: pl.DataType) -> pl.Expr:
        column = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            shape = "%Y-%m-%dT%H:%M:%S%.f" + ("%:z" if dtype.time_zone else "")
            return column.dt.to_string(shape)
        if dtype == pl.Boolean:
            return pl.when(column).then(pl.lit("true")).when(~column).then(pl.lit("false"))
        return column.cast(pl.String)

    return frame.select(text(n, t).alias(n) for n, t in frame.schema.items())


def checked_frame(
    con: duckdb.DuckDBPyConnection,
    raw: pl.DataFrame,
    entity: Entity,
    repeated: pl.Series,
    known: dict[str, Any],
) -> pl.DataFrame:
    """The raw columns, parsed values beside them (``{c}__parsed``, ``{c}__local`` for a time
    with no offset), and one ``ok_*`` column per rule GX cannot express; ``ok_once`` is
    false for an id the whole file holds more than once."""
    frame = raw.with_columns(_parsed(entity))
    key = pl.col(entity.key)
    once = pl.when(key.is_null()).then(None).otherwise(~key.is_in(repeated.implode()))
    frame = frame.with_columns(_derived_flags(frame, entity, known))
    frame = frame.with_columns(once.alias("ok_once"))
    return _with_references(con, frame, entity)


def _parsed(entity: Entity) -> list[pl.Expr]:
    exprs = [
        pl.col(c)
        .str.to_date("%Y-%m-%d", strict=False)
        .cast(pl.Datetime("ns"))
        .alias(f"{c}__parsed")
        for c in entity.of_type("date")
    ]
    for name in entity.of_type("timestamp"):
        shaped = pl.col(name)
        for pattern, replacement in ISO_SHAPE:
            shaped = shaped.str.replace(pattern, replacement)
        moment = shaped.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_zone="UTC", strict=False)
        local = shaped.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False)
        exprs += [
            moment.alias(f"{name}__parsed"),
            local.alias(f"{name}__local"),
            # the earliest moment it can be, for "in the future": a local time's zone is its
            # store's, known only as it is written, so as early as any zone's (UTC+14)
            pl.coalesce(moment.dt.replace_time_zone(None), local - AHEAD_OF_UTC).alias(
                f"{name}__earliest"
            ),
        ]
    return exprs


AHEAD_OF_UTC = timedelta(hours=14)  # the furthest any timezone is (Pacific/Kiritimati)


# Rules GX cannot express, per kind: (check, column, reason). References are checked against
# the warehouse; the others by a library, once per distinct deciding part (warehouse.checks).
DERIVED = {
    "stores": [DerivedCheck("manager_email", "manager_email", "is not a valid email address")],
    "regions": [DerivedCheck("contact_email", "contact_email", "is not a valid email address")],
    "subscribers": [
        DerivedCheck("phone", "phone", "is not a valid number in its country's numbering plan"),
        DerivedCheck("email", "email", "is not a valid email address"),
        DerivedCheck("home_store", "home_store_id", "is not a known store"),
    ],
    "visits": [
        DerivedCheck("subscriber", "subscriber_id", "is not a known subscriber"),
        DerivedCheck("store", "store_id", "is not a known store"),
        DerivedCheck(
            "local_time", "visited_at", "is no time in its store's timezone (the clocks went on)"
        ),
    ],
}
# A time written with no offset is its store's local time (``_value_sql``): one the clocks
# skipped that day (02:30 as New York springs forward) would be stored an hour on.
LOCAL_TIMES = {"visits": ("visited_at", "store_id")}
VALUE_TESTS: dict[str, Any] = {"phone": phone_validity, "email": email_validity}


def _derived_flags(frame: pl.DataFrame, entity: Entity, known: dict[str, Any]) -> list[pl.Series]:
    """The library checks' flags; ``known`` keeps each check's answers for the whole load."""
    types = {c.name: c.type for c in entity.columns}
    return [
        VALUE_TESTS[types[check.column]](
            frame[check.column], known.setdefault(check.name, {})
        ).alias(f"ok_{check.name}")
        for check in DERIVED[entity.kind]
        if types[check.column] in VALUE_TESTS
    ]


def _with_references(
    con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, entity: Entity
) -> pl.DataFrame:
    """``ok_*`` for each column that names a row the warehouse must already hold (stores load
    before the subscribers and visits that name them)."""
    checks = {c.column: c.name for c in DERIVED[entity.kind]}
    references = [c for c in entity.columns if c.references]
    if not references:
        return frame
    flags = ", ".join(
        f"({c.name} IS NULL OR {c.name} IN (SELECT {c.references.split('.')[1]} "
        f"FROM {c.references.split('.')[0]})) AS ok_{checks[c.name]}"
        for c in references
        if c.references
    )
    columns = ["_line", *(c.name for c in references)]
    if entity.kind in LOCAL_TIMES:
        moment, store = LOCAL_TIMES[entity.kind]
        local = f"{moment}__local"
        zone = f"(SELECT timezone FROM stores s WHERE s.store_id = incoming.{store})"
        flags += (
            f", ({local} IS NULL OR timezone({zone}, timezone({zone}, {local})) = {local}"
            f" IS NOT false) AS ok_{checks[moment]}"
        )
        columns.append(local)
    register_frame(con, "incoming", frame.select(columns))
    flagged = query_frame(con, f"SELECT _line, {flags} FROM incoming")  # a plain fetch
    con.unregister("incoming")
    return frame.join(flagged.cast({"_line": pl.Int64}), on="_line", how="left")


class Stage:
    """A load's temporary tables: ``load_good``, the good rows typed as the warehouse keeps
    them, and ``load_bad``, the bad rows as read with their reasons. DuckDB holds them (and
    spills them to disk past ``STAGE_MEMORY``), so Python holds one chunk at a time."""

    def __init__(self, con: duckdb.DuckDBPyConnection, entity: Entity, present: list[str]) -> None:
        # the kind's columns the file has (Source.present): what the file says nothing of
        # keeps what the warehouse holds, and the bad rows' CSV holds these only, so that
        # the fixed rows loaded back do not empty the others
        self.con, self.entity, self.present = con, entity, present
        self.made: set[str] = set()

    def add(self, frame: pl.DataFrame, bad_rows: dict[int, list[str]]) -> None:
        is_bad = pl.col("_line").is_in(list(bad_rows))
        self._append("load_good", frame.filter(~is_bad).select(_typed_columns(self.entity)))
        if bad_rows:
            bad = frame.filter(is_bad).select("_line", *self.entity.names)
            reasons = [bad_rows[line] for line in bad["_line"]]
            self._append("load_bad", bad.with_columns(pl.Series("reasons", reasons)))

    def reword(self, reasons: dict[int, list[str]]) -> None:
        """New reasons for bad rows staged already, by line."""
        if "load_bad" not in self.made or not reasons:
            return
        register_frame(
            self.con,
            "reworded",
            pl.DataFrame(
                {"_line": list(reasons), "reasons": list(reasons.values())},
                schema={"_line": pl.Int64, "reasons": pl.List(pl.String)},
            ),
        )
        self.con.execute(
            "UPDATE load_bad SET reasons = r.reasons FROM reworded r WHERE load_bad._line = r._line"
        )
        self.con.unregister("reworded")

    def _append(self, table: str, rows: pl.DataFrame) -> None:
        if rows.is_empty():
            return
        register_frame(self.con, "chunk", rows)
        if table in self.made:
            self.con.execute(f"INSERT INTO {table} SELECT * FROM chunk")
        else:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM chunk")
            self.made.add(table)
        self.con.unregister("chunk")

    def upsert(self) -> int:
        """The good rows into the warehouse by id: known ids updated, then new ones appended
        (an anti-join; INSERT ... ON CONFLICT probed the index row by row, 9 s a million). A
        known id keeps what the file has no column for: a file without ``left_on``, or with
        ``phone`` misnamed ``mobile``, once emptied it for every row it named."""
        if "load_good" not in self.made:
            return 0
        entity, key = self.entity, self.entity.key
        values = {c: _value_sql(entity, c) for c in entity.names}
        others = [c for c in self.present if c != key]
        updates = ", ".join(f"{c} = {values[c]}" for c in others)
        # Only rows that changed: a daily extract repeats most of yesterday's, and an UPDATE
        # of every one of 10 million rows needs some 2 GB in one transaction.
        changed = " OR ".join(f"t.{c} IS DISTINCT FROM {values[c]}" for c in others)
        matched = f"load_good AS good_rows JOIN {entity.table} AS t ON t.{key} = good_rows.{key}"
        if entity.on_change:
            self.con.execute(
                entity.on_change.format(changed=f"{matched} WHERE ({changed or 'false'})")
            )
        if others:
            self.con.execute(
                f"UPDATE {entity.table} AS t SET {updates} FROM load_good AS good_rows "
                f"WHERE t.{key} = good_rows.{key} AND ({changed})"
            )
        self.con.execute(
            f"INSERT INTO {entity.table} ({', '.join(entity.names)}) "
            f"SELECT {', '.join(values.values())} FROM load_good AS good_rows "
            f"ANTI JOIN {entity.table} AS t ON t.{key} = good_rows.{key}"
        )
        return int(self._one("SELECT count(*) FROM load_good"))

    def quarantine(self, load_id: str) -> None:
        if "load_bad" not in self.made:
            return
        record = ", ".join(f"'{c}', {c}" for c in self.entity.names)
        self.con.execute(
            f"INSERT INTO quarantine SELECT ?, ?, _line, json_object({record}), reasons, now() "
            "FROM load_bad ORDER BY _line",
            [load_id, self.entity.table],
        )

    def bad_rows(self) -> Iterator[tuple[Any, ...]]:
        """The bad rows as read (the file's columns), by line, then their reasons; fetched a
        slice at a time."""
        if "load_bad" not in self.made:
            return
        cursor = self.con.execute(
            f"SELECT _line, {', '.join(self.present)}, array_to_string(reasons, '; ') "
            "FROM load_bad ORDER BY _line"
        )
        while rows := cursor.fetchmany(10_000):
            yield from rows

    def _one(self, sql: str) -> Any:
        row = self.con.execute(sql).fetchone()
        return row[0] if row else None

    def drop(self) -> None:
        for table in self.made:
            self.con.execute(f"DROP TABLE IF EXISTS {table}")


@contextmanager
def _staging(con: duckdb.DuckDBPyConnection, entity: Entity, present: list[str]) -> Iterator[Stage]:
    """A stage for one load, DuckDB's memory capped meanwhile (the connection's own limit
    comes back after)."""
    row = con.execute("SELECT current_setting('memory_limit')").fetchone()
    con.execute(f"SET memory_limit = '{STAGE_MEMORY}'")
    stage = Stage(con, entity, present)
    try:
        yield stage
    finally:
        stage.drop()
        if row:
            con.execute(f"SET memory_limit = '{row[0]}'")


def _write(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    entity: Entity,
    stage: Stage,
    result: LoadResult,
    quarantine: bool,
) -> None:
    """Upsert the staged good rows and keep the bad ones (quarantine), or write nothing but
    the report (refuse), in one transaction."""
    con.execute(f"SET memory_limit = '{WRITE_MEMORY}'")
    con.execute("BEGIN TRANSACTION")
    try:
        if quarantine or not result.bad_rows:
            result.rows_loaded = stage.upsert()
            stage.quarantine(result.load_id)
        _insert_report(con, result)
        con.execute("COMMIT")
    except BaseException:
        # A statement DuckDB aborted (out of memory, say) has ended the transaction already:
        # a failing ROLLBACK would hide why.
        with suppress(duckdb.TransactionException):
            con.execute("ROLLBACK")
        raise
    if quarantine and result.bad_rows:
        result.quarantine_file = _quarantine_csv(settings, stage, result)
    _write_report_json(settings, result)


def _keep_report(con: duckdb.DuckDBPyConnection, settings: Settings, result: LoadResult) -> None:
    _insert_report(con, result)
    _write_report_json(settings, result)


def _insert_report(con: duckdb.DuckDBPyConnection, result: LoadResult) -> None:
    con.execute(
        "INSERT INTO load_reports (load_id, entity, source, mode, rows_read, rows_loaded, "
        "rows_bad, success, report, loaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
        [
            result.load_id,
            result.entity,
            result.source,
            result.mode,
            result.rows_read,
            result.rows_loaded,
            len(result.bad_rows),
            result.success,
            json.dumps(result.report(), default=str),
        ],
    )


# How each column reaches the warehouse: typed from its parsed value, or as text.
def _typed_columns(entity: Entity) -> list[pl.Expr]:
    exprs = []
    for column in entity.columns:
        name = column.name
        if column.type == "date":
            exprs.append(pl.col(f"{name}__parsed").cast(pl.Date).alias(name))
        elif column.type == "timestamp":
            exprs += [pl.col(f"{name}__parsed"), pl.col(f"{name}__local")]
        elif column.type == "boolean":
            exprs.append((pl.col(name).str.to_lowercase() == "true").alias(name))
        else:
            exprs.append(pl.col(name))
    return exprs


def _value_sql(entity: Entity, name: str) -> str:
    """A staged value as the warehouse keeps it (the target table is in scope too, hence
    ``good_rows.``); a time without an offset is the visited store's local time."""
    column = next(c for c in entity.columns if c.name == name)
    if column.type != "timestamp":
        return f"good_rows.{name}"
    return (
        f"coalesce(good_rows.{name}__parsed, timezone((SELECT timezone FROM stores s "
        f"WHERE s.store_id = good_rows.store_id), good_rows.{name}__local))"
    )


def _quarantine_csv(settings: Settings, stage: Stage, result: LoadResult) -> Path:
    """The bad rows as they were, with their reasons, for whoever fixes the source."""
    path = path_inside(settings.reports_dir / "validation", result.load_id, ".quarantine.csv")
    write_private_csv(path, ["line", *stage.present, "reasons"], stage.bad_rows())
    return path


def report_path(settings: Settings, load_id: str) -> Path:
    return path_inside(settings.reports_dir / "validation", load_id, ".json")


def _write_report_json(settings: Settings, result: LoadResult) -> None:
    text = json.dumps(result.report(), ensure_ascii=False, indent=2, default=str)
    write_private_text(report_path(settings, result.load_id), text)
