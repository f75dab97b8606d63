"""Print a frame as a table, CSV (header, then rows) or JSON (one object per row); flatten
nested figures into rows."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

import polars as pl
import typer
from rich.console import Console
from rich.table import Table

Format = Literal["table", "csv", "json"]


def json_text(data: Any, *, ascii_only: bool = False) -> str:
    """``data`` as strict JSON, indented: a month's report is thousands of lines, read by people
    as often as by ``jq``, printed (``print_json``) and written to a file alike. A NaN or
    Infinity would be a bug upstream, and other parsers refuse them, so they are an error.
    ``ascii_only``: every other character as a JSON escape (the same data to a parser)."""
    return json.dumps(data, ensure_ascii=ascii_only, allow_nan=False, indent=2)


def print_json(data: Any) -> None:
    echo_json(json_text(data), lambda: json_text(data, ascii_only=True))


def echo_json(text: str, escaped: Callable[[], str]) -> None:
    """typer.echo, not sys.stdout: on a terminal or pipe set up for ASCII (PYTHONIOENCODING) it
    still writes the Chinese text. An output in an encoding without it (latin-1) refuses the
    whole text before writing any of it: the same JSON then goes with its escapes."""
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
        typer.echo(text.getvalue(), nl=False)
    elif fmt == "json":
        rows = frame.to_dicts()
        echo_json(
            json.dumps(rows, ensure_ascii=False, default=str), lambda: json.dumps(rows, default=str)
        )
    else:
        table = Table(*frame.columns, title=f"{title} ({frame.height} rows)")
        for row in frame.iter_rows():
            table.add_row(*("" if v is None else str(v) for v in row))
        console.print(table)


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
