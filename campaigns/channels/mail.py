"""Mail to the people who work the loop (store managers, regional contacts), not customers.

One small interface, two implementations picked by ``CARELOOP_PROVIDER``: SendGrid (with
attachments) when live, and the sandbox, which keeps every mail in its SQLite file.
"""

from __future__ import annotations

import base64
import json
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Attachment,
    Disposition,
    FileContent,
    FileName,
    FileType,
    Mail,
)

from campaigns.channels.sendgrid import SendGridConfig
from inbox.db import create_sqlite, open_sqlite


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


class Mailer(Protocol):
    def send(self, mail: StaffMail, at: datetime) -> MailResult: ...


class SendGridMailer:
    def __init__(self, config: SendGridConfig) -> None:
        self.config = config
        self.client = SendGridAPIClient(api_key=config.api_key, host=config.base_url)
        self.client.client.timeout = config.timeout

    def send(self, mail: StaffMail, at: datetime) -> MailResult:
        message = Mail(
            from_email=self.config.sender,
            to_emails=mail.to,
            subject=mail.subject,
            plain_text_content=mail.text,
        )
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
            return MailResult(False, error=f"SendGrid answered {exc.status_code}")
        except OSError as exc:  # a timeout, a refused connection
            return MailResult(False, error=f"SendGrid not reached: {type(exc).__name__}")
        return MailResult(True, provider_id=response.headers.get("X-Message-Id"))


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
