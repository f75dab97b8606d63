"""What a loadable file holds: each kind's columns, their types and meaning.

One description serves the loader (parsing, the Great Expectations suite, the upsert) and
``careloop load KIND --help``, so what the help says is what the loader checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.files import PLAIN_ID_RULE


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a key of TYPES
    required: bool = False
    meaning: str = ""
    references: str | None = None  # "table.key" it must name, checked against the warehouse


# A region is named as people say it ("East China") and names no file: spaces inside are
# fine, a path separator is not.
REGION_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_. -]{0,63}$"
REGION_RULE = "letters, digits, spaces, -, _ or ., starting with a letter, digit or _, at most 64"

# Column types: what a value must look like, as the help shows it. Ids (a row's own and those
# naming another row) are plain: they name files (a store's list), so they never hold a path.
TYPES = {
    "id": f"an id ({PLAIN_ID_RULE}), unique in the file",
    "ref": f"an id ({PLAIN_ID_RULE})",
    "region": f"a region's name ({REGION_RULE})",
    "text": "text",
    "date": "date YYYY-MM-DD, not in the future",
    "timestamp": "ISO 8601 time: 2026-02-28T10:15:00+08:00 (no offset: the store's local time)",
    "boolean": "true or false (any case)",
    "phone": "E.164 phone: +8613812345678",
    "email": "email address",
    "timezone": "IANA timezone: Asia/Shanghai",
    "tier": "a configured tier (CARELOOP_TIERS)",
    "locale": "zh-CN or en",
}


@dataclass(frozen=True)
class Entity:
    kind: str  # as the command names it
    table: str
    columns: tuple[Column, ...]
    # SQL run before a load updates rows: what else must hear of a change. ``{changed}`` is a
    # FROM ... WHERE clause over the rows the load changes (as ``t``; more conditions may
    # follow with AND)
    on_change: str | None = None

    @property
    def key(self) -> str:
        return self.columns[0].name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def of_type(self, *types: str) -> list[str]:
        return [c.name for c in self.columns if c.type in types]

    def help(self) -> str:
        """The columns as ``careloop load KIND --help`` lists them."""
        width = max(len(c.name) for c in self.columns)
        lines = [
            f"{c.name.ljust(width)}  {TYPES[c.type]}"
            + (", required" if c.required else "")
            + (f", a {c.references} already loaded" if c.references else "")
            + (f"; {c.meaning}" if c.meaning else "")
            for c in self.columns
        ]
        return "\n".join(lines)


ENTITIES = {
    "stores": Entity(
        "stores",
        "stores",
        (
            Column("store_id", "id", True),
            Column("name", "text", True),
            Column("city", "text", True),
            Column("region", "region", meaning="the region whose contact hears of escalations"),
            Column("timezone", "timezone", True),
            Column("manager_name", "text", True),
            Column("manager_email", "email", True, "where the manager's daily list goes"),
            Column("manager_locale", "locale", meaning="the manager's language (default: by zone)"),
        ),
    ),
    "regions": Entity(
        "regions",
        "regions",
        (
            Column("region", "region", True, "as the stores name it, unique in the file"),
            Column("contact_name", "text", True),
            Column("contact_email", "email", True, "who hears of cases left past their SLA"),
        ),
    ),
    "subscribers": Entity(
        "subscribers",
        "subscribers",
        (
            Column("subscriber_id", "id", True),
            Column("name", "text", True),
            Column("phone", "phone", meaning="SMS and calls"),
            Column("email", "email"),
            Column("birthday", "date"),
            Column("joined_on", "date", True),
            Column("tier", "tier", True),
            Column("home_store_id", "ref", references="stores.store_id"),
            Column("timezone", "timezone", True, "send windows are in this zone"),
            Column("locale", "locale", True),
            Column("sms_consent", "boolean", True),
            Column("email_consent", "boolean", True),
            Column("voice_consent", "boolean", True),
            Column(
                "left_on",
                "date",
                meaning="the day they left the operator; empty while a subscriber",
            ),
        ),
        # the managers' boards show a case's customer (name, phone, email, language)
        on_change="UPDATE manager_cases SET board_stale = true WHERE board_stale IS NOT true "
        "AND subscriber_id IN (SELECT t.subscriber_id FROM {changed} "
        "AND t.subscriber_id IN (SELECT subscriber_id FROM manager_cases))",
    ),
    "visits": Entity(
        "visits",
        "store_visits",
        (
            Column("visit_id", "id", True),
            Column("subscriber_id", "ref", True, references="subscribers.subscriber_id"),
            Column("store_id", "ref", True, references="stores.store_id"),
            Column("visited_at", "timestamp", True),
            Column("service_type", "text", True),
        ),
    ),
}
