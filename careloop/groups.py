"""The command line's groups: how a group lists its commands."""

from __future__ import annotations

import inspect
from typing import Any

from typer.core import TyperGroup


class SummaryGroup(TyperGroup):
    """A group whose list of commands gives each one's summary as a paragraph.

    Docstrings are wrapped at the source's width. A command's own help joins the lines of its
    first paragraph, but Typer's list of a group's commands kept its line breaks: `careloop
    --help` showed "(PREFECT_API_URL, or the stack `make" on a line of its own. Each command's
    summary is set here, joined, unless it has one or its help is a kept block ("\\b")."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and command.short_help is None and command.help:
            first = inspect.cleandoc(command.help).split("\n\n")[0]
            if not first.startswith("\b"):
                command.short_help = " ".join(first.split())
        return command
