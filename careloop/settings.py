"""One settings object, read from the environment (``CARELOOP_*``) and an optional ``.env``."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_TIERS = ("standard", "silver", "gold", "platinum")
LOCALES = ("zh-CN", "en")


class ConfigError(RuntimeError):
    """A missing or malformed setting, named by its environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CARELOOP_", env_file=".env", extra="ignore", frozen=True
    )

    home: Path = Field(default=Path(".careloop"), description="Warehouse file and local state.")
    provider: Literal["sandbox", "live"] = "sandbox"
    tiers: Annotated[tuple[str, ...], NoDecode] = DEFAULT_TIERS  # CARELOOP_TIERS=a,b,c
    frequency_cap: int = Field(
        default=1, ge=1, description="Care contacts per customer per window."
    )
    frequency_window_days: int = Field(default=7, ge=1)
    reply_window_hours: int = Field(default=72, ge=1)
    dispatch_batch_size: int = Field(default=500, ge=1, le=10_000)
    public_url: str = "http://127.0.0.1:8000"
    link_secret: SecretStr = SecretStr("careloop-local-development-only")

    @field_validator("tiers", mode="before")
    @classmethod
    def _split_tiers(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
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


def load_settings(**overrides: object) -> Settings:
    """Read settings; a bad value raises ConfigError naming the variable and the problem."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "?"
            problems.append(f"CARELOOP_{field.upper()}: {error['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
