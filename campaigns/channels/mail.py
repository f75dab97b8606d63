"""Mail to the people who work the loop (store managers, regional contacts), not customers.

One small interface, two implementations picked by ``CARELOOP_PROVIDER``: SendGrid (with
attachments) when live, and the sandbox, which keeps every mail in its SQLite file.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Attachment,
    CustomArg,
    Disposition,
    FileContent,
    FileName,
    FileType,
    Mail,
)

from campaigns.channels.base import MAYBE_SENT, Verdict
from campaigns.channels.sendgrid import (
    SENT_ARG,
    SendGridConfig,
    SendGridEmail,
    event_verdict,
    warn_no_events,
)
from inbox.db import create_sqlite, open_sqlite
from inbox.inbox import Inbox


@dataclass(frozen=True)
class File:
    name: str
    mime: str
    content: bytes


@dataclass(frozen=True)
class StaffMail:
    key: str  # one mail per key: its kind, whom it is for, and its day or case
    to: str
    subject: str
    text: str
    attachments: tuple[File, ...] = field(default=())


@dataclass(frozen=True)
class MailResult:
    ok: bool
    provider_id: str | None = None
    error: str | None = None
    unconfirmed: bool = False  # it may have gone (a timeout, a 5xx): settle, never resend blindly


class Mailer(Protocol):
    remote: bool  # whether send() waits on the network (the warehouse is let go meanwhile)

    def send(self, mail: StaffMail, at: datetime) -> MailResult: ...

    def settle(self, claims: Sequence[tuple[str, datetime]], now: datetime) -> dict[str, Verdict]:
        """What became of each (key, claimed at) whose send no answer confirmed."""
        ...


# Staff mail's events come back through the same custom arg as customers' emails (so the
# inbox's index on it serves both), its key set apart by this prefix.
STAFF_PREFIX = "staff:"


class SendGridMailer:
    remote = True

    def __init__(self, config: SendGridConfig, inbox: Inbox) -> None:
        self.config = config
        self.inbox = inbox
        self.client = SendGridAPIClient(api_key=config.api_key, host=config.base_url)
        self.client.client.timeout = config.timeout

    def send(self, mail: StaffMail, at: datetime) -> MailResult:
        message = Mail(
            from_email=self.config.sender,
            to_emails=mail.to,
            subject=mail.subject,
            plain_text_content=mail.text,
        )
        message.custom_arg = [
            CustomArg("action_id", STAFF_PREFIX + mail.key),
            CustomArg(SENT_ARG, f"{at.timestamp():.3f}"),
        ]
        for file in mail.attachments:
            message.add_attachment(
                Attachment(
                    FileContent(base64.b64encode(file.content).decode()),
                    FileName(file.name),
                    FileType(file.mime),
                    Disposition("attachment"),
                )
            )
        try:
            response = self.client.send(message)
        except HTTPError as exc:
            status = int(getattr(exc, "status_code", 0) or 0)
            maybe = status in MAYBE_SENT
            return MailResult(False, error=f"SendGrid answered {status}", unconfirmed=maybe)
        except OSError as exc:
            return MailResult(False, error=_unreached(exc), unconfirmed=not _refused(exc))
        return MailResult(True, provider_id=response.headers.get("X-Message-Id"))

    def settle(self, claims: Sequence[tuple[str, datetime]], now: datetime) -> dict[str, Verdict]:
        keys = [STAFF_PREFIX + key for key, _ in claims]
        evidence = self.inbox.email_evidence(keys, SENT_ARG)
        if evidence.newest_send is None and not evidence.events:
            warn_no_events(len(claims), self.config.public_url)
        grace = SendGridEmail.reconcile_grace
        return {
            key: event_verdict(
                STAFF_PREFIX + key, at, evidence, now, "requeue" if now - at >= grace else "wait"
            )[0]
            for key, at in claims
        }


def _refused(exc: OSError) -> bool:
    """Whether the request surely never reached SendGrid (no connection was made)."""
    reason = getattr(exc, "reason", exc)  # urllib wraps the socket's error in URLError
    return isinstance(reason, ConnectionRefusedError | socket.gaierror)


def _unreached(exc: OSError) -> str:
    return f"SendGrid not reached: {type(getattr(exc, 'reason', exc)).__name__}"


SANDBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS staff_mail (
    key         TEXT PRIMARY KEY,
    recipient   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    attachments TEXT NOT NULL,
    sent_at     TEXT NOT NULL
)"""


class SandboxMailer:
    """Keeps each mail (attachments too) in the sandbox's file, once per key."""

    remote = False

    def __init__(self, path: Path) -> None:
        self.path = path
        create_sqlite(path, SANDBOX_SCHEMA)

    def send(self, mail: StaffMail, at: datetime) -> MailResult:
        files = [
            {"name": f.name, "mime": f.mime, "content": base64.b64encode(f.content).decode()}
            for f in mail.attachments
        ]
        with closing(open_sqlite(self.path)) as con:
            con.execute(
                "INSERT OR IGNORE INTO staff_mail VALUES (?, ?, ?, ?, ?, ?)",
                (mail.key, mail.to, mail.subject, mail.text, json.dumps(files), at.isoformat()),
            )
        return MailResult(True, provider_id=f"sandbox:{mail.key}")

    def settle(self, claims: Sequence[tuple[str, datetime]], now: datetime) -> dict[str, Verdict]:
        """The sandbox keeps what it took: a claimed key it holds was sent, any other never."""
        keys = [key for key, _ in claims]
        with closing(open_sqlite(self.path)) as con:
            held = {
                key
                for (key,) in con.execute(
                    f"SELECT key FROM staff_mail WHERE key IN ({','.join('?' * len(keys))})", keys
                )
            }
        return {key: "sent" if key in held else "requeue" for key in keys}

    def sent(self) -> list[StaffMail]:
        with closing(open_sqlite(self.path)) as con:
            rows = con.execute(
                "SELECT key, recipient, subject, body, attachments FROM staff_mail ORDER BY rowid"
            ).fetchall()
        return [
            StaffMail(
                key,
                to,
                subject,
                body,
                tuple(
                    File(f["name"], f["mime"], base64.b64decode(f["content"]))
                    for f in json.loads(files)
                ),
            )
            for key, to, subject, body, files in rows
        ]
