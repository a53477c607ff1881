"""trust: the latest global trust of one strategy from PostgreSQL, ranked.

Inputs: cron ``tick`` (repo ``trust_tick``, ``@daily``, ``overwrite: true``)
crossed with ``scores`` (repo ``eigentrust``, glob ``/``): both only trigger a
snapshot, daily and whenever the eigentrust pipeline publishes new scores (this
also puts that computation in the feed's provenance); the data comes from the
PostgreSQL ``globaltrust`` table (DSN from secret ``lens-postgres``, key ``dsn``,
env ``PGSQL_URL``). Where ts-lens alone fills ``globaltrust``, drop the
``scores`` input from the spec. The cron ``start`` is a day before ingest's so
that a tick exists when the first scores arrive (a cross with an empty input
has no datums).
Output (repo ``trust``): ``/trust.parquet``, one row per profile with a score on
the strategy's latest date: ``strategy_name, i, v, rank (int64), date (date32)``,
``rank = ROW_NUMBER() OVER (ORDER BY v DESC, i ASC)``, sorted by rank. No rows
yet gives an empty file with that schema.

Idempotent: the same table contents give the same file. ``TRUST_STRATEGY``
picks the strategy (default ``followship``). The tables are created if absent,
so a fresh database gives an empty trust table instead of a failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow as pa

from lensfeed import pfs, pg
from lensfeed.parquet import SCORES_OPTIONS, TRUST_FILE, tick_name, write_frame

TRUST_SCHEMA = pa.schema(
    [
        pa.field("strategy_name", pa.string()),
        pa.field("i", pa.string()),
        pa.field("v", pa.float64()),
        pa.field("rank", pa.int64()),
        pa.field("date", pa.date32()),
    ]
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tick-dir", type=Path, required=True, help="e.g. /pfs/tick")
    parser.add_argument("--out", type=Path, required=True, help="e.g. /pfs/out")
    args = parser.parse_args(argv)

    try:
        dsn = pfs.require_env("PGSQL_URL", what="the PostgreSQL DSN")
        strategy = pg.validate_strategy(pfs.optional_env("TRUST_STRATEGY", "followship"))
    except (pfs.MissingSecret, ValueError) as exc:
        print(f"trust: {exc}", file=sys.stderr)
        return 2
    ticks = pfs.tick_times(args.tick_dir)
    tick = tick_name(ticks[-1]) if ticks else "none"
    try:
        with pg.connect(dsn) as conn:
            pg.ensure_schema(conn)
            trust = pg.read_globaltrust(conn, strategy)
    except pg.PgError as exc:
        print(f"trust: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    write_frame(trust, TRUST_SCHEMA, args.out / TRUST_FILE, SCORES_OPTIONS)
    date = trust["date"].iloc[0] if len(trust) else "none"
    print(f"trust: {len(trust)} {strategy!r} scores of {date} written (tick {tick})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
