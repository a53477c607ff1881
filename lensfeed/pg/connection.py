"""Connecting to PostgreSQL, and messages that never hold the password.

Messages name host, port, database and user (:func:`describe_dsn`,
:func:`where`), never the password: a server error's text is scrubbed of it
(:func:`problem_of`), and a malformed DSN is never echoed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import psycopg

from lensfeed.retry import Backoff, retrying

_log = logging.getLogger(__name__)


class PgError(RuntimeError):
    """A PostgreSQL operation failed; the message never holds a password."""


def _conninfo(dsn: str) -> dict[str, Any]:
    try:
        return dict(psycopg.conninfo.conninfo_to_dict(dsn))
    except psycopg.Error:
        # the parser's message quotes the DSN: never pass it on
        raise PgError("PGSQL_URL is not a valid libpq connection string or URL") from None


def describe_dsn(dsn: str) -> str:
    """``host=... port=... dbname=... user=...`` for messages: no password, no other options."""
    info = _conninfo(dsn)
    parts = [f"{key}={info[key]}" for key in ("host", "port", "dbname", "user") if info.get(key)]
    return " ".join(parts) or "libpq defaults"


def _secrets_of(dsn: str) -> list[str]:
    try:
        password = str(_conninfo(dsn).get("password") or "")
    except PgError:
        return []
    return [password, quote(password, safe="")] if password else []


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def connect(
    dsn: str,
    *,
    attempts: int = 5,
    backoff_s: float = 0.5,
    max_backoff_s: float = 8.0,
    connect_timeout_s: int = 10,
    sleep: Callable[[float], None] = time.sleep,
) -> psycopg.Connection[Any]:
    """Open an autocommit connection, retrying with exponential backoff.

    Args:
        dsn: a libpq URL or key=value string (``PGSQL_URL``).
        attempts: connection attempts before giving up (>= 1).
        backoff_s: wait after the first failure, doubled after each one.
        max_backoff_s: cap on one wait.
        connect_timeout_s: libpq ``connect_timeout`` of each attempt.
        sleep: the wait function (tests pass a fake).

    Returns:
        The connection, in autocommit mode: writes use explicit transactions.

    Raises:
        PgError: every attempt failed; names host and database, never the password.
    """
    backoff = Backoff(attempts, backoff_s, max_backoff_s)
    where = describe_dsn(dsn)
    secrets = _secrets_of(dsn)

    def attempt() -> psycopg.Connection[Any]:
        return psycopg.connect(
            dsn, autocommit=True, connect_timeout=connect_timeout_s, application_name="lensfeed"
        )

    def warn(n: int, wait: float, exc: BaseException) -> None:
        problem = _scrub(str(exc).strip(), secrets)
        _log.warning(
            "PostgreSQL (%s) attempt %d/%d failed, retrying in %.1f s: %s",
            where,
            n,
            attempts,
            wait,
            problem,
        )

    try:
        return retrying(attempt, backoff, (psycopg.Error,), sleep=sleep, on_retry=warn)
    except psycopg.Error as exc:
        problem = _scrub(str(exc).strip(), secrets)
        raise PgError(
            f"cannot connect to PostgreSQL ({where}) after {attempts} attempts: {problem}"
        ) from None


def _connection_secrets(conn: psycopg.Connection[Any]) -> list[str]:
    try:
        password = conn.info.password or ""
    except Exception:  # a closed or broken connection may not answer
        return []
    return [password, quote(password, safe="")] if password else []


def where(conn: psycopg.Connection[Any]) -> str:
    try:
        return f"host={conn.info.host} port={conn.info.port} dbname={conn.info.dbname}"
    except Exception:
        return "a closed connection"


def problem_of(conn: psycopg.Connection[Any], exc: psycopg.Error) -> str:
    """A server error's message with the connection's password masked."""
    return _scrub(str(exc).strip(), _connection_secrets(conn))
