"""The machine's real PostgreSQL for the tests that need it: each test gets a schema of its own
(dropped after), reached through the inbox URL's search_path. Where no server answers, those
tests are skipped, saying which address was tried."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
import pytest

from inbox.db import close_shared, redact

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get("CARELOOP_TEST_POSTGRES_URL", DEFAULT_URL)


def reachable_server() -> str:
    """The server's URL, or a skip naming the address and the reason."""
    url = server_url()
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {redact(url)} (CARELOOP_TEST_POSTGRES_URL): {exc}")
    return url


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A URL whose connections work in a new, empty schema."""
    schema = f"careloop_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {schema}")
    joiner = "&" if "?" in url else "?"
    try:
        yield f"{url}{joiner}options={quote(f'-csearch_path={schema}')}"
    finally:
        close_shared()
        with psycopg.connect(url, autocommit=True) as con:
            con.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def fresh_database_name(url: str) -> Iterator[str]:
    """A database name not in use, dropped after the test if something created it."""
    name = f"careloop_test_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with psycopg.connect(url, autocommit=True) as con:
            con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def prefect_url(url: str, database: str) -> str:
    """The server's URL for Prefect's own driver (asyncpg), on ``database``."""
    base = url.split("?", 1)[0].rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{database}"
