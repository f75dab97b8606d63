"""The demo's customers: they answer a share of what the sandbox delivered, in simulated time.

Every decision is seeded by the message's provider id, so a demo run is reproducible. Replies go
to the inbox exactly as the webhook service would land them (Twilio form fields for SMS, the
gathered digit for IVR, a rating-link click for email), only once their simulated time has come.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from campaigns.channels.sandbox import SANDBOX_NUMBER, SandboxMessage, SandboxProvider
from campaigns.planning import key_round
from core.files import new_private_file
from demo.customers import (
    MOOD_WEIGHTS,
    PLANTED_VARIANT_LIFT,
    SECOND_ROUND_WEIGHTS,
    answer_factor,
    complaint,
    in_us,
    moods,
    reads_planted_variant,
    subscriber_number,
    trait,
)
from inbox.db import open_sqlite
from inbox.inbox import Inbox

# The simulator's own state: the sandbox log position it has read to, and the replies it
# has decided on, each released to the inbox once its simulated time has come.
SCHEMA = """
CREATE TABLE IF NOT EXISTS sim_replies (
    dedupe_key TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    reply_at   TEXT NOT NULL,
    payload    TEXT NOT NULL,
    released   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sim_read (last_seq INTEGER NOT NULL);
"""
REPLY_RATE = {"sms": 0.45, "voice": 0.55, "email": 0.25}
WORDS = {
    "zh-CN": {1: "非常不满意", 2: "不满意", 3: "一般", 4: "满意", 5: "非常满意"},
    "en": {
        1: "very dissatisfied",
        2: "dissatisfied",
        3: "neutral",
        4: "satisfied",
        5: "very satisfied",
    },
}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
OPT_OUT_WORDS = {"zh-CN": ["TD", "退订", "T"], "en": ["STOP", "stop", "UNSUBSCRIBE"]}
NOISE = {"zh-CN": ["谢谢", "你是谁？", "好的"], "en": ["thanks!", "who is this?", "ok"]}


@dataclass(frozen=True)
class Profile:
    """What the simulated customer is like (see demo.customers)."""

    subscriber_id: str
    tier: str
    tenure_years: float
    recent_complaint: bool
    troubled: bool = False  # served by the demo's troubled store (demo.customers)
    timezone: str = "Asia/Shanghai"

    def answer_factor(self, sent_at: datetime) -> float:
        """How the local hour a message reached them at moves their odds of answering."""
        local = sent_at.astimezone(ZoneInfo(self.timezone))
        number = np.array([subscriber_number(self.subscriber_id)])
        return float(
            answer_factor(number, in_us(np.array([self.timezone])), np.array([local.hour]))[0]
        )

    @property
    def mood(self) -> int:
        traits = trait(np.array([subscriber_number(self.subscriber_id)]))
        mood = moods(
            traits,
            np.array([self.tier]),
            np.array([self.tenure_years]),
            np.array([self.recent_complaint]),
            np.array([self.troubled]),
        )
        return int(mood[0])


def _delivered(message: SandboxMessage) -> Delivered:
    return Delivered(
        message.provider_id,
        message.action_id,
        message.channel,
        message.recipient,
        message.locale,
        key_round(message.idempotency_key),
        message.sent_at,
        message.body,
    )


@dataclass(frozen=True)
class Delivered:
    provider_id: str
    action_id: str
    channel: str
    recipient: str
    locale: str
    round: int
    sent_at: datetime
    body: str = ""


Reply = tuple[str, str, str, str]  # dedupe key, inbox kind, reply time, payload (JSON)


class PendingReplies:
    """The simulator's store (a SQLite file of its own): where it has read the sandbox's log
    to, and the replies it decided on, until each one's time comes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        new_private_file(path)
        with closing(open_sqlite(path)) as con:
            con.executescript(SCHEMA)

    def last_read(self) -> int:
        with closing(open_sqlite(self.path)) as con:
            row = con.execute("SELECT max(last_seq) FROM sim_read").fetchone()
        return int(row[0] or 0)

    def add(self, replies: list[Reply], read_to: int) -> None:
        """The replies decided on and the log position they were read to, together."""
        with closing(open_sqlite(self.path)) as con:
            con.execute("BEGIN IMMEDIATE")
            con.executemany(
                "INSERT OR IGNORE INTO sim_replies (dedupe_key, kind, reply_at, payload)"
                " VALUES (?, ?, ?, ?)",
                replies,
            )
            con.execute("DELETE FROM sim_read")
            con.execute("INSERT INTO sim_read VALUES (?)", (read_to,))
            con.execute("COMMIT")

    def release(self, until: datetime, inbox: Inbox) -> int:
        """Put every reply due by ``until`` into the inbox (it ignores one put twice)."""
        with closing(open_sqlite(self.path)) as con:
            due = con.execute(
                "SELECT dedupe_key, kind, reply_at, payload FROM sim_replies"
                " WHERE released = 0 AND reply_at <= ?",
                (until.isoformat(),),
            ).fetchall()
            inbox.put_many(
                (kind, key, datetime.fromisoformat(at), json.loads(payload))
                for key, kind, at, payload in due
            )
            con.executemany(
                "UPDATE sim_replies SET released = 1 WHERE dedupe_key = ?", [(d[0],) for d in due]
            )
        return len(due)


class CustomerSimulator:
    def __init__(
        self,
        sandbox: SandboxProvider,
        inbox: Inbox,
        store: PendingReplies,
        *,
        seed: int = 7,
        reply_scale: float = 1.0,
        profiles: dict[str, Profile] | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.inbox = inbox
        self.store = store
        self.seed = seed
        self.reply_scale = reply_scale
        self.profiles = profiles or {}  # by phone number or email address

    def react(self, until: datetime) -> Counter[str]:
        """Decide replies to everything newly delivered; release those due by ``until``."""
        figures: Counter[str] = Counter()
        delivered = self.sandbox.sent_after(self.store.last_read())
        replies = [r for r in map(self.reply_to, map(_delivered, delivered)) if r]
        figures.update(f"decided_{reply[1]}" for reply in replies)
        if delivered:
            self.store.add(replies, read_to=delivered[-1].seq)
        figures["released"] = self.store.release(until, self.inbox)
        return figures

    def reply_to(self, m: Delivered) -> Reply | None:
        rng = random.Random(f"{self.seed}:{m.provider_id}")
        if rng.random() >= REPLY_RATE[m.channel] * self.reply_scale * self.hour_factor(m):
            return None
        # a second round or a manager's follow-up is personal: most end well
        weights = SECOND_ROUND_WEIGHTS if m.round >= 2 else MOOD_WEIGHTS[self.mood(m.recipient)]
        score = rng.choices(range(1, 6), weights)[0]
        if m.round == 1 and score < 4 and reads_planted_variant(m.body):
            score = 4 if rng.random() < PLANTED_VARIANT_LIFT else score
        if m.channel == "sms":
            return self._sms(rng, m, score)
        if m.channel == "voice":
            # no key, or a key that means nothing (9 would opt out of calls and texts)
            digits = str(score) if rng.random() > 0.12 else rng.choice(["", "8", "0"])
            at = m.sent_at + timedelta(seconds=rng.randint(25, 90))
            call = {"CallSid": m.provider_id, "action_id": m.action_id, "Digits": digits}
            return f"{m.provider_id}:gather", "ivr", at.isoformat(), json.dumps(call)
        at = m.sent_at + timedelta(minutes=rng.lognormvariate(4.5, 1.0))
        attributes = _attributes(rng, score)
        click = {"action_id": m.action_id, "score": score, "attributes": attributes}
        return f"rating:{m.action_id}", "email_rating", at.isoformat(), json.dumps(click)

    def hour_factor(self, m: Delivered) -> float:
        """1 for a recipient the demo does not know (see demo.customers.answer_factor)."""
        profile = self.profiles.get(m.recipient)
        return profile.answer_factor(m.sent_at) if profile else 1.0

    def mood(self, recipient: str) -> int:
        """-1 (delighted) .. 3 (grumpy); 0 for a recipient the demo does not know."""
        profile = self.profiles.get(recipient)
        return profile.mood if profile else 0

    def _sms(self, rng: random.Random, m: Delivered, score: int) -> Reply:
        text = self._sms_text(rng, m, score)
        minutes = rng.lognormvariate(2.7, 1.2)
        if rng.random() < 0.01:
            minutes += 4 * 24 * 60  # the odd reply that comes days too late
        at = m.sent_at + timedelta(minutes=minutes)
        sid = "SM" + hashlib.md5(f"reply:{m.provider_id}".encode()).hexdigest()
        payload = {"MessageSid": sid, "From": m.recipient, "To": SANDBOX_NUMBER, "Body": text}
        return sid, "sms", at.isoformat(), json.dumps(payload, ensure_ascii=False)

    @staticmethod
    def _sms_text(rng: random.Random, m: Delivered, score: int) -> str:
        locale = m.locale
        draw = rng.random()
        if draw < 0.02:
            return rng.choice(OPT_OUT_WORDS[locale])
        if draw < 0.06:
            return rng.choice(NOISE[locale])
        if score <= 2 and rng.random() < 0.6:
            said = complaint(locale, m.sent_at.date(), rng.random(), rng.randrange(1000))
            return f"{score} {said}"
        form = rng.random()
        if form < 0.55:
            return str(score)
        if form < 0.7:
            return chr(0xFF10 + score) if locale == "zh-CN" else NUMBER_WORDS[score]
        if form < 0.8 and locale == "zh-CN":
            return f"{score}分"
        return WORDS[locale][score]


# How the email rating page's attributes follow the overall score: whether the problem was
# solved tracks it closely, the wait less so and is rated lowest, the staff's attitude least.
# So the key-driver analysis has a known order to find: problem_solved, wait_time,
# staff_attitude, with wait_time important and rated low (the one to fix first).
ATTRIBUTE_LINKS = {  # name: (weight of the score, offset, noise)
    "problem_solved": (1.0, 0.0, 0.6),
    "wait_time": (0.95, -0.7, 0.75),
    "staff_attitude": (0.3, 2.4, 1.0),
}


def _attributes(rng: random.Random, score: int) -> dict[str, int]:
    return {
        name: max(1, min(5, round(weight * score + offset + rng.gauss(0, noise))))
        for name, (weight, offset, noise) in ATTRIBUTE_LINKS.items()
    }
