"""Pick the providers named by configuration (``CARELOOP_PROVIDER=sandbox|live``)."""

from __future__ import annotations

from pydantic import SecretStr

from campaigns.channels.base import Provider
from campaigns.channels.limits import SlidingWindowLimiter
from campaigns.channels.mail import Mailer, SandboxMailer, SendGridMailer
from campaigns.channels.routing import RoutingProvider
from campaigns.channels.sandbox import SandboxProvider
from campaigns.channels.sendgrid import SendGridConfig, SendGridEmail
from campaigns.channels.twilio import TwilioConfig, TwilioSms, TwilioVoice
from core.settings import ConfigError, Settings
from inbox.inbox import Inbox

# Prefect Secret blocks consulted for credentials the environment does not give.
SECRET_BLOCKS = {
    "TWILIO_ACCOUNT_SID": "twilio-account-sid",
    "TWILIO_AUTH_TOKEN": "twilio-auth-token",
    "SENDGRID_API_KEY": "sendgrid-api-key",
}


def get_provider(settings: Settings) -> Provider:
    inbox = Inbox.of(settings)
    if settings.provider == "sandbox":
        return SandboxProvider(settings.sandbox_path, inbox)
    twilio, sendgrid = live_configs(settings)
    return RoutingProvider(
        {
            "sms": TwilioSms(twilio, _limiter(settings.sms_segments_per_second)),
            "voice": TwilioVoice(twilio, _limiter(settings.voice_rate)),
            "email": SendGridEmail(sendgrid, inbox),
        }
    )


def deliver_pending_receipts(settings: Settings) -> int:
    """The sandbox's receipts that a crash between its log and the inbox kept back, put in
    the inbox now (a network provider retries its own callbacks): how many."""
    if settings.provider != "sandbox":
        return 0
    return SandboxProvider(settings.sandbox_path, Inbox.of(settings)).redelivered


def _limiter(rate: float) -> SlidingWindowLimiter:
    # A slightly longer window than one second absorbs network jitter between our clock and
    # the provider's, so the rate holds in every one-second window the provider measures.
    return SlidingWindowLimiter(rate, margin=0.05)


def live_configs(settings: Settings) -> tuple[TwilioConfig, SendGridConfig]:
    values = {
        "TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
        "TWILIO_AUTH_TOKEN": _plain(settings.twilio_auth_token),
        "SENDGRID_API_KEY": _plain(settings.sendgrid_api_key),
    }
    if settings.secret_blocks:
        for name, value in values.items():
            values[name] = value or _from_block(SECRET_BLOCKS[name])
    missing = [name for name, value in values.items() if not value]
    if not (settings.twilio_from or settings.twilio_messaging_service_sid):
        missing.append("TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID")
    if missing:
        raise ConfigError(f"CARELOOP_PROVIDER=live needs {', '.join(missing)}")
    twilio = TwilioConfig(
        account_sid=str(values["TWILIO_ACCOUNT_SID"]),
        auth_token=str(values["TWILIO_AUTH_TOKEN"]),
        base_url=settings.twilio_base_url,
        public_url=settings.public_url,
        sender=settings.twilio_from,
        messaging_service_sid=settings.twilio_messaging_service_sid,
        timeout=settings.provider_timeout_seconds,
        concurrency=settings.provider_concurrency,
        breaker_threshold=settings.breaker_threshold,
    )
    sendgrid = SendGridConfig(
        api_key=str(values["SENDGRID_API_KEY"]),
        base_url=settings.sendgrid_base_url,
        sender=settings.email_from,
        public_url=settings.public_url,
        timeout=settings.provider_timeout_seconds,
        breaker_threshold=settings.breaker_threshold,
    )
    return twilio, sendgrid


def _plain(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret else None


def _from_block(block: str) -> str | None:
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(block).get()  # type: ignore[union-attr]
    except (ValueError, RuntimeError, OSError):
        return None
    return str(value) if value else None


def get_mailer(settings: Settings) -> Mailer:
    """Mail to staff: SendGrid when live, the sandbox otherwise."""
    if settings.provider == "sandbox":
        return SandboxMailer(settings.sandbox_path)
    return SendGridMailer(live_configs(settings)[1], Inbox.of(settings))
