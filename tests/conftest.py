import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from core.settings import Settings, load_settings
from tests.fakes import ACCOUNT_SID, AUTH_TOKEN, SENDGRID_KEY, SendGridApi, TwilioApi, serve
from warehouse.db import connect


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CARELOOP_HOME", str(tmp_path / "home"))
    return load_settings()


@pytest.fixture
def con(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect(settings.warehouse_path)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    from careloop.runtime import in_process_flows
    from core import EPHEMERAL_STARTUP_SECONDS

    # The harness's own wait is 30 s: on a busy machine its server takes longer to answer.
    with prefect_test_harness(EPHEMERAL_STARTUP_SECONDS), in_process_flows():
        yield


PUBLIC = "https://care.example.com"
SENDER = "+15550001111"


@pytest.fixture
def fakes(settings, monkeypatch):
    """Local Twilio and SendGrid servers, and the settings that point the live providers at
    them: (twilio, sendgrid, settings)."""
    with serve(TwilioApi()) as (twilio_url, twilio), serve(SendGridApi()) as (sg_url, sendgrid):
        for name, value in {
            "CARELOOP_PROVIDER": "live",
            "CARELOOP_TWILIO_BASE_URL": twilio_url,
            "CARELOOP_SENDGRID_BASE_URL": sg_url,
            "CARELOOP_PUBLIC_URL": PUBLIC,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_FROM": SENDER,
            "SENDGRID_API_KEY": SENDGRID_KEY,
            "CARELOOP_SECRET_BLOCKS": "false",
            "CARELOOP_PROVIDER_TIMEOUT_SECONDS": "0.5",
            "CARELOOP_SMS_RATE": "1000",
            "CARELOOP_VOICE_RATE": "1000",
        }.items():
            monkeypatch.setenv(name, value)
        yield twilio, sendgrid, load_settings()


@pytest.fixture
def signer():
    from tests.service_helpers import SendGridSigner

    return SendGridSigner()


@pytest.fixture(params=["sqlite", "postgres"])
def inbox_url(request) -> Iterator[str]:
    """Each inbox engine in turn: the SQLite file (by its URL) and the machine's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{request.getfixturevalue('settings').inbox_path}"
    else:
        yield request.getfixturevalue("postgres_inbox_url")


@pytest.fixture
def service(settings, monkeypatch, signer, inbox_url):
    """The feedback service in a test client, on each inbox engine: (client, inbox,
    settings). A server error is a 500 answer here, as a provider would see it, not an
    exception."""
    from starlette.testclient import TestClient

    from inbox.inbox import Inbox
    from service.app import create_app
    from tests.service_helpers import AUTH_TOKEN, PUBLIC_URL

    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_key)
    monkeypatch.setenv("CARELOOP_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("CARELOOP_INBOX_URL", inbox_url)
    settings = load_settings()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, Inbox.of(settings), settings


@pytest.fixture
def postgres_inbox_url() -> Iterator[str]:
    """An inbox URL on the machine's PostgreSQL, in a schema of this test's own."""
    from tests.postgres import fresh_schema, reachable_server

    with fresh_schema(reachable_server()) as url:
        yield url
