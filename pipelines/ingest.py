"""ingest: copy the Lens export objects that landed in this tick's window from GCS into PFS.

Input: cron ``tick`` (repo ``ingest_tick``, ``overwrite: false``, glob ``/*``): one
datum per tick, the single empty file ``/pfs/tick/<T>``. Outputs (repo ``ingest``):
``/<table>/dtime=<T>/<basename>`` conformed Parquet, one directory per (table,
tick); ``/_manifest/<T>.json`` always; ``/_rejected/<T>.json`` when something was
rejected. Tick ``T`` takes the objects that landed in ``(P, T]``, ``P`` the previous
tick of ``--schedule`` (= the cron spec). Idempotent: re-running a tick over an
unchanged bucket rewrites the same bytes. Secrets (``lens-gcs``): ``GCS_BUCKET``
(required), ``GCS_PREFIX`` (default ``lens``), ``STORAGE_EMULATOR_HOST`` (empty:
real GCS); env ``INGEST_TIME_SOURCE``: ``time_created`` (default) or ``custom_time``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from lensfeed import gcs, ingest, pfs
from lensfeed.parquet import tick_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tick-dir", type=Path, required=True, help="the cron input, /pfs/tick")
    parser.add_argument("--out", type=Path, required=True, help="the output, /pfs/out")
    parser.add_argument("--schedule", required=True, help="the cron input's spec, e.g. @hourly")
    parser.add_argument("--settle", default="0s", help="a live tick waits until T + settle")
    parser.add_argument("--attempts", type=int, default=5, help="tries per GCS call")
    args = parser.parse_args(argv)
    try:
        bucket = pfs.require_env("GCS_BUCKET", what="the export bucket")
        ticks = pfs.tick_times(args.tick_dir)
        if len(ticks) != 1:
            raise ValueError(f"expected one tick file in {args.tick_dir}, found {len(ticks)}")
        prev, tick = ingest.tick_window(args.schedule, ticks[0])
        if prev == tick:
            print(f"tick {tick_name(tick)} is off schedule {args.schedule}: empty window")
        settle = ingest.parse_duration(args.settle)
        time.sleep(ingest.settle_seconds(tick, datetime.now(UTC), settle))
        client = gcs.make_client(pfs.optional_env("STORAGE_EMULATOR_HOST"))
        store = gcs.GcsExportStore(client, bucket, attempts=args.attempts)
        prefix = pfs.optional_env("GCS_PREFIX", "lens")
        source = pfs.optional_env("INGEST_TIME_SOURCE", "time_created")
        report = ingest.ingest_tick(store, prefix, prev, tick, args.out, time_source=source)
    except (pfs.MissingSecret, gcs.StoreError, ValueError) as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return 1
    for rejection in report.rejected:
        print(f"rejected {rejection['object']!r}: {rejection['problem']}")
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
