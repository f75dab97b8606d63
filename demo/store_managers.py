"""The demo's store managers: each morning they work what their board shows, as they would
on the page. Their changes land in the board and the inbox together, exactly as the service
writes them (cases.board.Board.record_change), and reach the warehouse through collect.

Each manager has a pace of their own: most call a new case the same day, some let a few wait
past the SLA (those get escalated), and a called customer's case is mostly resolved the day
after, with a note.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from datetime import datetime, timedelta

from cases.board import Board

NOTES = {
    "contacted": {"zh-CN": "已致电客户，表示歉意", "en": "called the customer, apologised"},
    "resolved": {"zh-CN": "已补偿话费并确认解决", "en": "credited the bill, customer agreed"},
}


class StoreManagers:
    def __init__(self, board: Board, seed: int = 7) -> None:
        self.board = board
        self.seed = seed

    def work(self, morning: datetime) -> Counter[str]:
        """One morning's work on every store's board; what they did."""
        done: Counter[str] = Counter()
        for store_id in self.board.store_ids():
            board = self.board.for_store(store_id)
            if board is None:
                continue
            pace = self._pace(store_id)
            for case in board.cases:
                action = self._decide(case, pace, morning)
                if action:
                    done[action] += self._change(
                        store_id, case, action, board.store["locale"], morning
                    )
        return done

    def _pace(self, store_id: str) -> float:
        """How likely this manager is to call a new case today (0.55-0.95)."""
        digest = int(hashlib.md5(f"{self.seed}:{store_id}".encode()).hexdigest(), 16)
        return 0.55 + (digest % 41) / 100

    def _decide(self, case: dict[str, object], pace: float, morning: datetime) -> str | None:
        rng = random.Random(f"{self.seed}:{case['case_id']}:{morning.date()}")
        if case["status"] in ("open", "unresolved") and rng.random() < pace:
            return "contacted"
        if case["status"] == "contacted" and rng.random() < 0.7:
            return "resolved"
        return None

    def _change(
        self, store_id: str, case: dict[str, object], action: str, locale: str, morning: datetime
    ) -> int:
        rng = random.Random(f"{self.seed}:{case['case_id']}:{action}")
        at = morning + timedelta(hours=1, minutes=rng.randint(0, 8 * 60))
        change = {
            "case_id": case["case_id"],
            "store_id": store_id,
            "action": action,
            "note": NOTES[action].get(locale, NOTES[action]["en"]),
            "at": at.isoformat(),
        }
        key = f"{case['case_id']}:{action}:{at:%Y%m%dT%H%M}"
        db = self.board.db
        with db.connection() as con, db.transaction(con):
            return int(self.board.record_change(con, key, change))
