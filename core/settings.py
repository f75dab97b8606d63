"""One settings object, read from the environment (``CARELOOP_*``) and an optional ``.env``."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.errors import UserError
from core.files import private_dir

# Signs links on a developer's machine; `careloop serve` refuses it on any public interface.
DEVELOPMENT_LINK_SECRET = "careloop-local-development-only"
DEFAULT_TIERS = ("standard", "silver", "gold", "platinum")
LOCALES = ("zh-CN", "en")


PROVIDER_VARIABLES = {
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_FROM",
    "TWILIO_MESSAGING_SERVICE_SID",
    "SENDGRID_API_KEY",
    "SENDGRID_WEBHOOK_PUBLIC_KEY",
}


INBOX_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")


class ConfigError(UserError, RuntimeError):
    """A missing or malformed setting, named by its environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CARELOOP_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    home: Path = Field(default=Path(".careloop"), description="Warehouse file and local state.")
    # Unset: the inbox is a SQLite file in the home. postgresql://… when several service
    # instances share one inbox. A secret: the URL may hold a password.
    inbox_url: SecretStr | None = Field(
        default=None, description="sqlite:///path or postgresql://user@host/db"
    )
    # The business's own calendar: every default date (as-of, report month, today) is its date.
    timezone: str = "Asia/Shanghai"
    provider: Literal["sandbox", "live"] = "sandbox"
    tiers: Annotated[tuple[str, ...], NoDecode] = DEFAULT_TIERS  # CARELOOP_TIERS=a,b,c
    frequency_cap: int = Field(
        default=1, ge=1, description="Care contacts per customer per window."
    )
    frequency_window_days: int = Field(default=7, ge=1)
    reply_window_hours: int = Field(default=72, ge=1)
    # Collected inbox items older than this are deleted by collect: the warehouse keeps them.
    inbox_retention_days: int = Field(default=30, ge=7)
    dispatch_batch_size: int = Field(default=500, ge=1, le=10_000)
    # Unset: where `make up` serves this home (CARELOOP_SERVICE_PORT, default 8000), so the
    # demo's mails and a dispatch's links reach the stack started for the home.
    public_url: str = Field(default_factory=lambda: f"http://127.0.0.1:{_service_port()}")
    link_secret: SecretStr = SecretStr(DEVELOPMENT_LINK_SECRET)

    # Live channels. Provider credentials keep the providers' own variable names.
    twilio_base_url: str = "https://api.twilio.com"
    sendgrid_base_url: str = "https://api.sendgrid.com"
    twilio_account_sid: str | None = Field(default=None, validation_alias="TWILIO_ACCOUNT_SID")
    twilio_auth_token: SecretStr | None = Field(default=None, validation_alias="TWILIO_AUTH_TOKEN")
    twilio_from: str | None = Field(default=None, validation_alias="TWILIO_FROM")
    twilio_messaging_service_sid: str | None = Field(
        default=None, validation_alias="TWILIO_MESSAGING_SERVICE_SID"
    )
    sendgrid_api_key: SecretStr | None = Field(default=None, validation_alias="SENDGRID_API_KEY")
    email_from: str = "care@example.com"
    sms_sender_type: Literal["long_code", "toll_free", "short_code"] = "long_code"
    sms_rate: float | None = Field(default=None, gt=0, description="Segments/s; overrides type.")
    voice_rate: float = Field(default=1.0, gt=0, description="Calls started per second.")
    provider_concurrency: int = Field(default=8, ge=1, le=64)
    provider_timeout_seconds: float = Field(default=10.0, gt=0)
    # A provider failing this many requests in a row with 5xx stops the dispatch run.
    breaker_threshold: int = Field(default=20, ge=1)
    retry_max_attempts: int = Field(default=5, ge=1, le=20)
    retry_base_seconds: float = Field(default=5.0, gt=0)
    sms_max_segments: int = Field(default=3, ge=1, le=10)
    # Look up credentials missing from the environment in Prefect Secret blocks.
    secret_blocks: bool = True
    # The feedback service.
    sendgrid_webhook_public_key: str | None = Field(
        default=None, validation_alias="SENDGRID_WEBHOOK_PUBLIC_KEY"
    )
    webhook_tolerance_seconds: int = Field(default=300, ge=1)
    # A request body must arrive within this time: slow or unfinished bodies are refused.
    body_timeout_seconds: float = Field(default=10.0, gt=0)
    # A request's head (request line and headers) must arrive within this time, and one client
    # address may hold this many connections: slow heads cannot pin the service's sockets.
    head_timeout_seconds: float = Field(default=10.0, gt=0)
    connections_per_client: int = Field(default=256, ge=1)
    # Store managers: how long a sign-in link works, how long a session lasts, and the time a
    # case may wait for its first contact before it is escalated.
    manager_link_days: int = Field(default=7, ge=1, le=90)
    manager_session_hours: int = Field(default=12, ge=1, le=24 * 7)
    case_sla_hours: int = Field(default=48, ge=1)
    # A resolved case asks its customer again at most this many times ("is it sorted now?").
    case_follow_ups: int = Field(default=2, ge=0, le=5)
    # Care's lift is measured on retention: still a subscriber this many days after care.
    lift_days: int = Field(default=90, ge=1, le=730)

    @property
    def sms_segments_per_second(self) -> float:
        """The sender's throughput: long code 1 segment/s, toll-free 3, short code 100."""
        return (
            self.sms_rate
            or {"long_code": 1.0, "toll_free": 3.0, "short_code": 100.0}[self.sms_sender_type]
        )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA timezone") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @field_validator("inbox_url")
    @classmethod
    def _inbox_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(INBOX_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(INBOX_SCHEMES)}")
        return value

    @field_validator("home", mode="before")
    @classmethod
    def _named_home(cls, value: object) -> object:
        # An empty one is the current folder, which a start then made its owner's only,
        # everything in it included (core.files.close_home)
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty: name careloop's folder (default .careloop)")
        return value

    @field_validator("tiers", mode="before")
    @classmethod
    def _split_tiers(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, tuple | list):
            if not value:  # every campaign's offers and every load's tier check would fail
                raise ValueError("names no tier: give them lowest first, e.g. standard,silver,gold")
            if len(set(value)) < len(value):
                raise ValueError(f"names a tier twice: {', '.join(value)}")
        return value

    @cached_property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @cached_property
    def inbox_path(self) -> Path:
        return self.home / "inbox.sqlite"

    @cached_property
    def sandbox_path(self) -> Path:
        return self.home / "sandbox.sqlite"

    @cached_property
    def reports_dir(self) -> Path:
        return self.home / "reports"


def _service_port() -> int:
    said = os.environ.get("CARELOOP_SERVICE_PORT", "8000")
    if not (said.strip().isascii() and said.strip().isdigit()) or not 0 < int(said) < 65536:
        raise ConfigError(f"CARELOOP_SERVICE_PORT={said!r}: a port number (1 to 65535)")
    return int(said)


def load_settings(**overrides: object) -> Settings:
    """Read settings; a bad value raises ConfigError naming the variable and the problem."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "?"
            name = (
                field.upper()
                if field.upper() in PROVIDER_VARIABLES
                else f"CARELOOP_{field.upper()}"
            )
            problems.append(f"{name}: {error['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def usable_home(settings: Settings) -> Path:
    """The home, made (owner-only) if it is missing; one that cannot be made is refused
    naming the setting, before a command starts anything (a temporary Prefect server)."""
    home = settings.home
    for path in (home, *home.parents):
        if path.is_symlink() and not path.exists():
            raise ConfigError(f"CARELOOP_HOME={home}: {path} is a link to nothing")
        if path.exists() and not path.is_dir():
            raise ConfigError(f"CARELOOP_HOME={home}: {path} is a file, not a folder")
    try:
        return home if home.is_dir() else private_dir(home)
    except OSError as exc:
        raise ConfigError(
            f"CARELOOP_HOME={home}: cannot make it a folder ({exc.strerror})"
        ) from None
