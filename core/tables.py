"""Tables of what data says, shown as written."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text


class PlainTable(Table):
    """A table whose cells and title are text as written, never console markup: a customer's
    comment, a rule's description or a campaign named "[/b]" broke a table (a MarkupError) or
    lost its bracketed words ("[sms, email")."""

    def __init__(self, *headers: str, title: str | None = None, **options: Any) -> None:
        super().__init__(title=None if title is None else Text(title), **options)
        for header in headers:  # a data column's name, as the cells
            self.add_column(Text(header))

    def add_row(self, *cells: Any, **options: Any) -> None:
        super().add_row(*(Text(c) if isinstance(c, str) else c for c in cells), **options)
