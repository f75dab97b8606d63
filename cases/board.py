"""The store managers' boards: what their page shows, in the service's own database.

The service never opens the warehouse (a flow holds it). The flow that updates cases publishes
each store's board here (in the inbox's database, which every service instance shares); the
page reads it. A manager's change is
written as a ``case_event`` inbox item, to reach the warehouse through collect like a reply,
and applied to the board in the same transaction, so the page shows it at once. A publish
re-applies the changes collect has not taken in yet, so none seems to be undone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cases.machine import apply_on_board
from inbox.db import Connection
from inbox.inbox import Inbox

CASE_EVENT = "case_event"


@dataclass(frozen=True)
class StoreBoard:
    store: dict[str, Any]
    cases: list[dict[str, Any]]
    published_at: datetime


class Board:
    """The boards, in the inbox's database: they replay the changes waiting in the inbox."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.db = inbox.db

    def publish(
        self,
        stores: Iterable[dict[str, Any]],
        cases: Iterable[dict[str, Any]],
        *,
        at: datetime,
        collected_up_to: int,
    ) -> None:
        """Replace every board in one transaction, then re-apply the managers' changes made
        since collect's watermark (``collected_up_to``, an inbox id)."""
        with self.db.connection() as con, self.db.transaction(con):
            self.db.lock_board(con)
            con.execute("DELETE FROM board_stores")
            con.execute("DELETE FROM board_cases")
            con.executemany(
                "INSERT INTO board_stores VALUES (?, ?, ?)",
                [(s["store_id"], _json(s), at.isoformat()) for s in stores],
            )
            con.executemany(
                "INSERT INTO board_cases VALUES (?, ?, ?)",
                [(c["case_id"], c["store_id"], _json(c)) for c in cases],
            )
            pending = con.execute(
                "SELECT payload FROM inbox WHERE kind = ? AND id > ? ORDER BY id",
                (CASE_EVENT, collected_up_to),
            ).fetchall()
            for (payload,) in pending:
                apply_change(con, json.loads(payload))

    def store_ids(self) -> list[str]:
        with self.db.connection() as con:
            return [row[0] for row in con.execute("SELECT store_id FROM board_stores").fetchall()]

    def for_store(self, store_id: str) -> StoreBoard | None:
        with self.db.connection() as con:
            row = con.execute(
                "SELECT data, published_at FROM board_stores WHERE store_id = ?", (store_id,)
            ).fetchone()
            if row is None:
                return None
            cases = [
                json.loads(data)
                for (data,) in con.execute(
                    "SELECT data FROM board_cases WHERE store_id = ?", (store_id,)
                ).fetchall()
            ]
        return StoreBoard(json.loads(row[0]), cases, datetime.fromisoformat(row[1]))

    def case(self, store_id: str, case_id: str) -> dict[str, Any] | None:
        """The case, only if it is this store's: an id is never trusted on its own."""
        with self.db.connection() as con:
            row = con.execute(
                "SELECT data FROM board_cases WHERE case_id = ? AND store_id = ?",
                (case_id, store_id),
            ).fetchone()
        return json.loads(row[0]) if row else None

    def record_change(self, con: Connection, key: str, change: dict[str, Any]) -> bool:
        """A manager's change, in the caller's transaction: on the board if its state allows
        it, and in the inbox for collect either way when the case is the store's (a refused
        change is recorded as such, with its note, by the case machine). False when the board
        refused it."""
        self.db.lock_board(con)
        case = _stores_case(con, change)
        if case is None:
            return False
        applied = _apply(con, case, change)
        self.inbox.insert(con, [(CASE_EVENT, key, datetime.fromisoformat(change["at"]), change)])
        return applied


def apply_change(con: Connection, change: dict[str, Any]) -> bool:
    """A manager's change on the board (inside the caller's transaction, which holds the board
    lock: no other writer can change the case between this read and the update); False when
    the case is not that store's or its state does not allow it."""
    case = _stores_case(con, change)
    return case is not None and _apply(con, case, change)


def _stores_case(con: Connection, change: dict[str, Any]) -> dict[str, Any] | None:
    """The board's case the change names, if it is the changing store's."""
    row = con.execute(
        "SELECT data FROM board_cases WHERE case_id = ? AND store_id = ?",
        (change["case_id"], change["store_id"]),
    ).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def _apply(con: Connection, case: dict[str, Any], change: dict[str, Any]) -> bool:
    actor = f"manager:{change['store_id']}"
    if not apply_on_board(case, change["action"], change["at"], actor, change.get("note") or None):
        return False
    con.execute("UPDATE board_cases SET data = ? WHERE case_id = ?", (_json(case), case["case_id"]))
    return True


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
