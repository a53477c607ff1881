"""eigentrust: EigenTrust global trust (strategy ``followship``) over the current follow graph.

Inputs: ``followers`` (repo ``ingest``, glob ``/public_follower``) crossed with
``profiles`` (repo ``ingest``, glob ``/public_profile``): one datum, reprocessed
only when those tables change. Both tables are full snapshots, exported in runs
whose parts may land in several ``dtime=<T>`` partitions: the current state of
each is its newest *complete* run, assembled across partitions
(``lensfeed.snapshots``: a run is complete when its completion marker
``<STAMP>.complete.json`` is present with all the ``{"parts": N}`` it declares;
newer runs still landing are skipped with a note on stderr; without any marker,
the newest run as landed, with a note that completeness could not be checked).
Output (repo ``eigentrust``): ``/globaltrust.parquet``, one row per profile with a
non-zero score: ``strategy_name, i (profile_id), v, date (date32)``, sorted by
``v`` desc, ``i`` asc; ``date`` = the date of the tick partition that completed
the follower snapshot used (the newest partition holding one of its files).
With ``GLOBALTRUST_WRITE=1`` it also replaces that strategy and date in the
PostgreSQL ``globaltrust`` table in one transaction (``PGSQL_URL`` required).

Exit 1, nothing written, when a table has no complete snapshot or the profile
snapshot has no rows (no peers to rank); an empty follower snapshot is
legitimate (every score is the pretrust) and noted on stderr.
Idempotent: the same snapshots give the same file and the same table rows.
Knobs: ``PRETRUST_HANDLES`` (comma-separated seed handles, default the original's
10 OG handles, ``lensfeed.eigentrust.OG_HANDLES``), ``EIGENTRUST_TOLERANCE`` (an L1
stopping threshold instead of the go-eigentrust ranking rule, flat tail 2).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa

from lensfeed import pfs, pg, snapshots
from lensfeed.eigentrust import (
    OG_HANDLES,
    eigentrust,
    follow_edges,
    global_trust_frame,
    pretrust,
)
from lensfeed.parquet import GLOBALTRUST_FILE, SCORES_OPTIONS, write_frame
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


def load_snapshots(
    followers_dir: Path, profiles_dir: Path
) -> tuple[date, pd.DataFrame, pd.DataFrame]:
    """The follower and profile snapshots to rank, and the date of the follower one.

    Notes (runs skipped, completeness unchecked, no follow edges) go to stderr.

    Raises:
        SnapshotError: no complete snapshot of a table, or no profile rows.
    """
    chosen = {}
    for table, table_dir in ((FOLLOWERS, followers_dir), (PROFILES, profiles_dir)):
        chosen[table] = snapshots.current_snapshot(table_dir / table, table)
        for note in chosen[table].notes:
            print(f"eigentrust: {note}", file=sys.stderr)
    run = chosen[PROFILES].run
    profiles = snapshots.read_run(run, ["profile_id", "owned_by", "handle", "is_burnt"])
    if profiles.num_rows == 0:
        raise snapshots.SnapshotError(
            f"{PROFILES} snapshot {run.stamp} has no rows: no peers to rank"
        )
    run = chosen[FOLLOWERS].run
    followers = snapshots.read_run(run, ["address", "follow_profile_id"])
    if followers.num_rows == 0:
        print(
            f"eigentrust: {FOLLOWERS} snapshot {run.stamp} has no rows: no follow edges, "
            "every score is the pretrust",
            file=sys.stderr,
        )
    return run.completed().date(), followers.to_pandas(), profiles.to_pandas()


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
        day, followers, profiles = load_snapshots(args.followers, args.profiles)
        graph = follow_edges(followers, profiles)
        result = eigentrust(graph, pretrust(graph.peers, profiles, handles), tolerance=tolerance)
    except (OSError, ValueError) as exc:
        print(f"eigentrust: {exc}", file=sys.stderr)
        return 1
    if not result.converged:
        print(f"eigentrust: not converged after {result.iterations} iterations", file=sys.stderr)
    frame = global_trust_frame(graph.peers, result.scores, STRATEGY, day)
    args.out.mkdir(parents=True, exist_ok=True)
    write_frame(frame, GLOBALTRUST_SCHEMA, args.out / GLOBALTRUST_FILE, SCORES_OPTIONS)
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
