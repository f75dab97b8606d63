import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from careloop.settings import Settings, load_settings
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

    with prefect_test_harness():
        yield
