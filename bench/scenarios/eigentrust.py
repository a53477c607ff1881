"""``eigentrust``: graph building from edge arrays plus
:func:`lensfeed.eigentrust.eigentrust`, against a networkx ``DiGraph`` and
``pagerank``; scores compared."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench import baselines
from bench.harness import paired, row
from lensfeed import eigentrust as et


def follow_arrays(
    edges: int, profiles: int, rng: np.random.Generator
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Raw follow edges: 70 % of profiles follow, popularity skewed; no self-follow, some duplicates."""
    followers = rng.permutation(profiles)[: max(int(profiles * 0.7), 1)]
    src = followers[rng.integers(0, len(followers), edges)]
    popular = rng.permutation(profiles)
    dst = popular[np.minimum((profiles * rng.random(edges) ** 2.5).astype(np.int64), profiles - 1)]
    keep = src != dst
    return src[keep].astype(np.int64), dst[keep].astype(np.int64)


def graph_from_arrays(peers: list[str], src: Any, dst: Any) -> et.Graph:
    """The Graph of raw follow arrays: self-follows dropped, duplicates collapsed, sorted
    (the last step of :func:`lensfeed.eigentrust.follow_edges`)."""
    n = len(peers)
    keys = np.sort((src * n + dst)[src != dst])
    keys = keys[np.diff(keys, prepend=-1) != 0]
    return et.Graph(peers=peers, src=keys // n, dst=keys % n)


def bench_eigentrust(scale: dict[str, Any], repeat: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(4)
    n = scale["profiles"]
    src, dst = follow_arrays(scale["edges"], n, rng)
    peers = [f"0x{i:05x}" for i in range(n)]
    p = np.zeros(n)
    p[rng.choice(n, min(10, n), replace=False)] = 1.0
    p /= p.sum()

    def ours() -> et.EigenTrustResult:
        return et.eigentrust(graph_from_arrays(peers, src, dst), p)

    times = paired(
        {"ours": ours, "networkx": lambda: baselines.pagerank_networkx(n, src, dst, p)}, repeat
    )
    mine = ours()
    theirs = baselines.pagerank_networkx(n, src, dst, p)
    worst = float(np.abs(mine.scores - theirs).max())
    same = worst <= 1e-6
    extra = {
        "edges": len(src),
        "unique_edges": len(graph_from_arrays(peers, src, dst).src),
        "profiles": n,
        "iterations": mine.iterations,
        "max_abs_score_diff": worst,
        "scores_equal": same,
    }
    return [
        row(
            "eigentrust",
            f"EigenTrust {len(src):,} edges, {n:,} profiles",
            times["ours"],
            times["networkx"],
            speedup=True,
            target=5,
            extra=extra,
            ok=same,
        )
    ]
