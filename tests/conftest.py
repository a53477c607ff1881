"""Suite-wide settings and the shared services: PostgreSQL, the GCS emulator, a DuckDB session.

A datum gets a private ``/tmp`` (as in a worker pod), so a test that watches a
datum from outside (progress files, gates, counters across retries) cannot keep
those files under ``/tmp``: the suite's temporary directories live in
``/var/tmp`` instead, unless ``--basetemp`` or ``PYTEST_DEBUG_TEMPROOT`` says otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from lensrun.emulator import EmulatorServer
    from lensrun.pgserver import EmbeddedPostgres

#: The bucket of the shared GCS emulator (:func:`gcs_emulator`).
EMULATOR_BUCKET = "lens-exports"


def pytest_configure(config: pytest.Config) -> None:
    if config.option.basetemp or os.environ.get("PYTEST_DEBUG_TEMPROOT"):
        return
    if os.path.isdir("/var/tmp") and os.access("/var/tmp", os.W_OK):
        os.environ["PYTEST_DEBUG_TEMPROOT"] = "/var/tmp"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    """One embedded PostgreSQL per test process, for the modules that need one (each gets a
    database of its own: :func:`pg_db`). Tests that kill or restart a server start theirs.

    Its data lives outside pytest's base temporary directory: as root the server runs as
    a system user, and every new pytest session makes that directory 0700, which would
    cut a server of a session still running off its own files."""
    from lensrun.pgserver import EmbeddedPostgres

    root = os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir()
    work = Path(tempfile.mkdtemp(prefix="lens-tests-pg-", dir=root))
    try:
        with EmbeddedPostgres(work / "pgdata") as srv:
            yield srv
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class Database:
    """A database on the shared server: ``dsn`` is its libpq URL."""

    name: str
    dsn: str


@pytest.fixture(scope="module")
def pg_db(pg_server: EmbeddedPostgres, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh database for this test module on the shared server, dropped afterwards."""
    import psycopg

    name = "t_" + re.sub(r"\W", "_", request.module.__name__.rpartition(".")[2]).lower()
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    # the server's URL names the ``postgres`` database: ``postgresql://postgres@/postgres?...``
    yield Database(name, pg_server.dsn.replace("@/postgres?", f"@/{name}?", 1))
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[EmulatorServer]:
    """One GCS emulator per test process, serving bucket :data:`EMULATOR_BUCKET`
    (tests wipe it before use: ``gcs_emulator.wipe()``)."""
    from lensrun.emulator import EmulatorServer

    with EmulatorServer(EMULATOR_BUCKET) as server:
        yield server


@pytest.fixture(scope="session")
def duckdb_session() -> Iterator[Any]:
    """One in-process DuckDB session (sqlframe) per test process: no JVM."""
    from lensfeed import frames

    opened = frames.open_session("tests", "duckdb")
    yield opened
    frames.close_session(opened)
