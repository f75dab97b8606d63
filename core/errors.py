"""The one kind of error a user can fix: the command prints it in one line and exits 2.

A module of its own, importing nothing, so the command's entry point can catch every such
error without importing what raises it (scikit-learn, DuckDB, pydantic) just to name a class.
"""


class UserError(Exception):
    """A mistake in a setting, a file, a name or a value: told in one line, no traceback."""
