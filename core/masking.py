"""Mask personal contact data before it reaches a log line, an artifact or an error message."""

from __future__ import annotations

import logging
import re

_PHONE = re.compile(r"\+\d{6,15}")
_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b")


def mask_phone(phone: str) -> str:
    """``+8613812345678`` -> ``+86*******5678``: country code and last four stay readable."""
    if len(phone) <= 7:
        return "*" * len(phone)
    head = 3 if phone.startswith("+86") else 2
    return phone[:head] + "*" * (len(phone) - head - 4) + phone[-4:]


def mask_email(email: str) -> str:
    """``li.wei@example.com`` -> ``l***@example.com``."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_text(text: str) -> str:
    """Mask every phone number and email address found in free text."""
    text = _PHONE.sub(lambda m: mask_phone(m.group(0)), text)
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


class MaskingFilter(logging.Filter):
    """A logging filter that masks contact data in the rendered message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_text(record.getMessage())
        record.args = None
        return True


# Prefect's API log handler hangs on its run loggers: what a flow logs reaches the server there.
DEFAULT_LOGGERS = ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "careloop")


def install_masking(*loggers: str) -> None:
    """Attach the filter to the handlers, since logger filters do not see propagated records."""
    for name in loggers or DEFAULT_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, MaskingFilter) for f in handler.filters):
                handler.addFilter(MaskingFilter())
