"""Engine throughput: N one-file datums through a no-op pipeline, then the same input again.

Run: ``.venv/bin/python bench/engine.py [--datums 2000] [--parallelism 2]``

Prints datums/s for the processing job and for the all-skipped job, the engine's
overhead per datum (job wall time minus the time the commands themselves ran),
and, as a baseline measured in the same run, the cost of spawning the same no-op
command N times with no engine around it. Targets (issue 2): >= 150 datums/s at
parallelism 2, the all-skipped job under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pachlocal.engine import Engine  # noqa: E402


def no_op_spec(parallelism: int) -> dict[str, object]:
    return {
        "pipeline": {"name": "noop"},
        "transform": {"cmd": ["true"]},
        "parallelismSpec": {"constant": parallelism},
        "input": {"pfs": {"repo": "in", "glob": "/*"}},
    }


def run(datums: int, parallelism: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="pachlocal-bench-") as tmp:
        home = Path(tmp) / "state"
        engine = Engine(home, command="bench")
        try:
            engine.store.create_repo("in")
            puts = [(f"/f{i:05d}", f"{i}\n".encode()) for i in range(datums)]
            engine.commit_files("in", "master", puts)
            engine.create_pipeline(no_op_spec(parallelism), code_root=ROOT)
            t0 = time.perf_counter()
            (first,) = engine.run_pending()
            t1 = time.perf_counter()
            engine.create_pipeline(
                {**no_op_spec(parallelism), "description": "same datums"},
                code_root=ROOT,
                update=True,
            )
            t2 = time.perf_counter()
            (second,) = engine.run_pending()
            t3 = time.perf_counter()
            command_seconds = sum(d["seconds"] for d in engine.datums("noop", first["id"]))
        finally:
            engine.close()
    assert first["processed"] == datums and second["skipped"] == datums, (first, second)
    wall = t1 - t0
    return {
        "processed_seconds": wall,
        "processed_datums_per_s": datums / wall,
        "skipped_seconds": t3 - t2,
        "skipped_datums_per_s": datums / (t3 - t2),
        "overhead_ms_per_datum": (wall * parallelism - command_seconds) / datums * 1000,
    }


def spawn_baseline(datums: int) -> float:
    t0 = time.perf_counter()
    for _ in range(datums):
        subprocess.run(["true"], check=True)
    return datums / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datums", type=int, default=2000)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    run(min(args.datums, 50), args.parallelism)  # warm-up
    runs = [run(args.datums, args.parallelism) for _ in range(args.repeat)]
    median = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in runs[0]}
    baseline = spawn_baseline(args.datums)
    result = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "datums": args.datums,
        "parallelism": args.parallelism,
        **{k: round(v, 3) for k, v in median.items()},
        "baseline_bare_spawn_per_s": round(baseline, 1),
        "ratio_processed_vs_bare_spawn": round(median["processed_datums_per_s"] / baseline, 3),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(f"{'figure':34} {'value':>12}")
    for key in (
        "processed_datums_per_s",
        "skipped_seconds",
        "skipped_datums_per_s",
        "overhead_ms_per_datum",
        "baseline_bare_spawn_per_s",
        "ratio_processed_vs_bare_spawn",
    ):
        print(f"{key:34} {result[key]:>12}")
    print(
        f"targets: processed >= 150/s: {'met' if median['processed_datums_per_s'] >= 150 else 'MISSED'}; "
        f"all-skipped < 2 s: {'met' if median['skipped_seconds'] < 2 else 'MISSED'}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
