"""Store managers' cases in the warehouse: their changes, their events, their boards.

A case moves open -> contacted -> resolved by its manager (``case_event`` items from the
service, through collect); the customer's ratings make it recovered or unresolved. Every
change, accepted or not, is kept in ``case_events``. ``publish_boards`` hands each store's
board to the service's database (``feedback.board``), which the managers' page reads.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import duckdb

from campaigns.channels.mail import Mailer, StaffMail
from careloop.masking import mask_email
from feedback.board import ALLOWED, Board
from feedback.inbox import InboxItem
from warehouse.db import query_dicts

ACTIVE = ("open", "contacted", "unresolved")
CLOSED_SHOWN_DAYS = 30  # a board shows closed cases this long after they closed

CHANGE_SQL = """
UPDATE manager_cases SET status = $to, updated_at = $at,
    contacted_at = coalesce(contacted_at, $at),  -- a resolution means they spoke too
    closed_at = CASE WHEN $to = 'resolved' THEN $at ELSE closed_at END
WHERE evaluation_id = $case AND store_id = $store AND list_contains($allowed, status)
RETURNING 1
"""


def ingest_case_events(con: duckdb.DuckDBPyConnection, items: list[InboxItem]) -> int:
    """Apply managers' changes in the order they were made; each becomes an event, kept
    even when the case's state no longer allows it (it was recovered meanwhile, say).
    Returns the changes accepted."""
    accepted = 0
    for item in items:
        change = item.payload
        row = con.execute(
            "SELECT status FROM manager_cases WHERE evaluation_id = ? AND store_id = ?",
            [change["case_id"], change["store_id"]],
        ).fetchone()
        at = datetime.fromisoformat(change["at"])
        allowed = list(ALLOWED.get(change["action"], ()))
        done = bool(
            row
            and con.execute(
                CHANGE_SQL,
                {"to": change["action"], "at": at, "case": change["case_id"],
                 "store": change["store_id"], "allowed": allowed},
            ).fetchall()
        )  # fmt: skip
        if row:
            record_event(
                con, f"inbox:{item.dedupe_key}", change["case_id"], at,
                f"manager:{change['store_id']}", row[0], change["action"],
                change.get("note"), done,
            )  # fmt: skip
        accepted += done
    return accepted


def record_event(
    con: duckdb.DuckDBPyConnection,
    key: str,
    case_id: str,
    at: datetime,
    actor: str,
    from_status: str | None,
    to_status: str,
    note: str | None,
    accepted: bool = True,
) -> None:
    con.execute(
        "INSERT INTO case_events VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [key, case_id, at, actor, from_status, to_status, note, accepted],
    )


BOARD_STORES_SQL = """
SELECT store_id, name, manager_name, manager_email, timezone,
       coalesce(manager_locale, CASE WHEN timezone LIKE 'Asia/%' THEN 'zh-CN' ELSE 'en' END)
           AS locale
FROM stores ORDER BY store_id
"""
BOARD_CASES_SQL = """
SELECT m.evaluation_id AS case_id, m.store_id, m.status, m.score, m.comment,
       m.campaign_id, m.opened_at, m.contacted_at, m.closed_at, m.escalated_at,
       m.opened_at + to_hours($sla) AS sla_due,
       s.name AS customer, s.phone, s.email, s.locale,
       first.occasion, first.channel AS rated_on,
       second.channel AS second_round_channel, second.status AS second_round_status,
       second.offer_code AS second_round_offer,
       (SELECT list({'at': e.occurred_at, 'actor': e.actor, 'from': e.from_status,
                     'to': e.to_status, 'note': e.note} ORDER BY e.occurred_at)
        FROM case_events e WHERE e.evaluation_id = m.evaluation_id AND e.accepted) AS events
FROM manager_cases m
JOIN subscribers s USING (subscriber_id)
LEFT JOIN care_actions first ON first.action_id = m.action_id
LEFT JOIN care_actions second ON second.action_id = m.second_round_action_id
WHERE list_contains($active, m.status)
   OR coalesce(m.closed_at, m.updated_at, m.opened_at) >= $now - to_days($shown)
"""


def publish_boards(
    con: duckdb.DuckDBPyConnection,
    board: Board,
    now: datetime,
    sla_hours: int,
    collected_up_to: int,
) -> int:
    """Every store's board into the service's database; returns the cases published."""
    stores, cases = board_rows(con, now, sla_hours, CLOSED_SHOWN_DAYS)
    board.publish(stores, cases, at=now, collected_up_to=collected_up_to)
    return len(cases)


def board_rows(
    con: duckdb.DuckDBPyConnection, now: datetime, sla_hours: int, shown_days: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each store, and each case a manager sees: active ones, and those closed within
    ``shown_days``. The page's boards and the morning mail's lists both read these."""
    stores = query_dicts(con, BOARD_STORES_SQL, {})
    params = {"sla": sla_hours, "active": list(ACTIVE), "now": now, "shown": shown_days}
    cases = query_dicts(con, BOARD_CASES_SQL, params)
    for case in cases:
        case["events"] = [{**e, "at": e["at"].isoformat()} for e in case["events"] or []]
    return stores, cases


def sla_left(case: dict[str, Any], now: datetime) -> timedelta | None:
    """Time left before an uncontacted case is escalated; None once contacted or closed."""
    if case["status"] != "open" or case.get("contacted_at"):
        return None
    return datetime.fromisoformat(str(case["sla_due"])) - now


OVERDUE_SQL = """
SELECT m.evaluation_id, m.status, m.store_id, st.name AS store_name, st.region,
       r.contact_name, r.contact_email, s.name AS customer, m.score, m.comment,
       strftime(timezone(st.timezone, m.opened_at), '%Y-%m-%d %H:%M') AS opened_local
FROM manager_cases m
JOIN stores st USING (store_id)
JOIN subscribers s USING (subscriber_id)
LEFT JOIN regions r ON r.region = st.region
WHERE m.status IN ('open', 'unresolved') AND m.contacted_at IS NULL
  AND m.escalated_at IS NULL AND m.opened_at + to_hours($sla) <= $now
ORDER BY st.region, m.store_id, m.opened_at
"""


def escalate_overdue(
    con: duckdb.DuckDBPyConnection, mailer: Mailer, now: datetime, sla_hours: int
) -> dict[str, int]:
    """Cases not contacted within the SLA go to their region's contact, one mail per region,
    once: a case is marked escalated only when its mail went (or its region has no contact,
    which the event says). Returns the figures."""
    overdue = query_dicts(con, OVERDUE_SQL, {"sla": sla_hours, "now": now})
    by_region: dict[str | None, list[dict[str, Any]]] = {}
    for case in overdue:
        by_region.setdefault(case["contact_email"] and case["region"], []).append(case)
    figures = {"escalated": 0, "mails": 0, "without_contact": 0, "mail_failed": 0}
    for region, cases in by_region.items():
        note = "no regional contact to tell" if region is None else None
        if region is not None:
            result = mailer.send(escalation_mail(region, cases, now), now)
            if not result.ok:
                figures["mail_failed"] += len(cases)
                continue  # stays due: the next run tries again
            figures["mails"] += 1
            note = f"told {cases[0]['contact_name']} ({mask_email(cases[0]['contact_email'])})"
        else:
            figures["without_contact"] += len(cases)
        for case in cases:
            _mark_escalated(con, case, now, note)
        figures["escalated"] += len(cases)
    return figures


def _mark_escalated(
    con: duckdb.DuckDBPyConnection, case: dict[str, Any], now: datetime, note: str | None
) -> None:
    con.execute(
        "UPDATE manager_cases SET escalated_at = ?, updated_at = ? WHERE evaluation_id = ?",
        [now, now, case["evaluation_id"]],
    )
    record_event(
        con, f"escalated:{case['evaluation_id']}", case["evaluation_id"], now, "system",
        case["status"], "escalated", note,
    )  # fmt: skip


def escalation_mail(region: str, cases: list[dict[str, Any]], now: datetime) -> StaffMail:
    contact = cases[0]["contact_name"]
    lines = [
        f"Dear {contact},",
        "",
        f"{len(cases)} dissatisfied customer(s) in {region} have waited past the SLA without "
        "a call from their store:",
        "",
        *(
            f"- {c['store_name']} ({c['store_id']}): {c['customer']}, rated {c['score']}/5 "
            f"on {c['opened_local']}" + (f': "{c["comment"]}"' if c["comment"] else "")
            for c in cases
        ),
        "",
        "Each is now shown as escalated on the store's page.",
    ]
    ids = ",".join(sorted(c["evaluation_id"] for c in cases))
    return StaffMail(
        key=f"escalation:{region}:{hashlib.sha256(ids.encode()).hexdigest()[:16]}",
        to=cases[0]["contact_email"],
        subject=f"careloop: {len(cases)} overdue case(s) in {region}",
        text="\n".join(lines),
    )
