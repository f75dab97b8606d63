"""Who manages each store, as the warehouse knows it: a load that changes a store's manager
ends the old manager's sessions (the caller does that, in the inbox)."""

from __future__ import annotations

import duckdb

Manager = tuple[str, str]  # name, email (lower case)


def store_managers(con: duckdb.DuckDBPyConnection) -> dict[str, Manager]:
    rows = con.execute("SELECT store_id, manager_name, lower(manager_email) FROM stores").fetchall()
    return {store_id: (name, email) for store_id, name, email in rows}


def new_managers(before: dict[str, Manager], after: dict[str, Manager]) -> list[str]:
    """The stores whose manager changed (a new store has no one to sign out)."""
    return sorted(s for s, manager in after.items() if s in before and before[s] != manager)
