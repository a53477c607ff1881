"""Helpers shared by the fidelity tests: loading data the way the examples' READMEs do,
creating pipelines from spec dicts, and the retail data set of the joins and group
examples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.engine.conftest import Pachlocal

Files = dict[str, bytes]


def _scratch(pl: Pachlocal, name: str) -> Path:
    path = pl.home.parent / "uploads" / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def put_file(pl: Pachlocal, target: str, data: bytes) -> None:
    """``pachctl put file <repo@branch:/path> -f <a local file holding data>``: one commit."""
    local = _scratch(pl, "file") / "data"
    local.write_bytes(data)
    pl("put", "file", target, "-f", str(local))


def put_tree(pl: Pachlocal, branch: str, files: Files) -> None:
    """``pachctl put file -r <repo@branch>:/ -f <dir>``: every file in one commit."""
    root = _scratch(pl, "tree")
    for path, data in files.items():
        local = root / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
    pl("put", "file", "-r", f"{branch}:/", "-f", str(root))


def create_pipeline(pl: Pachlocal, spec: dict[str, Any], verb: str = "create", *flags: str) -> None:
    """``pachctl create pipeline -f <name>.pipeline.json`` (or ``update``, with flags)."""
    specs = pl.home.parent / "specs"
    specs.mkdir(exist_ok=True)
    path = specs / f"{spec['pipeline']['name']}.pipeline.json"
    path.write_text(json.dumps(spec, indent=2))
    pl(verb, "pipeline", "-f", str(path), *flags)


def job_counts(pl: Pachlocal, pipeline: str) -> list[tuple[str, int, int, int]]:
    """(state, processed, skipped, total) of each job of a pipeline, oldest first."""
    rows = pl("list", "job", "-p", pipeline, "--raw").json()
    return [(j["state"], j["processed"], j["skipped"], j["total"]) for j in reversed(rows)]


def branch_heads(pl: Pachlocal, repo: str) -> dict[str, str]:
    """Branch name -> head commit id (``-`` for a branch without a head)."""
    return {b["branch"]: b["head"] for b in pl("list", "branch", repo, "--raw").json()}


# The retail data set of examples/joins and examples/group, as their Makefiles'
# `setup` / `setup-retail` targets create it (examples/joins/Makefile).
def _store(storeid: str, name: str, zipcode: str) -> bytes:
    address = f'"address":{{"zipcode":"{zipcode}","country":"US"}}'
    return f'{{"storeid":"{storeid}", "name":"{name}",{address}}}'.encode()


def _order(order: str, day: str, sku: str, qty: int, price: str) -> bytes:
    return f"ORDER_HEADER|{order}|{day}\nSKU|{sku}|QTY|{qty}|UNIT_PRICE|{price}\n".encode()


STORES: Files = {
    "/STOREID1.txt": _store("1", "washington st.", "02108"),
    "/STOREID2.txt": _store("2", "hollywood bvd.", "02108"),
    "/STOREID3.txt": _store("3", "beverly hills", "90210"),
    "/STOREID4.txt": _store("4", "mariposa st.", "94107"),
    "/STOREID5.txt": _store("5", "tremont st.", "90210"),
}
PURCHASES: Files = {
    "/ORDERW080520_STOREID1.txt": _order("W080520", "2020-10-10", "1001", 2, "100.00"),
    "/ORDERW080521_STOREID1.txt": _order("W080521", "2020-10-10", "2002", 1, "250.00"),
    "/ORDERW078929_STOREID2.txt": _order("W078929", "2020-10-10", "0615", 1, "75.00"),
    "/ORDERW598471_STOREID3.txt": _order("W598471", "2020-10-10", "1001", 3, "100.00"),
    "/ORDERW080231_STOREID5.txt": _order("W080231", "2020-10-10", "1001", 2, "100.00"),
    "/ORDERW080528_STOREID5.txt": _order("W080528", "2020-10-10", "2002", 1, "250.00"),
}
RETURNS: Files = {
    "/ORDERW080520_STOREID1.txt": _order("W080520", "2020-10-12", "1001", 1, "100.00"),
    "/ORDERW080231_STOREID5.txt": _order("W080231", "2020-10-10", "1001", 1, "100.00"),
    "/ORDERW080528_STOREID5.txt": _order("W080528", "2020-10-10", "2002", 1, "250.00"),
    "/ORDERW261452_STOREID0.txt": _order("W261452", "2020-10-10", "0246", 1, "50.00"),
}


def load_retail(pl: Pachlocal, *repos: str) -> None:
    """``make deploy``: create the named repos and put their files, one commit each."""
    data = {"stores": STORES, "purchases": PURCHASES, "returns": RETURNS}
    for repo in repos:
        pl("create", "repo", repo)
        put_tree(pl, f"{repo}@master", data[repo])


#: The joins and group examples' reduce step (their specs' ``stdin``): every file of a
#: datum's folder appended to ``/pfs/out/<folder>.txt``; ``{repo}`` is the input's name.
REDUCE_STDIN = [
    "set -x",
    "FILES=/pfs/{repo}/*/*",
    "for f in $FILES",
    "do",
    "directory=`dirname $f`",
    "out=`basename $directory`",
    "cat $f >> /pfs/out/${{out}}.txt",
    "done",
]
