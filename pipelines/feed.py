"""feed: the Lens feed from the predictions snapshot, pushed atomically to PostgreSQL.

Input: ``predictions`` (repo ``predict``, glob ``/``): ``predictions.parquet``,
one row per post of the features snapshot.
Output (repo ``feed``): ``/feed.csv`` (``strategy_name,post_id,v``, one row per
post, larger ``v`` is better, sorted by ``v`` desc then ``post_id``) and
``/feed_meta.json`` (seed, counts per rule, bucket, label and tertile, input
commit, SHA-256 of feed.csv). Then replaces this strategy's rows of the
PostgreSQL ``feed`` table in one transaction and records a ``feed_runs`` row.
Overlapping pushes of one strategy (a reprocess racing a tick) wait for each
other on the strategy's advisory lock: the table holds the rows of the push that
committed last, never a union of both.

Idempotent: the sample is seeded from the SHA-256 of the predictions file, so
equal inputs give a byte-identical feed.csv, and the push replaces the same rows.
Files are written before the push; a failed push exits non-zero and leaves the
previous feed in PostgreSQL. ``PGSQL_URL`` (secret ``lens-postgres``, key ``dsn``)
is required unless ``FEED_PUSH=0``. ``FEED_STRATEGY`` names the feed's
``strategy_name`` (default ``ml-xgb-followship``, what the feed server reads).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from lensfeed import pfs, pg
from lensfeed.feed import DEFAULT_STRATEGY, FeedParams, feed_csv, generate_feed, seed_from_bytes
from lensfeed.parquet import PREDICTIONS_FILE, read_frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=Path, required=True, help="e.g. /pfs/predictions")
    parser.add_argument("--out", type=Path, required=True, help="e.g. /pfs/out")
    args = parser.parse_args(argv)

    push = pfs.optional_env("FEED_PUSH", "1") != "0"
    try:
        dsn = pfs.require_env("PGSQL_URL", what="the PostgreSQL DSN") if push else ""
        strategy = pg.validate_strategy(pfs.optional_env("FEED_STRATEGY", DEFAULT_STRATEGY))
    except pfs.MissingSecret as exc:
        print(f"feed: {exc} (or set FEED_PUSH=0 to skip the push)", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"feed: FEED_STRATEGY: {exc}", file=sys.stderr)
        return 2
    source = args.predictions / PREDICTIONS_FILE
    if not source.is_file():
        print(f"feed: {source} not found", file=sys.stderr)
        return 1
    raw = source.read_bytes()
    params = FeedParams(strategy_name=strategy)
    feed, meta = generate_feed(read_frame(raw), seed_from_bytes(raw), params)
    data = feed_csv(feed)
    meta["input_commits"] = {"predictions": pfs.input_commit("predictions")}
    meta["feed_sha256"] = hashlib.sha256(data).hexdigest()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "feed.csv").write_bytes(data)
    (args.out / "feed_meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    print(f"feed: {len(feed)} posts written to {args.out / 'feed.csv'} (seed {meta['seed']})")
    if not push:
        print("feed: FEED_PUSH=0, PostgreSQL not updated")
        return 0
    run = {
        "commit_id": pfs.output_commit(),
        "input_commits": meta["input_commits"],
        "feed_sha256": meta["feed_sha256"],
    }
    try:
        with pg.connect(dsn) as conn:
            pg.ensure_schema(conn)
            rows = pg.replace_feed(conn, params.strategy_name, feed, run)
    except pg.PgError as exc:
        print(f"feed: push to PostgreSQL failed: {exc}", file=sys.stderr)
        return 1
    print(f"feed: {rows} rows of {params.strategy_name!r} replaced in PostgreSQL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
