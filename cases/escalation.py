"""Cases not contacted within the SLA, told to their region's contact exactly once."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import duckdb

from campaigns.channels.mail import Mailer, StaffMail
from cases.machine import Event, apply_rows, states_where
from cases.notes import ESCALATED, NO_REGIONAL_CONTACT, TOLD
from cases.staff_mail import PENDING_ESCALATIONS, Outgoing, send_once, settle
from core.masking import mask_email
from warehouse.db import Held, as_held, query_dicts

OVERDUE_SQL = f"""
SELECT m.evaluation_id, m.status, m.store_id, st.name AS store_name, st.region,
       r.contact_name, r.contact_email, s.name AS customer, m.score, m.comment,
       strftime(timezone(st.timezone, m.opened_at), '%Y-%m-%d %H:%M') AS opened_local,
       m.opened_at
FROM manager_cases m
JOIN stores st USING (store_id)
JOIN subscribers s USING (subscriber_id)
LEFT JOIN regions r ON r.region = st.region
WHERE list_contains($states, m.status) AND m.contacted_at IS NULL
  AND m.escalated_at IS NULL AND m.opened_at + to_hours($sla) <= $now
  AND m.evaluation_id NOT IN ({PENDING_ESCALATIONS})
ORDER BY st.region, m.store_id, m.opened_at
"""


def escalate_overdue(
    warehouse: Held | duckdb.DuckDBPyConnection, mailer: Mailer, now: datetime, sla_hours: int,
    called: Mapping[str, datetime] | None = None,
) -> dict[str, int]:  # fmt: skip
    """Cases not contacted within the SLA go to their region's contact, one mail per region,
    exactly once (cases.staff_mail): a case is marked escalated only when its mail went (or
    its region has no contact, which the event says); while its mail's fate is unknown it is
    in no other mail. ``called``: cases a manager marked contacted (or resolved) in a change
    still in the inbox, with its time: one made within the SLA leaves its case for the next
    run, which finds it collected; one made after does not. Returns the figures."""
    held = as_held(warehouse)
    figures = {"escalated": 0, "mails": 0, "without_contact": 0, "mail_failed": 0}
    for item in settle(held, mailer, now):
        if item.kind == "escalation" and item.verdict == "sent":
            figures["escalated"] += _mark_told(held.con, item.evaluation_ids, now)
    params = {"sla": sla_hours, "now": now, "states": states_where(Event.ESCALATED)}
    sla, calls = timedelta(hours=sla_hours), called or {}
    overdue = [
        case
        for case in query_dicts(held.con, OVERDUE_SQL, params)
        if not _called_in_time(calls.get(case["evaluation_id"]), case["opened_at"] + sla)
    ]
    by_region: dict[str | None, list[dict[str, Any]]] = {}
    for case in overdue:
        by_region.setdefault(case["contact_email"] and case["region"], []).append(case)
    unreachable = by_region.pop(None, [])
    _mark_escalated(held.con, unreachable, now, NO_REGIONAL_CONTACT)
    figures["without_contact"] = len(unreachable)
    figures["escalated"] += len(unreachable)
    outgoing = {
        (mail := escalation_mail(region, cases, now)).key: Outgoing(
            mail, "escalation", None, len(cases), tuple(c["evaluation_id"] for c in cases)
        )
        for region, cases in by_region.items()
        if region is not None
    }
    results = send_once(held, mailer, list(outgoing.values()), now)
    for key, result in results.items():
        ids = outgoing[key].evaluation_ids
        if result.ok:
            figures["mails"] += 1
            figures["escalated"] += _mark_told(held.con, ids, now)
        elif not result.unconfirmed:
            figures["mail_failed"] += len(ids)  # stays due: the next run tries again
    return figures


def _called_in_time(called_at: datetime | None, sla_ends: datetime) -> bool:
    return called_at is not None and called_at <= sla_ends


def _mark_told(con: duckdb.DuckDBPyConnection, evaluation_ids: Sequence[str], now: datetime) -> int:
    """Mark the cases an escalation mail told about (those still not escalated)."""
    cases = query_dicts(
        con,
        "SELECT m.evaluation_id, r.contact_name, r.contact_email "
        "FROM manager_cases m JOIN stores st USING (store_id) "
        "LEFT JOIN regions r ON r.region = st.region "
        "WHERE list_contains($ids, m.evaluation_id) AND m.escalated_at IS NULL",
        {"ids": list(evaluation_ids)},
    )
    if cases:  # one region per mail: one contact
        told = f"{TOLD}{cases[0]['contact_name']} ({mask_email(cases[0]['contact_email'] or '')})"
        _mark_escalated(con, cases, now, told)
    return len(cases)


def _mark_escalated(
    con: duckdb.DuckDBPyConnection, cases: list[dict[str, Any]], now: datetime, note: str
) -> None:
    rows = [
        {
            "event_key": f"escalated:{case['evaluation_id']}",
            "case_id": case["evaluation_id"],
            "event": Event.ESCALATED.value,
            "occurred_at": now,
            "actor": "system",
            "note": f"{ESCALATED}{note}",
        }
        for case in cases
    ]
    apply_rows(con, rows)


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
