"""Pick the provider named by configuration (``CARELOOP_PROVIDER``)."""

from __future__ import annotations

from campaigns.channels.base import Provider
from campaigns.channels.sandbox import SandboxProvider
from careloop.settings import ConfigError, Settings
from feedback.inbox import Inbox


def get_provider(settings: Settings) -> Provider:
    if settings.provider == "sandbox":
        return SandboxProvider(settings.sandbox_path, Inbox(settings.inbox_path))
    raise ConfigError(
        "CARELOOP_PROVIDER=live: the Twilio and SendGrid providers are not available in this "
        "version; use CARELOOP_PROVIDER=sandbox"
    )
