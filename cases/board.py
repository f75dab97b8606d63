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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cases.machine import MANAGER_EVENTS, apply_on_board
from inbox.db import Connection
from inbox.inbox import Inbox

CASE_EVENT = "case_event"


@dataclass(frozen=True)
class BoardUpdate:
    """What a publish changes: every store; the cases sent (replacing their copies); the
    cases taken off; ``whole``: every other case goes too. ``shape`` is what it was made with."""

    stores: list[dict[str, Any]]
    cases: list[dict[str, Any]]
    removed: list[str]
    whole: bool
    shape: str


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

    def publish(self, update: BoardUpdate, *, at: datetime, collected_up_to: int) -> None:
        """The update in one transaction: every store, the cases sent replaced (every case when
        ``whole``), the cases taken off deleted; then the managers' changes made since
        collect's watermark (``collected_up_to``, an inbox id) re-applied to the cases sent,
        whose warehouse copy has not taken them in yet (the others still show them)."""
        sent = {c["case_id"] for c in update.cases}
        with self.db.connection() as con, self.db.transaction(con):
            self.db.lock_board(con)
            con.execute("DELETE FROM board_stores")
            con.executemany(
                "INSERT INTO board_stores VALUES (?, ?, ?)",
                [(s["store_id"], _json(s), at.isoformat()) for s in update.stores],
            )
            if update.whole:
                con.execute("DELETE FROM board_cases")
            else:
                gone = [(case_id,) for case_id in (*sent, *update.removed)]
                con.executemany("DELETE FROM board_cases WHERE case_id = ?", gone)
            con.executemany(
                "INSERT INTO board_cases VALUES (?, ?, ?)",
                [(c["case_id"], c["store_id"], _json(c)) for c in update.cases],
            )
            con.execute(
                "INSERT INTO board_meta VALUES ('shape', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (update.shape,),
            )
            pending = con.execute(
                "SELECT payload FROM inbox WHERE kind = ? AND id > ? ORDER BY id",
                (CASE_EVENT, collected_up_to),
            ).fetchall()
            for change in (json.loads(payload) for (payload,) in pending):
                if change.get("case_id") in sent:
                    apply_change(con, change)

    def called_since(self, collected_up_to: int) -> dict[str, datetime]:
        """The cases a manager marked contacted or resolved in a change that no collect has
        taken yet (a collect waits for a dispatch's whole run), with the change's time."""
        with self.db.connection() as con:
            rows = con.execute(
                "SELECT payload FROM inbox WHERE kind = ? AND id > ?", (CASE_EVENT, collected_up_to)
            ).fetchall()
        called: dict[str, datetime] = {}
        for change in (json.loads(payload) for (payload,) in rows):
            if change.get("action") in MANAGER_EVENTS:
                at = datetime.fromisoformat(change["at"])
                case_id = str(change.get("case_id"))
                called[case_id] = min(at, called.get(case_id, at))
        return called

    def shape(self) -> str | None:
        """What the boards were last published with (None: never)."""
        with self.db.connection() as con:
            row = con.execute("SELECT value FROM board_meta WHERE name = 'shape'").fetchone()
        return None if row is None else str(row[0])

    def case_ids(self) -> list[str]:
        with self.db.connection() as con:
            return [row[0] for row in con.execute("SELECT case_id FROM board_cases").fetchall()]

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
