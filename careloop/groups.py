"""The command line's groups: how a group lists its commands."""

from __future__ import annotations

import inspect
from typing import Any

from typer.core import TyperGroup


class SummaryGroup(TyperGroup):
    """A group whose list of commands gives each one's summary as a paragraph.

    Docstrings are wrapped at the source's width. A command's own help joins the lines of its
    first paragraph, but Typer's list of a group's commands kept its line breaks: `careloop
    --help` showed "(PREFECT_API_URL, or the stack `make" on a line of its own. The first
    paragraph's lines are joined here, in the help itself, so the list, the command's own page
    and shell completion (which cuts the summary short) all read it as one paragraph. A kept
    block ("\\b") and a summary given explicitly are left as written."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and command.help:
            command.help = joined_summary(command.help)
        if command is not None:
            bare_flags(command, ctx)
        return command

    def get_params(self, ctx: Any) -> Any:
        params = super().get_params(ctx)
        for param in params:
            bare_flag(param)
        return params


def bare_flags(command: Any, ctx: Any) -> None:
    # with no context (a caller looking a command up) there is no help option to reach
    for param in command.get_params(ctx) if ctx is not None else command.params:
        bare_flag(param)


def bare_flag(param: Any) -> None:
    """A flag takes no value, so its help shows none: Typer shows ``<bool>`` beside it, which
    reads as a value to give (``--debug true`` was taken for a command named "true")."""
    if getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""


def joined_summary(help_text: str) -> str:
    """``help_text`` with its first paragraph on one line (a kept "\\b" block as it is). What
    follows a "\\f" is not help (click shows nothing after it): it is left where it is, never
    joined into the summary."""
    shown, cut, hidden = help_text.partition("\f")
    first, *rest = inspect.cleandoc(shown).split("\n\n")
    if first.startswith("\b"):
        return help_text
    return "\n\n".join([" ".join(first.split()), *rest]) + cut + hidden
