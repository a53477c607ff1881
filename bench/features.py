"""The features step at scale: DuckDB (the default engine) against Spark, and Spark against before.

Run: ``.venv/bin/python bench/features.py [--posts 1000000] [--repeat 3] [--before REV]``

It writes a week of generated history (``--posts`` posts; about 2.4 rows of
stats per post, one ``dtime=`` partition per hour) in the layout ``ingest``
writes, compacts every tick (``compact``) and merges the ticks of all days but
the last (``history``), as they stand at the last tick, then measures, in one run:

- ``features_job``: ``pipelines/features.py`` as a job runs it at that tick, a
  fresh process on the default engine (DuckDB; imports and session included).
  Target: <= 3 s at 1M posts;
- ``features_duckdb_vs_spark``: the step in process on a warm session, DuckDB
  against Spark ``local[*]`` (the JVM start excluded, reported apart);
- ``features_spark_vs_before``: the step on the same warm Spark session, this
  code against the code of ``--before`` (a git revision, default the last one
  without the DuckDB engine and the compacted days, which deduplicated every
  partition at every tick), loaded from git. Target: not slower (<= 1.1x,
  the noise of a 2-core machine).

Also reported: one tick's ``compact`` and the daily ``history`` merge, on DuckDB.

Every side's output files must be byte-identical to every other's (the rows
of ``--before``, whose Parquet writer options differ, must be equal), or the
row fails whatever its time. Prints ``what | ours | baseline | ratio | target | met``
and writes ``bench/results/features-<YYYY-MM-DD>.json``; exits 1 when a target
is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import machine, median, paired, report, row  # noqa: E402
from lensfeed import compact, frames  # noqa: E402
from lensfeed.schemas import POSTS, PROFILES, STATS  # noqa: E402
from lensrun.generate import generate_dataset, plan_exports  # noqa: E402

BEFORE = "0facd95"  # the last revision whose features ran on Spark only
START = datetime(2024, 5, 1, tzinfo=UTC)


def write_inputs(root: Path, posts: int, seed: int, days: int) -> dict[str, int]:
    """Posts and stats under ``root/ingest/<table>/dtime=<T>/``, trust in ``root/trust``."""
    end = START + timedelta(days=days)
    dataset = generate_dataset(posts, seed, START, end)
    rows = {POSTS: 0, STATS: 0}
    for obj in plan_exports(dataset, START, end, 1, seed):
        if obj.table in rows:
            folder = root / "ingest" / obj.table / f"dtime={obj.export_time:%Y-%m-%dT%H:%M:%SZ}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(obj.table_data, folder / obj.name.rsplit("/", 1)[1])
            rows[obj.table] += obj.table_data.num_rows
    ids = dataset[PROFILES].column("profile_id").to_pylist()[::2]
    (root / "trust").mkdir()
    trust = {
        "strategy_name": ["followship"] * len(ids),
        "i": ids,
        "v": [1.0 / (k + 2) for k in range(len(ids))],
        "rank": pa.array(range(1, len(ids) + 1), pa.int64()),
    }
    pq.write_table(pa.table(trust), root / "trust" / "trust.parquet")
    return rows


def argv_for(root: Path, out: Path) -> list[str]:
    args = ["--out", str(out)]
    for name in ("compact", "history", "trust"):
        args += [f"--{name}", str(root / name)]
    return args


def compact_all(session: Any, root: Path) -> tuple[list[str], float, float]:
    """``root/compact`` from ``root/ingest`` (one tick at a time, as its datums see
    it), and ``root/history`` of every tick of all days but the last; the ticks, the
    seconds of the last tick's compaction and of the merge."""
    by_tick: dict[str, dict[str, Path]] = {}
    for table in (POSTS, STATS):
        for folder in sorted((root / "ingest" / table).glob("dtime=*")):
            by_tick.setdefault(folder.name.removeprefix("dtime="), {})[table] = folder
    tick_s = 0.0
    for tick, tables in sorted(by_tick.items()):
        datum = root / "datums" / tick
        for table in (POSTS, STATS):
            (datum / table).mkdir(parents=True)
            if table in tables:
                (datum / table / tables[table].name).symlink_to(tables[table])
        began = time.perf_counter()
        inputs = {t: datum / t for t in (POSTS, STATS)}
        compact.compact_partition(session, inputs, root / "compact")
        tick_s = time.perf_counter() - began
    ticks = sorted(by_tick)
    last_day = ticks[-1][:10]
    partial = root / "compact-merged"
    for path in (root / "compact").rglob("*.parquet"):
        if path.parent.name.removeprefix("dtime=")[:10] != last_day:
            target = partial / path.relative_to(root / "compact")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    began = time.perf_counter()
    compact.merge_history(session, partial, root / "history")
    return ticks, tick_s, time.perf_counter() - began


def digest(out: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(out.rglob("*")):
        if path.is_file():
            sha.update(path.relative_to(out).as_posix().encode() + b"\0" + path.read_bytes())
    return sha.hexdigest()


def load_entry() -> ModuleType:
    spec = importlib.util.spec_from_file_location("features_entry", ROOT / "pipelines/features.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_before(revision: str, work: Path) -> Callable[[Any, Path, Path], None]:
    """The features step of ``revision`` as ``run(spark, root, out)``, loaded from git."""
    source = subprocess.run(
        ["git", "show", f"{revision}:lensfeed/features.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = work / "features_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("features_before", path)
    assert spec and spec.loader
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)

    def run(spark: Any, root: Path, out: Path) -> None:
        times = old.partition_times(root / "ingest" / POSTS)
        moment = old.feature_time_of(times, old.partition_times(root / "ingest" / STATS))
        posts = old.current_posts(old.read_partitions(spark, root / "ingest" / POSTS))
        stats = old.current_stats(old.read_partitions(spark, root / "ingest" / STATS))
        trust = old.read_trust(spark, root / "trust" / "trust.parquet")
        old.write_features(old.post_features(posts, stats, trust, moment), out)

    return run


def bench_job(root: Path, work: Path, repeat: int) -> tuple[list[float], str]:
    """Fresh ``pipelines/features.py`` processes on the default engine."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), frames.ENGINE_VARIABLE: "duckdb"}
    out = work / "out-job"
    command = [sys.executable, str(ROOT / "pipelines/features.py"), *argv_for(root, out)]
    times = []
    for _ in range(repeat + 1):  # the first run warms the page cache
        began = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    return times[1:], digest(out)


def run(posts: int, seed: int, repeat: int, before: str, work: Path) -> list[dict[str, Any]]:
    began = time.perf_counter()
    rows = write_inputs(work, posts, seed, 7)
    print(f"inputs: {rows[POSTS]:,} post rows, {rows[STATS]:,} stats rows "
          f"({time.perf_counter() - began:.0f} s)", flush=True)  # fmt: skip
    entry = load_entry()
    duck = frames.open_session("bench", "duckdb")
    ticks, tick_s, history_s = compact_all(duck, work)
    print(f"  compact one tick {tick_s:.2f} s ({len(ticks)} ticks), history {history_s:.2f} s")
    job_times, job_digest = bench_job(work, work, repeat)
    print(f"  job (DuckDB): {median(job_times):.2f} s", flush=True)

    os.environ.setdefault("SPARK_MASTER", "local[*]")
    spark_began = time.perf_counter()
    spark = frames.open_session("bench", "spark")
    spark_start_s = time.perf_counter() - spark_began
    old = load_before(before, work)
    digests: dict[str, str] = {"job": job_digest}

    def side(name: str, session: Any) -> Callable[[], None]:
        def go() -> None:
            assert entry.main(argv_for(work, work / f"out-{name}"), spark=session) == 0

        return go

    try:
        times = paired(
            {
                "duckdb": side("duckdb", duck),
                "spark": side("spark", spark),
                "before": lambda: old(spark, work, work / "out-before"),
            },
            repeat,
        )
    finally:
        frames.close_session(duck)
        frames.close_session(spark)
    for name in ("duckdb", "spark"):
        digests[name] = digest(work / f"out-{name}")
    # the same bytes on both engines; the same rows as before (whose writer options differ)
    old_rows = pq.read_table(work / "out-before" / "features")
    same_rows = old_rows.equals(pq.read_table(work / "out-duckdb" / "features"))
    equal = len(set(digests.values())) == 1 and same_rows
    extra = {
        "posts": rows[POSTS],
        "stats_rows": rows[STATS],
        "outputs_equal": equal,
        "compact_one_tick_s": round(tick_s, 3),
        "history_s": round(history_s, 3),
    }
    return [
        {
            "key": "features_job",
            "what": f"features job, {rows[POSTS]:,} posts (DuckDB, fresh process)",
            "ours_s": round(median(job_times), 3),
            "ours_runs_s": [round(t, 3) for t in job_times],
            "baseline_s": None,
            "ratio": None,
            "target": "<= 3 s",
            "met": median(job_times) <= 3 and equal,
            **extra,
        },
        row("features_duckdb_vs_spark", "features in process: DuckDB vs Spark local[*]",
            times["duckdb"], times["spark"], speedup=True, target=1, ok=equal,
            extra={**extra, "spark_session_start_s": round(spark_start_s, 2)}),
        row("features_spark_vs_before", f"features on Spark: now vs {before}",
            times["spark"], times["before"], speedup=False, target=1.1, ok=equal,
            extra=extra),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", default=BEFORE, help="git revision of the Spark baseline")
    parser.add_argument("--out", type=Path, help="default bench/results/features-<date>.json")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a temp dir)")
    args = parser.parse_args(argv)
    info = machine()
    print(f"machine: {info['cores']} cores, {info['memory_gib']} GiB; {args.posts:,} posts")
    with tempfile.TemporaryDirectory(prefix="lensfeed-features-", dir=args.work) as tmp:
        results = run(args.posts, args.seed, args.repeat, args.before, Path(tmp))
    header = {"posts": args.posts, "before": args.before, "machine": info}
    report(results, args.out, "features-", header)
    return 0 if all(r["met"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
