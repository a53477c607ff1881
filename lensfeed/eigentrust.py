"""EigenTrust global trust over the Lens follow graph.

A re-implementation of Karma3Labs' go-eigentrust `basic.Compute` as used by
ts-lens for the `followship` strategy: peers are all live profiles, local trust
is 1 per profile-to-profile follow, each row normalised, a zero row replaced
by the pretrust vector. Pure functions: frames and arrays in, frames and arrays
out, no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]
import scipy.sparse as sp

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: The seed ("OG") handles of ts-lens' ``pretrustOGs`` while the production model
#: (2023-05-22) was trained and served: the list in force from 2023-05-08 to 2023-06-01.
OG_HANDLES: tuple[str, ...] = (
    "chriscomrie.lens",
    "christina.lens",
    "cristinaspinei.lens",
    "bradorbradley.lens",
    "blackdave.lens",
    "goodkrak.lens",
    "levychain.lens",
    "ryanfox.lens",
    "stani.lens",
    "jamesfinnerty.lens",
)
#: ts-lens' settings for the ``followship`` strategy (alpha) and its go-eigentrust
#: request (``epsilon: 1.0, flatTail: 2``). A flat tail of 2 means the ranking
#: compared equal to the previous iteration's twice in a row: the same ranking on
#: 3 consecutive iterations.
ALPHA = 0.5
EPSILON = 1.0
FLAT_TAIL = 2


@dataclass(frozen=True)
class Graph:
    """Follow graph: `peers[src[k]]` follows `peers[dst[k]]`; peers sorted by id string."""

    peers: list[str]
    src: IntArray
    dst: IntArray


@dataclass(frozen=True)
class EigenTrustResult:
    """Global trust scores (aligned with `Graph.peers`, summing to 1) and how they were reached."""

    scores: FloatArray
    iterations: int
    converged: bool


def _require(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{name} is missing column(s): {', '.join(missing)}")


def _lookup(values: pd.Series, vocab: pd.Index, *, lower: bool = False) -> IntArray:
    # Resolve each distinct value once (far fewer than rows); -1 = not found.
    codes, uniques = pd.factorize(values)
    keys = pd.Index(uniques).astype(str)
    if lower:
        # Wallet addresses are case-insensitive hex (EIP-55 only changes
        # case): the two tables must not disagree on a checksum.
        keys = keys.str.lower()
    positions = np.append(vocab.get_indexer(keys), -1).astype(np.int64)
    found: IntArray = positions[codes]
    return found


def follow_edges(followers: pd.DataFrame, profiles: pd.DataFrame) -> Graph:
    """Build the profile-to-profile follow graph.

    A follow row is a wallet following a profile; it becomes one edge from each
    profile the wallet owns (`public_profile.owned_by`). Self-follows, duplicate
    edges and edges to unknown profiles are dropped. Burnt profiles (`is_burnt`
    true, when the column is present) are not peers: the NFT no longer exists,
    so it neither gives nor receives trust, even though `owned_by` may still
    name its last owner.

    Args:
        followers: `public_follower` rows with `address`, `follow_profile_id`.
        profiles: `public_profile` rows with `profile_id`, `owned_by`
            (and optionally `is_burnt`).

    Returns:
        The Graph; edges sorted by (src, dst).
    """
    _require(followers, ("address", "follow_profile_id"), "followers")
    _require(profiles, ("profile_id", "owned_by"), "profiles")
    live = profiles
    if "is_burnt" in profiles.columns:
        live = profiles[~profiles["is_burnt"].fillna(False).astype(bool)]
    live = live[live["profile_id"].notna()]
    peers = pd.Index(np.unique(live["profile_id"].astype(str).to_numpy()))
    wallets = pd.Index(live["owned_by"].dropna().astype(str).str.lower().unique())
    owners = pd.DataFrame(
        {
            "wallet": _lookup(live["owned_by"], wallets, lower=True),
            "src": _lookup(live["profile_id"], peers),
        }
    )
    follows = pd.DataFrame(
        {
            "wallet": _lookup(followers["address"], wallets, lower=True),
            "dst": _lookup(followers["follow_profile_id"], peers),
        }
    )
    follows = follows[(follows["wallet"] >= 0) & (follows["dst"] >= 0)]
    pairs = follows.merge(owners[owners["wallet"] >= 0], on="wallet")
    src = pairs["src"].to_numpy(dtype=np.int64)
    dst = pairs["dst"].to_numpy(dtype=np.int64)
    # One int64 key per edge: sorting it orders edges by (src, dst) and puts
    # duplicates side by side (sort + diff; np.unique is much slower here).
    keys = np.sort((src * len(peers) + dst)[src != dst])
    keys = keys[np.diff(keys, prepend=-1) != 0]
    return Graph(peers=peers.tolist(), src=keys // len(peers), dst=keys % len(peers))


def pretrust(peers: Sequence[str], profiles: pd.DataFrame, og_handles: Sequence[str]) -> FloatArray:
    """Pretrust vector: uniform over the peers holding an OG handle.

    Args:
        peers: peer profile ids, as in `Graph.peers`.
        profiles: `public_profile` rows with `profile_id`, `handle`.
        og_handles: seed handles; those not found are ignored.

    Returns:
        A vector aligned with `peers` summing to 1; uniform over all peers when
        no OG handle is found (go-eigentrust canonicalises an empty pretrust so).
    """
    _require(profiles, ("profile_id", "handle"), "profiles")
    og_ids = profiles.loc[profiles["handle"].isin(list(og_handles)), "profile_id"].astype(str)
    mask: npt.NDArray[np.bool_] = np.isin(
        np.asarray(peers, dtype=object), og_ids.to_numpy(dtype=object)
    )
    weights = mask.astype(np.float64) if mask.any() else np.ones(len(peers), dtype=np.float64)
    return weights / float(weights.sum())


def _ranking(t: FloatArray) -> IntArray:
    # go-eigentrust ranks the non-zero entries by value; ties go to the lower
    # index here so that the ranking is deterministic (Go's sort is unstable).
    nonzero = np.flatnonzero(t)
    return nonzero[np.lexsort((nonzero, -t[nonzero]))].astype(np.int64)


def eigentrust(
    graph: Graph,
    p: FloatArray,
    alpha: float = ALPHA,
    *,
    tolerance: float | None = None,
    max_iterations: int = 1000,
    flat_tail: int = FLAT_TAIL,
    epsilon: float = EPSILON,
) -> EigenTrustResult:
    """Iterate `t = (1 - alpha) * C^T t + alpha * p` from `t0 = p`.

    Default stopping rule (go-eigentrust `Compute` with `WithFlatTail`): after
    each iteration rank the non-zero entries; stop once the ranking has compared
    equal to the previous iteration's `flat_tail` times in a row (go-eigentrust's
    `FlatTailStats.Length >= flatTail`: the same ranking on `flat_tail + 1`
    iterations) and the L2 change is <= `epsilon` (1.0, as ts-lens passes, makes
    that test vacuous in practice).
    With `tolerance`, stop instead once the L1 change is < `tolerance`.

    Args:
        graph: the follow graph; every edge has weight 1 before normalisation.
        p: pretrust aligned with `graph.peers`; non-negative, normalised here.
        alpha: pretrust weight, in (0, 1].
        tolerance: L1 threshold for a tight fixed point, or None.
        max_iterations: hard cap; `converged` is False when it is hit.
        flat_tail: consecutive iterations whose ranking must equal the previous one.
        epsilon: go-eigentrust's L2 threshold for the default rule.

    Returns:
        EigenTrustResult with scores summing to 1.
    """
    n = len(graph.peers)
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha={alpha} is outside (0, 1]")
    if n == 0:
        raise ValueError("empty graph: no peers")
    if max_iterations < 1 or flat_tail < 0 or epsilon <= 0 or (tolerance or 1) <= 0:
        raise ValueError("max_iterations, epsilon and tolerance must be positive, flat_tail >= 0")
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (n,) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(
            f"pretrust must be a non-negative vector of {n} entries with a positive sum"
        )
    p = p / p.sum()
    out_degree = np.bincount(graph.src, minlength=n).astype(np.float64)
    dangling = out_degree == 0
    # Build C^T directly: entry (dst, src) = 1 / outdegree(src), rows of C sum to 1.
    ct = sp.csr_matrix(
        (1.0 / out_degree[graph.src], (graph.dst, graph.src)), shape=(n, n), dtype=np.float64
    )
    t = p.copy()
    ranking = np.empty(0, dtype=np.int64)
    unchanged = 0
    for iteration in range(1, max_iterations + 1):
        # Zero rows of C stand for p: their mass goes out as a rank-1 term,
        # so C is never densified.
        t_next = (1 - alpha) * (ct @ t + t[dangling].sum() * p) + alpha * p
        delta = t_next - t
        t = t_next
        if tolerance is not None:
            if np.abs(delta).sum() < tolerance:
                return EigenTrustResult(t / t.sum(), iteration, True)
            continue
        new_ranking = _ranking(t)
        if np.array_equal(new_ranking, ranking):
            unchanged += 1
        else:
            ranking, unchanged = new_ranking, 0
        if unchanged >= flat_tail and float(np.linalg.norm(delta)) <= epsilon:
            return EigenTrustResult(t / t.sum(), iteration, True)
    return EigenTrustResult(t / t.sum(), max_iterations, False)


def global_trust_frame(
    peers: Sequence[str], scores: FloatArray, strategy: str, date: dt.date
) -> pd.DataFrame:
    """Rows for the `globaltrust` table, one per peer with a non-zero score.

    Args:
        peers: peer profile ids aligned with `scores`.
        scores: global trust scores.
        strategy: `strategy_name`, e.g. "followship".
        date: the computation date.

    Returns:
        Columns `strategy_name, i, v, date`, sorted by v desc then i asc.
    """
    if len(peers) != len(scores):
        raise ValueError(f"{len(peers)} peers but {len(scores)} scores")
    frame = pd.DataFrame(
        {
            "strategy_name": strategy,
            "i": pd.Series(peers, dtype=object),
            "v": np.asarray(scores, dtype=np.float64),
            "date": date,
        }
    )
    frame = frame[frame["v"] != 0]
    return frame.sort_values(["v", "i"], ascending=[False, True]).reset_index(drop=True)


def rank_trust(frame: pd.DataFrame) -> pd.DataFrame:
    """Add `rank = ROW_NUMBER() OVER (ORDER BY v DESC, i ASC)`.

    Args:
        frame: one strategy and date of `globaltrust`, with columns `i`, `v`.

    Returns:
        A new frame sorted by rank, with an int64 `rank` column from 1.
    """
    _require(frame, ("i", "v"), "frame")
    ranked = frame.sort_values(["v", "i"], ascending=[False, True]).reset_index(drop=True)
    return ranked.assign(rank=np.arange(1, len(ranked) + 1, dtype=np.int64))
