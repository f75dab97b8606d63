"""Mail to staff leaves exactly once, the way customers' messages do (campaigns.dispatch).

Each mail is claimed in ``staff_mail_log`` (``sending``, committed) before it leaves, and
recorded after. A run killed in between, or an answer that does not say whether the mail went
(a timeout, a 500), leaves the claim ``sending``: the next run settles it with the mailer
before it composes anything, and a pending escalation keeps its cases out of the next mail.
Mail waits on the network with the warehouse let go, so others take their turns meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime

import duckdb

from campaigns.channels.base import Verdict
from campaigns.channels.mail import Mailer, MailResult, StaffMail
from warehouse.db import Held


@dataclass(frozen=True)
class Outgoing:
    mail: StaffMail
    kind: str  # digest | escalation
    store_id: str | None
    cases: int  # how many cases it lists
    evaluation_ids: tuple[str, ...] = ()  # the cases an escalation tells about


@dataclass(frozen=True)
class Settled:
    key: str
    kind: str
    verdict: Verdict
    evaluation_ids: tuple[str, ...]


# Cases an escalation still in flight tells about: not told again until it is settled.
PENDING_ESCALATIONS = """
SELECT unnest(evaluation_ids) FROM staff_mail_log WHERE status = 'sending' AND kind = 'escalation'
"""


def logged(con: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> set[str]:
    """The keys a mail was sent, claimed or given up on under: none of them is mailed again."""
    if not keys:
        return set()
    rows = con.execute(
        "SELECT key FROM staff_mail_log WHERE list_contains($keys, key)", {"keys": list(keys)}
    ).fetchall()
    return {key for (key,) in rows}


def send_once(
    held: Held, mailer: Mailer, outgoing: Sequence[Outgoing], now: datetime
) -> dict[str, MailResult]:
    """Each mail in turn: claimed (committed), sent, recorded. Results by key, for the mails
    this run claimed (a key claimed or sent before is left out). One at a time, so a run
    killed mid-way leaves at most one mail of unknown fate: claims of mails that never left
    would wait for the mailer's evidence like one that may have."""
    results = {}
    for item in outgoing:
        if not _claim(held.con, item, now):
            continue
        with held.released() if mailer.remote else nullcontext():
            result = mailer.send(item.mail, now)
        _record(held.con, item.mail.key, result, now)
        results[item.mail.key] = result
    return results


def settle(held: Held, mailer: Mailer, now: datetime) -> list[Settled]:
    """Ask the mailer what became of every claim still ``sending``; write what it proves:
    sent, never sent (the claim goes, so the mail is composed again), unconfirmed (for a
    person to review) or not known yet (it waits)."""
    rows = held.con.execute(
        "SELECT key, kind, claimed_at, evaluation_ids FROM staff_mail_log "
        "WHERE status = 'sending' ORDER BY claimed_at"
    ).fetchall()
    if not rows:
        return []
    with held.released():
        verdicts = mailer.settle([(key, at) for key, _, at, _ in rows], now)
    settled = [Settled(key, kind, verdicts[key], tuple(ids or ())) for key, kind, _, ids in rows]
    _write_verdicts(held.con, settled)
    return settled


def _claim(con: duckdb.DuckDBPyConnection, item: Outgoing, now: datetime) -> bool:
    """Whether this run claimed the mail (a key claimed or sent before is another's)."""
    rows = con.execute(
        """
        INSERT INTO staff_mail_log
            (key, kind, store_id, recipient, cases, status, claimed_at, evaluation_ids)
        VALUES ($key, $kind, $store, $to, $cases, 'sending', $now, $ids)
        ON CONFLICT (key) DO NOTHING RETURNING key""",
        {
            "key": item.mail.key,
            "kind": item.kind,
            "store": item.store_id,
            "to": item.mail.to,
            "cases": item.cases,
            "now": now,
            "ids": list(item.evaluation_ids),
        },
    ).fetchall()
    return bool(rows)


def _record(con: duckdb.DuckDBPyConnection, key: str, result: MailResult, now: datetime) -> None:
    if result.ok:
        con.execute(
            "UPDATE staff_mail_log SET status = 'sent', sent_at = ?, provider_id = ? WHERE key = ?",
            [now, result.provider_id, key],
        )
    elif not result.unconfirmed:  # surely not sent: the next run composes it again
        con.execute("DELETE FROM staff_mail_log WHERE key = ?", [key])


def _write_verdicts(con: duckdb.DuckDBPyConnection, settled: list[Settled]) -> None:
    for item in settled:
        if item.verdict == "sent":
            con.execute(
                "UPDATE staff_mail_log SET status = 'sent', sent_at = claimed_at WHERE key = ?",
                [item.key],
            )
        elif item.verdict == "requeue":
            con.execute("DELETE FROM staff_mail_log WHERE key = ?", [item.key])
        elif item.verdict == "unconfirmed":
            con.execute(
                "UPDATE staff_mail_log SET status = 'unconfirmed' WHERE key = ?", [item.key]
            )
