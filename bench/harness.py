"""What every benchmark shares: paired timing of the sides of a comparison, one
result row per comparison, the machine it ran on, and the report (a table on
stdout and ``bench/results/<prefix><YYYY-MM-DD>.json``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# --- timing ---------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def paired(
    sides: dict[str, Callable[[], Any]],
    repeat: int,
    *,
    setup: Callable[[], None] | None = None,
    warmups: dict[str, Callable[[], Any]] | None = None,
) -> dict[str, list[float]]:
    """Warm each side up once, then run the sides in turn ``repeat`` times.

    ``setup`` runs (untimed) before every timed call; ``warmups`` replaces a
    side's warm-up call (a smaller input for a slow baseline).
    """
    for name, fn in sides.items():
        if setup:
            setup()
        (warmups or {}).get(name, fn)()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeat):
        for name, fn in sides.items():
            if setup:
                setup()
            seconds, _ = timed(fn)
            times[name].append(seconds)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def pair_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median of the per-repetition ratios ``numerator[k] / denominator[k]``."""
    return median([a / b for a, b in zip(numerator, denominator, strict=True)])


def row(
    key: str,
    what: str,
    ours: list[float],
    base: list[float],
    *,
    speedup: bool,
    target: float,
    extra: dict[str, Any] | None = None,
    ok: bool = True,
) -> dict[str, Any]:
    """One result: ``speedup`` rows compare base/ours (>= target), others ours/base (<= target)."""
    if speedup:
        ratio = pair_ratio(base, ours)
        met = ratio >= target
        label = f"base/ours >= {target:g}"
    else:
        ratio = pair_ratio(ours, base)
        met = ratio <= target
        label = f"ours/base <= {target:g}"
    return {
        "key": key,
        "what": what,
        "ours_s": round(median(ours), 4),
        "baseline_s": round(median(base), 4),
        "ours_runs_s": [round(t, 4) for t in ours],
        "baseline_runs_s": [round(t, 4) for t in base],
        "ratio": round(ratio, 3),
        "target": label,
        "met": bool(met and ok),
        **(extra or {}),
    }


# --- reporting ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    memory_gib = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "cpu": cpu,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def print_table(results: list[dict[str, Any]]) -> None:
    headers = ("what", "ours", "baseline", "ratio", "target", "met")
    lines = [
        (
            r["what"],
            f"{r['ours_s']:.3f} s",
            "-" if r["baseline_s"] is None else f"{r['baseline_s']:.3f} s",
            "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
            r["target"],
            "met" if r["met"] else "MISSED",
        )
        for r in results
    ]
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(headers)]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for x in lines:
        print(" | ".join(v.ljust(w) for v, w in zip(x, widths, strict=True)))


_TABLE_KEYS = ("key", "what", "ours_s", "baseline_s", "ours_runs_s", "baseline_runs_s",
               "ratio", "target", "met")  # fmt: skip


def report(
    results: list[dict[str, Any]], out: Path | None, prefix: str, header: dict[str, Any]
) -> Path:
    """Print the table and each row's other figures; write ``header`` plus the results
    to ``out`` (default ``bench/results/<prefix><YYYY-MM-DD>.json``)."""
    print()
    print_table(results)
    for r in results:
        print(f"  {r['what']}: { {k: v for k, v in r.items() if k not in _TABLE_KEYS} }")
    when = datetime.now(UTC)
    out = out or ROOT / "bench" / "results" / f"{prefix}{when:%Y-%m-%d}.json"
    document = {
        "when": when.isoformat(timespec="seconds"),
        **header,
        "results": {r["key"]: {k: v for k, v in r.items() if k != "key"} for r in results},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {out}")
    return out
