"""Dates given on the command line, as YYYY-MM-DD: refused with what is wrong with them."""

from __future__ import annotations

import re
from datetime import datetime

import typer

SHAPE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")  # as strptime's %Y-%m-%d reads it


def parse_day(value: str | datetime) -> datetime:
    """A day as ``typer`` hands it over (the text given, or an option's default). A date of
    the right shape that the calendar has not (2026-02-30) is said to be so, not to be
    written in the wrong format."""
    if isinstance(value, datetime):
        return value
    shape = SHAPE.fullmatch(value)
    if not shape:
        raise typer.BadParameter(f"{value!r}: give it as YYYY-MM-DD, e.g. 2026-02-28")
    year, month, number = (int(part) for part in shape.groups())
    try:
        return datetime(year, month, number)
    except ValueError as exc:  # month must be in 1..12, day is out of range for month
        raise typer.BadParameter(f"{value!r} is not a day of the calendar ({exc})") from None
