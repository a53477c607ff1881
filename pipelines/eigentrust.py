"""eigentrust: EigenTrust global trust (strategy ``followship``) over the current follow graph.

Inputs: ``followers`` (repo ``ingest``, glob ``/public_follower``) crossed with
``profiles`` (repo ``ingest``, glob ``/public_profile``): one datum, reprocessed
only when those tables change. Both tables are full snapshots: the current
state is the newest ``dtime=<T>`` partition of each
(``/pfs/followers/public_follower/dtime=<T>/*.parquet``).
Output (repo ``eigentrust``): ``/globaltrust.parquet``, one row per profile with a
non-zero score: ``strategy_name, i (profile_id), v, date (date32)``, sorted by
``v`` desc, ``i`` asc; ``date`` = the date of the newest follower partition.
With ``GLOBALTRUST_WRITE=1`` it also replaces that strategy and date in the
PostgreSQL ``globaltrust`` table in one transaction (``PGSQL_URL`` required).

Idempotent: the same snapshots give the same file and the same table rows.
Knobs: ``PRETRUST_HANDLES`` (comma-separated seed handles, default the original's
10 OG handles, ``lensfeed.eigentrust.OG_HANDLES``), ``EIGENTRUST_TOLERANCE`` (an L1
stopping threshold instead of the go-eigentrust ranking rule, flat tail 2).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.parquet as pq

from lensfeed import pfs, pg
from lensfeed.eigentrust import (
    OG_HANDLES,
    eigentrust,
    follow_edges,
    global_trust_frame,
    pretrust,
)
from lensfeed.schemas import FOLLOWERS, PROFILES

STRATEGY = "followship"
GLOBALTRUST_SCHEMA = pa.schema(
    [
        pa.field("strategy_name", pa.string()),
        pa.field("i", pa.string()),
        pa.field("v", pa.float64()),
        pa.field("date", pa.date32()),
    ]
)


def newest_partition(table_dir: Path) -> tuple[datetime, Path]:
    """The newest ``dtime=<RFC 3339>`` directory under ``table_dir`` and its tick time."""
    partitions = []
    for entry in table_dir.glob("dtime=*"):
        stamp = entry.name.removeprefix("dtime=")
        try:
            tick = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(f"{entry}: not a dtime=<YYYY-MM-DDTHH:MM:SSZ> partition") from None
        partitions.append((tick, entry))
    if not partitions:
        raise FileNotFoundError(f"no dtime= partition under {table_dir}")
    return max(partitions)


def read_partition(partition: Path, columns: list[str]) -> pd.DataFrame:
    """All Parquet parts of one partition, in name order, as one frame."""
    parts = sorted(partition.glob("*.parquet"))
    if not parts:
        raise FileNotFoundError(f"no Parquet file in {partition}")
    return pa.concat_tables([pq.read_table(p, columns=columns) for p in parts]).to_pandas()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followers", type=Path, required=True, help="e.g. /pfs/followers")
    parser.add_argument("--profiles", type=Path, required=True, help="e.g. /pfs/profiles")
    parser.add_argument("--out", type=Path, required=True, help="e.g. /pfs/out")
    args = parser.parse_args(argv)

    write_db = pfs.optional_env("GLOBALTRUST_WRITE", "0") == "1"
    try:
        dsn = pfs.require_env("PGSQL_URL", what="the PostgreSQL DSN") if write_db else ""
        tolerance_text = pfs.optional_env("EIGENTRUST_TOLERANCE")
        tolerance = float(tolerance_text) if tolerance_text else None
    except (pfs.MissingSecret, ValueError) as exc:
        print(f"eigentrust: {exc}", file=sys.stderr)
        return 2
    handles_text = pfs.optional_env("PRETRUST_HANDLES")
    handles = [h.strip() for h in handles_text.split(",") if h.strip()] or list(OG_HANDLES)

    try:
        tick, follower_dir = newest_partition(args.followers / FOLLOWERS)
        _, profile_dir = newest_partition(args.profiles / PROFILES)
        followers = read_partition(follower_dir, ["address", "follow_profile_id"])
        profiles = read_partition(profile_dir, ["profile_id", "owned_by", "handle", "is_burnt"])
    except (FileNotFoundError, ValueError) as exc:
        print(f"eigentrust: {exc}", file=sys.stderr)
        return 1
    graph = follow_edges(followers, profiles)
    result = eigentrust(graph, pretrust(graph.peers, profiles, handles), tolerance=tolerance)
    if not result.converged:
        print(f"eigentrust: not converged after {result.iterations} iterations", file=sys.stderr)
    day: date = tick.date()
    frame = global_trust_frame(graph.peers, result.scores, STRATEGY, day)
    args.out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, schema=GLOBALTRUST_SCHEMA, preserve_index=False)
    pq.write_table(table.replace_schema_metadata(None), args.out / "globaltrust.parquet")
    print(
        f"eigentrust: {len(frame)} scores for {day} from {len(graph.peers)} peers and "
        f"{len(graph.src)} edges ({result.iterations} iterations)"
    )
    if write_db:
        try:
            with pg.connect(dsn) as conn:
                pg.ensure_schema(conn)
                rows = pg.replace_globaltrust(conn, frame)
        except pg.PgError as exc:
            print(f"eigentrust: {exc}", file=sys.stderr)
            return 1
        print(f"eigentrust: {rows} rows of {STRATEGY!r} for {day} replaced in PostgreSQL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
