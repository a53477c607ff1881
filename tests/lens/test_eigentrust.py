"""Tests for lensfeed.eigentrust: follow graph, pretrust, EigenTrust, globaltrust rows."""

import datetime as dt

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from lensfeed.eigentrust import (
    ALPHA,
    EPSILON,
    FLAT_TAIL,
    OG_HANDLES,
    Graph,
    eigentrust,
    follow_edges,
    global_trust_frame,
    pretrust,
    rank_trust,
)

DAY = dt.date(2023, 5, 22)


@pytest.fixture
def profiles() -> pd.DataFrame:
    # Wallet 0xaa owns two profiles (spelt in two cases); 0x05 is burnt.
    return pd.DataFrame(
        {
            "profile_id": ["0x01", "0x02", "0x03", "0x04", "0x05"],
            "owned_by": ["0xAA", "0xaa", "0xbb", "0xcc", "0xdd"],
            "handle": ["a.lens", "b.lens", "c.lens", "d.lens", "e.lens"],
            "is_burnt": [False, False, False, False, True],
        }
    )


@pytest.fixture
def followers() -> pd.DataFrame:
    rows = [
        ("0xaa", "0x03"),  # two profiles -> 0x01->0x03, 0x02->0x03
        ("0xaa", "0x03"),  # duplicate row
        ("0xaa", "0x01"),  # 0x01->0x01 is a self-follow; 0x02->0x01 stays
        ("0xbb", "0x04"),
        ("0xee", "0x01"),  # wallet without a profile
        ("0xcc", "0x99"),  # unknown profile
        ("0xcc", "0x05"),  # burnt profile
        ("0xdd", "0x01"),  # owner of the burnt profile only
    ]
    return pd.DataFrame(rows, columns=["address", "follow_profile_id"])


def test_follow_edges_joins_wallets_to_profiles(followers, profiles):
    graph = follow_edges(followers, profiles)
    assert graph.peers == ["0x01", "0x02", "0x03", "0x04"]
    edges = list(zip(graph.src.tolist(), graph.dst.tolist(), strict=True))
    assert edges == [(0, 2), (1, 0), (1, 2), (2, 3)]
    assert graph.src.dtype == np.int64 and graph.dst.dtype == np.int64


def test_follow_edges_keeps_profiles_when_burnt_flag_absent(followers, profiles):
    graph = follow_edges(followers, profiles.drop(columns="is_burnt"))
    assert graph.peers == ["0x01", "0x02", "0x03", "0x04", "0x05"]
    edges = list(zip(graph.src.tolist(), graph.dst.tolist(), strict=True))
    assert edges == [(0, 2), (1, 0), (1, 2), (2, 3), (3, 4), (4, 0)]


@pytest.mark.parametrize(
    ("handles", "expected"),
    [
        (["b.lens", "d.lens", "nobody.lens"], [0.0, 0.5, 0.0, 0.5]),
        (["nobody.lens"], [0.25, 0.25, 0.25, 0.25]),
        (["e.lens"], [0.25, 0.25, 0.25, 0.25]),  # burnt: not a peer
        ([], [0.25, 0.25, 0.25, 0.25]),
    ],
)
def test_pretrust(profiles, handles, expected):
    p = pretrust(["0x01", "0x02", "0x03", "0x04"], profiles, handles)
    np.testing.assert_array_equal(p, np.array(expected))


def _networkx_fixed_point(graph: Graph, p: np.ndarray, alpha: float) -> np.ndarray:
    g = nx.DiGraph()
    g.add_nodes_from(range(len(graph.peers)))
    g.add_edges_from(zip(graph.src.tolist(), graph.dst.tolist(), strict=True), weight=1)
    prefs = dict(enumerate(p.tolist()))
    ranks = nx.pagerank(
        g, alpha=1 - alpha, personalization=prefs, dangling=prefs, tol=1e-14, max_iter=10000
    )
    return np.array([ranks[i] for i in range(len(graph.peers))])


def _random_graph(n: int, degree: float, dangling: int, seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    src = rng.integers(dangling, n, int(n * degree))  # peers < dangling follow nobody
    dst = rng.integers(0, n, src.size)
    keys = np.unique((src * n + dst)[src != dst])
    return Graph([f"0x{i:04x}" for i in range(n)], keys // n, keys % n)


@pytest.mark.parametrize("alpha", [0.5, 0.15])
def test_tight_fixed_point_matches_networkx_on_random_graph(alpha):
    graph = _random_graph(n=300, degree=4.0, dangling=30, seed=7)
    p = np.zeros(300)
    p[np.random.default_rng(1).choice(300, 10, replace=False)] = 0.1
    result = eigentrust(graph, p, alpha, tolerance=1e-13)
    assert result.converged
    assert np.abs(result.scores - _networkx_fixed_point(graph, p, alpha)).max() < 1e-9
    assert result.scores.sum() == pytest.approx(1.0, abs=1e-12)


def test_tight_fixed_point_matches_networkx_on_hand_graph():
    # 0 -> 1, 0 -> 2, 1 -> 2, 2 -> 0; 3 follows nobody and its row becomes p.
    graph = Graph(["a", "b", "c", "d"], np.array([0, 0, 1, 2]), np.array([1, 2, 2, 0]))
    p = np.array([0.5, 0.0, 0.0, 0.5])
    result = eigentrust(graph, p, tolerance=1e-13)
    assert np.abs(result.scores - _networkx_fixed_point(graph, p, 0.5)).max() < 1e-9
    assert result.converged and result.scores.sum() == pytest.approx(1.0, abs=1e-12)


def _preferential_graph(n: int, seed: int) -> Graph:
    # Peer i follows up to 5 earlier peers, favouring the oldest: scores are
    # well separated at the top.
    rng = np.random.default_rng(seed)
    src = np.repeat(np.arange(1, n), 5)
    dst = (rng.random(src.size) ** 3 * src).astype(np.int64)
    keys = np.unique(src * n + dst)
    return Graph([f"0x{i:04x}" for i in range(n)], keys // n, keys % n)


def test_default_rule_stops_earlier_with_the_same_top_ranking():
    graph = _preferential_graph(500, seed=3)
    p = np.full(500, 1 / 500)
    fast = eigentrust(graph, p)
    tight = eigentrust(graph, p, tolerance=1e-13)
    assert fast.converged and tight.converged
    assert fast.iterations < tight.iterations
    top = 20
    np.testing.assert_array_equal(
        np.argsort(-fast.scores, kind="stable")[:top],
        np.argsort(-tight.scores, kind="stable")[:top],
    )
    assert fast.scores.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("flat_tail", [0, 1, 3])
def test_flat_tail_needs_the_same_ranking_on_flat_tail_plus_one_iterations(flat_tail):
    # No edges: every row is p, t stays p, so the ranking never changes and
    # go-eigentrust stops after flat_tail + 1 iterations.
    graph = Graph(["a", "b", "c"], np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    result = eigentrust(graph, np.array([0.5, 0.3, 0.2]), flat_tail=flat_tail)
    assert (result.iterations, result.converged) == (flat_tail + 1, True)
    np.testing.assert_allclose(result.scores, [0.5, 0.3, 0.2], rtol=0, atol=1e-15)


def test_max_iterations_reports_not_converged():
    graph = _random_graph(n=50, degree=3.0, dangling=5, seed=2)
    result = eigentrust(graph, np.full(50, 0.02), tolerance=1e-300, max_iterations=5)
    assert (result.iterations, result.converged) == (5, False)


def test_og_pretrust_slice_gives_each_og_a_little_above_five_percent():
    # 10,000 profiles following ~30 others each with a popularity skew; each
    # of the 10 OGs is followed by ~20% of everyone. Pretrust alone gives an
    # OG 0.5 / 10; the follows add a little on top.
    rng = np.random.default_rng(11)
    n = 10_000
    ids = np.array([f"0x{i + 1:04x}" for i in range(n)], dtype=object)
    wallets = np.array([f"0x{i:040x}" for i in range(n)], dtype=object)
    handles = [f"user{i}.lens" for i in range(n)]
    profiles = pd.DataFrame({"profile_id": ids, "owned_by": wallets, "handle": handles})
    popularity = 1 / (rng.permutation(n) + 10.0)
    src = rng.integers(0, n, 30 * n)
    dst = rng.choice(n, size=src.size, p=popularity / popularity.sum())
    og_src, og_dst = np.nonzero(rng.random((n, 10)) < 0.2)
    follows = pd.DataFrame(
        {
            "address": wallets[np.concatenate([src, og_src])],
            "follow_profile_id": ids[np.concatenate([dst, og_dst])],
        }
    )
    graph = follow_edges(follows, profiles)
    result = eigentrust(graph, pretrust(graph.peers, profiles, handles[:10]))
    ranked = rank_trust(global_trust_frame(graph.peers, result.scores, "followship", DAY))
    top = ranked.head(10)
    assert sorted(top["i"]) == sorted(ids[:10])
    assert ((top["v"] > 0.05) & (top["v"] < 0.056)).all()
    assert ranked["v"].iloc[10] < 0.01
    assert ranked["v"].sum() == pytest.approx(1.0, abs=1e-12)


def test_global_trust_frame_keeps_non_zero_scores_sorted_with_ties():
    frame = global_trust_frame(
        ["0x0a", "0x02", "0x01", "0x03"], np.array([0.25, 0.25, 0.5, 0.0]), "followship", DAY
    )
    expected = pd.DataFrame(
        {
            "strategy_name": ["followship"] * 3,
            "i": ["0x01", "0x02", "0x0a"],
            "v": [0.5, 0.25, 0.25],
            "date": [DAY] * 3,
        }
    )
    pd.testing.assert_frame_equal(frame, expected)


def test_rank_trust_is_row_number_by_v_desc_then_i():
    frame = pd.DataFrame({"i": ["0x0b", "0x01", "0x0a", "0x02"], "v": [0.2, 0.1, 0.2, 0.5]})
    before = frame.copy()
    expected = pd.DataFrame(
        {"i": ["0x02", "0x0a", "0x0b", "0x01"], "v": [0.5, 0.2, 0.2, 0.1], "rank": np.arange(1, 5)}
    )
    pd.testing.assert_frame_equal(rank_trust(frame), expected)
    pd.testing.assert_frame_equal(frame, before)


@pytest.mark.parametrize("column", ["address", "follow_profile_id"])
def test_follow_edges_names_a_missing_follower_column(followers, profiles, column):
    with pytest.raises(KeyError, match=column):
        follow_edges(followers.drop(columns=column), profiles)


def test_missing_profile_and_frame_columns_are_named(followers, profiles):
    with pytest.raises(KeyError, match="owned_by"):
        follow_edges(followers, profiles.drop(columns="owned_by"))
    with pytest.raises(KeyError, match="handle"):
        pretrust(["0x01"], profiles.drop(columns="handle"), ["a.lens"])
    with pytest.raises(KeyError, match="v"):
        rank_trust(pd.DataFrame({"i": ["0x01"]}))


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5])
def test_alpha_outside_unit_interval_raises(alpha):
    graph = Graph(["a", "b"], np.array([0]), np.array([1]))
    with pytest.raises(ValueError, match="alpha"):
        eigentrust(graph, np.array([0.5, 0.5]), alpha)


def test_bad_pretrust_and_lengths_raise():
    graph = Graph(["a", "b"], np.array([0]), np.array([1]))
    with pytest.raises(ValueError, match="pretrust"):
        eigentrust(graph, np.array([1.0]))
    with pytest.raises(ValueError, match="pretrust"):
        eigentrust(graph, np.array([0.0, 0.0]))
    with pytest.raises(ValueError, match="scores"):
        global_trust_frame(["a"], np.array([0.5, 0.5]), "followship", DAY)


def _go_eigentrust_loop(n: int, edges: list[tuple[int, int]], p: list[float], flat_tail: int):
    """go-eigentrust's `basic.Compute` loop in plain Python, one peer at a time: rows of C
    are 1/out-degree (no peer here follows nobody), the exit test runs at the top of each
    iteration after the first, the ranking is the non-zero entries by value. Sums run in
    follower order, as a sparse product does, so tied peers stay tied to the bit."""
    degree = [sum(1 for s, _ in edges if s == i) for i in range(n)]
    followers = [sorted(s for s, d in edges if d == j) for j in range(n)]
    t, ranking, length, iteration = list(p), None, 0, 0
    while not (iteration >= 1 and length >= flat_tail):  # the L2 test with epsilon 1.0 holds
        sums = []
        for j in range(n):
            acc = 0.0
            for s in followers[j]:
                acc += (1.0 / degree[s]) * t[s]
            sums.append(acc)
        t = [0.5 * sums[j] + 0.5 * p[j] for j in range(n)]
        new = sorted((i for i in range(n) if t[i] != 0), key=lambda i: (-t[i], i))
        length, ranking = (length + 1, ranking) if new == ranking else (0, new)
        iteration += 1
    return np.array(t), iteration


def test_karate_club_matches_a_reference_computation_to_1e_9():
    """Zachary's karate club, each friendship a follow both ways, pretrust on the two
    leaders: the production settings (alpha 0.5, flat tail 2) stop at the reference's
    iteration with the reference's values, and the tight rule reaches the exact fixed point."""
    club = nx.karate_club_graph()
    n = club.number_of_nodes()
    pairs = np.array(list(club.edges()), dtype=np.int64)
    src, dst = (
        np.concatenate([pairs[:, 0], pairs[:, 1]]),
        np.concatenate([pairs[:, 1], pairs[:, 0]]),
    )
    order = np.lexsort((dst, src))
    graph = Graph([f"0x{i:02x}" for i in range(n)], src[order], dst[order])
    p = np.zeros(n)
    p[[0, 33]] = 0.5
    edges = list(zip(graph.src.tolist(), graph.dst.tolist(), strict=True))

    expected, iterations = _go_eigentrust_loop(n, edges, p.tolist(), flat_tail=2)
    result = eigentrust(graph, p)
    assert (result.iterations, result.converged) == (iterations, True)
    assert np.abs(result.scores - expected).max() < 1e-9

    dense = np.zeros((n, n))
    dense[graph.src, graph.dst] = 1.0
    rows = dense / dense.sum(axis=1, keepdims=True)
    fixed = np.linalg.solve(np.eye(n) - 0.5 * rows.T, 0.5 * p)
    tight = eigentrust(graph, p, tolerance=1e-14)
    assert np.abs(tight.scores - fixed).max() < 1e-9
    assert np.argmax(tight.scores) in (0, 33) and tight.scores.sum() == pytest.approx(
        1.0, abs=1e-12
    )


def test_the_defaults_are_the_originals_settings():
    """ts-lens asked go-eigentrust for alpha 0.5, epsilon 1.0 and flatTail 2, with its 10 OGs."""
    assert (ALPHA, EPSILON, FLAT_TAIL) == (0.5, 1.0, 2)
    assert len(set(OG_HANDLES)) == 10 and "stani.lens" in OG_HANDLES
    graph = _preferential_graph(200, seed=5)
    p = np.full(200, 1 / 200)
    assert eigentrust(graph, p).iterations == eigentrust(graph, p, flat_tail=2).iterations
