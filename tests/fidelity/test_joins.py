"""Pachyderm's joins example (examples/joins): ``stores`` joined with ``purchases``
(inner) or ``returns`` (outer, three ways) on the STOREID in the file names, each
followed by a reduce pipeline that concatenates one file per zip code. The image's
``inner/main.py`` and ``outer/main.py`` are replaced by ``programs/by_zipcode.py``;
the reduce pipelines are the example's own shell."""

from __future__ import annotations

from typing import Any

from tests.engine.conftest import Pachlocal

from .support import (
    PURCHASES,
    REDUCE_STDIN,
    RETURNS,
    STORES,
    Files,
    create_pipeline,
    job_counts,
    load_retail,
)


def join_spec(name: str, orders: str, kind: str, outer: tuple[bool, bool] | None) -> dict[str, Any]:
    """pipelines/inner/inner_join.pipeline.json, or pipelines/outer/outer_join.pipeline.json
    with ``outerJoin`` set on (stores, returns) as in the README's three cases."""
    sides = []
    for i, (repo, glob) in enumerate(
        (("stores", "/STOREID(*).txt"), (orders, "/*_STOREID(*).txt"))
    ):
        pfs: dict[str, Any] = {"repo": repo, "branch": "master", "glob": glob, "joinOn": "$1"}
        if outer is not None:
            pfs["outerJoin"] = outer[i]
        sides.append({"pfs": pfs})
    return {
        "pipeline": {"name": name},
        "description": f"A pipeline that lists all {orders} by zipcode.",
        "input": {"join": sides},
        "transform": {
            "cmd": ["python", "by_zipcode.py", kind, "/pfs/stores", f"/pfs/{orders}", "/pfs/out"],
            "image": "pachyderm/example-joins-inner-outer:2.1.0",
        },
    }


def reduce_spec(name: str, repo: str) -> dict[str, Any]:
    """pipelines/{inner,outer}/reduce_*.pipeline.json, verbatim."""
    return {
        "pipeline": {"name": name},
        "description": "A pipeline that consolidates all purchases by zipcode in one file.",
        "input": {"pfs": {"repo": repo, "branch": "master", "glob": "/*"}},
        "transform": {"cmd": ["bash"], "stdin": [s.format(repo=repo) for s in REDUCE_STDIN]},
    }


def store_line(kind: str, n: int) -> bytes:
    store = STORES[f"/STOREID{n}.txt"].decode()
    name = store.split('"name":"')[1].split('"')[0]
    return f"\n{kind} at store: {n} - {name} \n".encode()


def sizes(files: Files) -> dict[str, int]:
    return {path: len(data) for path, data in files.items()}


def purchase(order: str, store: int) -> bytes:
    return store_line("Purchase", store) + PURCHASES[f"/{order}_STOREID{store}.txt"]


def ret(order: str, store: int) -> bytes:
    return store_line("Return", store) + RETURNS[f"/{order}_STOREID{store}.txt"]


UNKNOWN = b"\nThis return store does not exist \n" + RETURNS["/ORDERW261452_STOREID0.txt"]


def test_inner_join_lists_purchases_by_zipcode(pl: Pachlocal) -> None:
    """Inner join: one datum per purchase with a matching store (6; STOREID4 has none),
    one file per datum under its store's zip code, then one file per zip code."""
    load_retail(pl, "stores", "purchases")
    create_pipeline(pl, join_spec("inner_join", "purchases", "Purchase", None))
    create_pipeline(pl, reduce_spec("reduce_inner", "inner_join"))
    # README "6 datums are created corresponding to the 6 purchases"
    assert job_counts(pl, "inner_join") == [("success", 6, 0, 6)]
    joined = pl.files("inner_join@master")
    assert joined == {
        "/02108/ORDERW078929_STOREID2.txt": purchase("ORDERW078929", 2),
        "/02108/ORDERW080520_STOREID1.txt": purchase("ORDERW080520", 1),
        "/02108/ORDERW080521_STOREID1.txt": purchase("ORDERW080521", 1),
        "/90210/ORDERW080231_STOREID5.txt": purchase("ORDERW080231", 5),
        "/90210/ORDERW080528_STOREID5.txt": purchase("ORDERW080528", 5),
        "/90210/ORDERW598471_STOREID3.txt": purchase("ORDERW598471", 3),
    }
    # examples/joins/README.md, "expected results for each zipcode" table
    assert sizes(joined) == {
        "/02108/ORDERW078929_STOREID2.txt": 104,
        "/02108/ORDERW080520_STOREID1.txt": 105,
        "/02108/ORDERW080521_STOREID1.txt": 105,
        "/90210/ORDERW080231_STOREID5.txt": 102,
        "/90210/ORDERW080528_STOREID5.txt": 102,
        "/90210/ORDERW598471_STOREID3.txt": 104,
    }
    # README: `pachctl list file reduce_inner@master` -> /02108.txt, /90210.txt, each with
    # 3 purchases (concatenated in the shell's glob order, by file name)
    assert pl.files("reduce_inner@master") == {
        "/02108.txt": b"".join(joined[p] for p in sorted(joined) if p.startswith("/02108/")),
        "/90210.txt": b"".join(joined[p] for p in sorted(joined) if p.startswith("/90210/")),
    }


def reduced_case1() -> Files:
    """README Case 1 (outer join on returns only): 02108.txt 103B, 90210.txt 200B,
    UNKNOWN.txt 99B (img/pachctl_list_file_outer_returns.png)."""
    return {
        "/02108.txt": ret("ORDERW080520", 1),
        "/90210.txt": ret("ORDERW080231", 5) + ret("ORDERW080528", 5),
        "/UNKNOWN.txt": UNKNOWN,
    }


def reduced_case2() -> Files:
    """README Case 2 (outer join on stores only): a 94107.txt appears; stores without a
    return contribute their separator line alone (img/pachctl_list_file_outer_stores.png:
    02108.txt 141B, 90210.txt 237B, 94107.txt 36B)."""
    return {
        "/02108.txt": ret("ORDERW080520", 1) + store_line("Return", 2),
        "/90210.txt": ret("ORDERW080231", 5) + ret("ORDERW080528", 5) + store_line("Return", 3),
        "/94107.txt": store_line("Return", 4),
    }


def check_case(pl: Pachlocal, datums: int, reduced: Files, readme_sizes: dict[str, int]) -> None:
    assert job_counts(pl, "outer_join")[-1] == ("success", datums, 0, datums)
    assert pl.files("reduce_outer@master") == reduced
    assert sizes(reduced) == readme_sizes


def test_outer_join_three_cases(pl: Pachlocal) -> None:
    """The README's three outer joins, each applied with ``update pipeline --reprocess``:
    unmatched returns land in UNKNOWN (case 1), unmatched stores get a file of their own
    (case 2), both (case 3); outputs of a previous case's datums are gone."""
    load_retail(pl, "stores", "returns")
    create_pipeline(pl, join_spec("outer_join", "returns", "Return", (False, True)))
    create_pipeline(pl, reduce_spec("reduce_outer", "outer_join"))
    # README Case 1: "all your 4 returns are showing in a datum"
    check_case(pl, 4, reduced_case1(), {"/02108.txt": 103, "/90210.txt": 200, "/UNKNOWN.txt": 99})
    assert pl.files("outer_join@master") == {
        "/02108/ORDERW080520_STOREID1.txt": ret("ORDERW080520", 1),
        "/90210/ORDERW080231_STOREID5.txt": ret("ORDERW080231", 5),
        "/90210/ORDERW080528_STOREID5.txt": ret("ORDERW080528", 5),
        "/UNKNOWN/ORDERW261452_STOREID0.txt": UNKNOWN,
    }

    # Case 2: every store is in a datum, the STOREID0 return in none
    case2 = join_spec("outer_join", "returns", "Return", (True, False))
    create_pipeline(pl, case2, "update", "--reprocess")
    check_case(pl, 6, reduced_case2(), {"/02108.txt": 141, "/90210.txt": 237, "/94107.txt": 36})
    case2_joined = {
        "/02108/ORDERW080520_STOREID1.txt": ret("ORDERW080520", 1),
        "/02108/STOREID2.txt": store_line("Return", 2),
        "/90210/ORDERW080231_STOREID5.txt": ret("ORDERW080231", 5),
        "/90210/ORDERW080528_STOREID5.txt": ret("ORDERW080528", 5),
        "/90210/STOREID3.txt": store_line("Return", 3),
        "/94107/STOREID4.txt": store_line("Return", 4),
    }
    assert pl.files("outer_join@master") == case2_joined

    # Case 3 (img/pachctl_list_file_full_outer.png): case 2's files plus UNKNOWN.txt 99B
    case3 = join_spec("outer_join", "returns", "Return", (True, True))
    create_pipeline(pl, case3, "update", "--reprocess")
    full = {**reduced_case2(), "/UNKNOWN.txt": UNKNOWN}
    check_case(
        pl, 7, full, {"/02108.txt": 141, "/90210.txt": 237, "/94107.txt": 36, "/UNKNOWN.txt": 99}
    )
    assert pl.files("outer_join@master") == {
        **case2_joined,
        "/UNKNOWN/ORDERW261452_STOREID0.txt": UNKNOWN,
    }
