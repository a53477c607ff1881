"""The PostgreSQL side of the Lens feed: connect, schema, atomic replaces, the trust read.

This package is the interface the pipelines use; behind it, :mod:`.connection`
(connecting, messages without the password), :mod:`.bulk` (binary ``COPY`` in
one locked transaction) and :mod:`.tables` (the tables, their replaces and reads).

Tables (the ts-lens layout, with NOT NULL added):

- ``globaltrust(strategy_name, i, v, date)``: one row per (strategy, date, profile),
  unique on ``(strategy_name, date, i)``; written by ``eigentrust``, read by ``trust``.
- ``feed(strategy_name, post_id, v)``: one row per (strategy, post), larger ``v`` is
  better; read by the feed server, written by ``feed``.
- ``feed_runs``: one row per successful feed replace (which commit, how many rows,
  from which input commits, the SHA-256 of ``feed.csv``).

Every write replaces exactly one strategy's rows (one date's, for ``globaltrust``)
in one transaction: lock, ``DELETE``, ``COPY FROM STDIN`` (binary format), commit.
A failure anywhere, including the server dying mid-``COPY``, rolls back and leaves
the previous rows.
Re-running a replace with the same rows is a no-op in effect (idempotent).

The transaction's first statement takes the strategy's advisory lock
(:func:`load_lock_key`, one key per table and strategy), so two replaces of one
strategy serialise: the later one waits for the earlier to commit, then deletes
its rows, and the table ends up holding exactly the rows of the last commit,
never the union of both (under READ COMMITTED an unlocked ``DELETE`` cannot see
rows another open transaction is inserting). Different strategies never wait
for each other.

SQL is parameterised; table names are module constants; strategy names are
checked against :data:`STRATEGY_RE`. Messages name host, port, database and user,
never the password.
"""

from __future__ import annotations

from lensfeed.pg.bulk import load_lock_key
from lensfeed.pg.connection import PgError, connect, describe_dsn
from lensfeed.pg.tables import (
    FEED,
    FEED_COLUMNS,
    FEED_RUNS,
    FEED_V_CONTRACT,
    GLOBALTRUST,
    GLOBALTRUST_COLUMNS,
    STRATEGY_RE,
    TRUST_COLUMNS,
    ensure_schema,
    read_feed,
    read_globaltrust,
    replace_feed,
    replace_globaltrust,
    validate_strategy,
)

__all__ = [
    "FEED",
    "FEED_COLUMNS",
    "FEED_RUNS",
    "FEED_V_CONTRACT",
    "GLOBALTRUST",
    "GLOBALTRUST_COLUMNS",
    "STRATEGY_RE",
    "TRUST_COLUMNS",
    "PgError",
    "connect",
    "describe_dsn",
    "ensure_schema",
    "load_lock_key",
    "read_feed",
    "read_globaltrust",
    "replace_feed",
    "replace_globaltrust",
    "validate_strategy",
]
