"""Print a frame as a table, CSV (header, then rows) or JSON (one object per row); flatten
nested figures into rows."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal, TextIO

import polars as pl
import polars.selectors as cs
import typer
from rich.console import Console

from core.tables import PlainTable

Format = Literal["table", "csv", "json"]


def json_text(data: Any, *, ascii_only: bool = False) -> str:
    """``data`` as strict JSON, indented: a month's report is thousands of lines, read by people
    as often as by ``jq``, printed (``print_json``) and written to a file alike. A NaN or
    Infinity would be a bug upstream, and other parsers refuse them, so they are an error.
    ``ascii_only``: every other character as a JSON escape (the same data to a parser)."""
    return json.dumps(data, ensure_ascii=ascii_only, allow_nan=False, indent=2)


class OutputEncodingError(Exception):
    """Data the output's encoding cannot carry, where an escape would change it (CSV)."""


class _TolerantStream:
    """The process's stdout or stderr as it is at each write (a test's runner swaps them),
    where text its encoding lacks (Chinese names on a latin-1 terminal) is written with
    backslash escapes rather than failing the command after its work: for what people read,
    tables and progress. Data a program reads is written by echo_escaped and print_frame."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr

    @property
    def _stream(self) -> TextIO:
        stream = sys.stderr if self._stderr else sys.stdout
        # while a progress bar is live, rich stands a proxy of its own in for stdout: written
        # to, it prints through this console again (rich unwraps it the same way)
        proxied: TextIO = getattr(stream, "rich_proxied_file", stream)
        return proxied

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except UnicodeEncodeError:  # raised before any of the text is written
            encoding = self._stream.encoding or "ascii"
            return self._stream.write(text.encode(encoding, "backslashreplace").decode(encoding))

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding...
        # rich would write to a proxied file past this class; a private name is this
        # object's own (a copy looks for its attributes before they are set)
        if name == "rich_proxied_file" or name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._stream, name)


# Off a terminal (a pipe, a file, a scheduled run's log) rich fits every table into 80
# columns and cuts the cells that do not fit ("新套餐扣费不…"): what is kept for later would
# lose them. There a table is as wide as its cells; COLUMNS, when set to a width, decides.
OFF_TERMINAL_WIDTH = 10_000


def console(*, stderr: bool = False, markup: bool = True) -> Console:
    """A rich console on stdout (or stderr) that never fails on the output's encoding; with
    ``markup`` off, every line is text as written (what data says: "[/b]" is no tag)."""
    stream = _TolerantStream(stderr=stderr)
    columns = os.environ.get("COLUMNS", "")
    given = columns.isdigit() and int(columns) > 0  # what rich itself would take as a width
    width = None if _on_terminal(stream) or given else OFF_TERMINAL_WIDTH
    return Console(file=stream, width=width, markup=markup)  # type: ignore[arg-type]


def _on_terminal(stream: _TolerantStream) -> bool:
    """Whether the stream is a terminal; not when it is closed (``2>&-``: Python then has no
    sys.stderr), so a command started so still does its work."""
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def print_json(data: Any) -> None:
    echo_escaped(json_text(data), lambda: json_text(data, ascii_only=True))


def echo_escaped(text: str, escaped: Callable[[], str]) -> None:
    """typer.echo, not sys.stdout: on a terminal or pipe set up for ASCII (PYTHONIOENCODING) it
    still writes the Chinese text. An output in an encoding without it (latin-1) refuses the
    whole text before writing any of it: ``escaped()`` then goes instead, the same content in
    ASCII (JSON's escapes, a page's character references)."""
    try:
        typer.echo(text)
    except UnicodeEncodeError:
        typer.echo(escaped())


def print_frame(frame: pl.DataFrame, fmt: Format, console: Console, title: str = "") -> None:
    # through typer.echo, as print_json: an output set up for ASCII still gets the names
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(frame.columns)
        writer.writerows(["" if v is None else v for v in row] for row in frame.iter_rows())
        try:
            typer.echo(text.getvalue(), nl=False)
        except UnicodeEncodeError as exc:
            raise OutputEncodingError(
                f"this output's encoding ({exc.encoding}) cannot carry the CSV's text: set "
                "PYTHONIOENCODING=utf-8, or ask for --format json (escaped where it must be)"
            ) from None
    elif fmt == "json":
        rows = _json_rows(frame)
        echo_escaped(
            json.dumps(rows, ensure_ascii=False, default=_json_value),
            lambda: json.dumps(rows, default=_json_value),
        )
    else:
        table = PlainTable(*frame.columns, title=f"{title} ({frame.height} rows)")
        for row in frame.iter_rows():
            table.add_row(*("" if v is None else str(v) for v in row))
        console.print(table)


def _json_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows for JSON, every float it cannot hold as null (``_finite``): plain
    float columns in polars, only the nested ones (lists, structs, objects) cell by cell."""
    floats = cs.float()
    rows = frame.with_columns(pl.when(floats.is_finite()).then(floats)).to_dicts()
    nested = [name for name, kind in frame.schema.items() if kind.is_nested() or kind == pl.Object]
    for row in rows if nested else ():
        for name in nested:
            row[name] = _finite(row[name])
    return rows


def _finite(value: Any) -> Any:
    """``value`` with every float JSON cannot hold (NaN, infinities: a rule's 0/0, say) as
    null, in lists and structs too: strict JSON for any parser (jq, JavaScript refuse NaN),
    where json.dumps would write NaN and Infinity. Tables and CSV show what the rule gave."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_value(value: Any) -> Any:
    """A cell JSON has no type for, as a parser reads it: a moment in ISO 8601 (with its T),
    a decimal as a number (null where it is NaN or infinite, as a float), anything else as
    its text."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def echo_html(text: str) -> None:
    """A page on stdout; on an output whose encoding lacks some of its text, every character
    beyond ASCII as its character reference: the same page to a browser, whatever the
    charset it is read as."""
    echo_escaped(text, lambda: text.encode("ascii", "xmlcharrefreplace").decode("ascii"))


def flatten(figures: Mapping[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """Nested figures as rows of ``figure`` (dotted name) and ``value``."""
    rows: list[dict[str, Any]] = []
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows += flatten(value, f"{name}.")
        else:
            rows.append({"figure": name, "value": value})
    return rows
