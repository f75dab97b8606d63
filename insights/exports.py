"""Survey and outcome exports (CSV or Parquet) read for the insights commands, with errors
that name the file, the column and the rows at fault."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from core.errors import UserError
from warehouse.loading import LoadError, check_utf8

SHOWN_ROWS = 5  # bad rows named in one error; the count says how many more


class ExportError(UserError, ValueError):
    """An export that cannot be analysed as asked."""


def read_export(path: Path) -> tuple[pl.DataFrame, int]:
    """The file's rows as text columns, and the line (CSV) or row (Parquet) number of the
    first row, so errors can point at the row a person would open."""
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".parquet":
            frame = pl.read_parquet(path, glob=False)  # the file named, never a pattern
            return frame.with_columns(pl.all().cast(pl.String)), 1
        check_utf8(path)
        frame = pl.read_csv(path, infer_schema=False, encoding="utf8", glob=False)
        return _without_blank_end(frame), 2
    except LoadError as exc:
        raise ExportError(str(exc)) from None
    except pl.exceptions.NoDataError:
        raise ExportError(f"{path}: the file is empty") from None
    except (OSError, pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path}: cannot read as CSV or Parquet: {exc}") from None


def _without_blank_end(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows before the file's trailing blank ones (",,," as spreadsheets save an empty
    last row): `careloop load` takes such a line for no row, and the rows keep their numbers."""
    blank = frame.select(
        pl.all_horizontal(pl.all().str.strip_chars().fill_null("") == "").alias("blank")
    ).to_series()
    kept = (~blank).arg_true()
    return frame.head(int(kept[-1]) + 1 if len(kept) else 0)


def require_columns(frame: pl.DataFrame, path: Path, *names: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ExportError(
            f"{path}: no column {', '.join(missing)} (columns: {', '.join(frame.columns)})"
        )


# Sums of squares of values above this overflow a float: such a value gives no figure.
LARGEST = 1e150


def numbers(frame: pl.DataFrame, column: str, path: Path, first_row: int) -> pl.Series:
    """``column`` as floats (empty cells stay null; true/false count as 1/0); an error naming
    the rows whose cells are neither, or nan or infinite."""
    text = frame[column].str.strip_chars()
    lowered = text.str.to_lowercase()
    boolean = pl.when(lowered == "true").then(1.0).when(lowered == "false").then(0.0)
    parsed = frame.select(
        boolean.otherwise(text.cast(pl.Float64, strict=False)).alias(column)
    ).to_series()
    given = text.is_not_null() & (text != "")
    bad = given & parsed.is_null()
    if bad.any():
        raise ExportError(f"{path}: column {column}: {bad_rows(text, bad, first_row)} not a number")
    # nan and inf parse as floats but give no figure (and no JSON): name them, never drop them
    infinite = given & ~parsed.is_finite().fill_null(True)
    if infinite.any():
        raise ExportError(
            f"{path}: column {column}: {bad_rows(text, infinite, first_row)} not a finite number"
        )
    huge = given & (parsed.abs() > LARGEST).fill_null(False)
    if huge.any():
        raise ExportError(
            f"{path}: column {column}: {bad_rows(text, huge, first_row)} larger than {LARGEST:g} "
            "in size: its square, in every variance, would overflow"
        )
    return parsed


def bad_rows(values: pl.Series, bad: pl.Series, first_row: int) -> str:
    """``row 7 ('x'), row 9 ('')`` and how many more, for an error message."""
    indices = bad.arg_true().to_list()
    shown = [f"row {i + first_row} ({_cell(values[i])})" for i in indices[:SHOWN_ROWS]]
    more = f" and {len(indices) - SHOWN_ROWS} more" if len(indices) > SHOWN_ROWS else ""
    return ", ".join(shown) + more


def _cell(value: object) -> str:
    return "empty" if value is None else repr(value)
