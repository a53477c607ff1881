"""Pachyderm's word_count example (examples/word_count): ``urls`` -> ``scraper`` (glob
``/*``) -> ``map`` (glob ``/*/*``, one datum per page) -> ``reduce`` (glob ``/``).
``wget`` is replaced by ``programs/fetch.py`` (offline pages) and the image's ``app``
(map.go) by ``programs/word_map.py``; the reduce pipeline is the example's own shell."""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine.conftest import Pachlocal

from .support import create_pipeline, job_counts, put_file


def scraper_spec() -> dict[str, Any]:
    """pipelines/scraper.pipeline.json, with ``fetch.py`` for ``wget`` and without the
    ``apt-get`` line that installs wget."""
    return {
        "pipeline": {"name": "scraper"},
        "description": "A pipeline that pulls content from a specified Internet source.",
        "transform": {
            "cmd": ["bash"],
            "stdin": [
                "FILES=/pfs/urls/*",
                "for f in $FILES",
                "do",
                "python3 fetch.py /pfs/out/$(basename $f) $(cat $f)",
                "done",
            ],
            "acceptReturnCode": [4, 5, 6, 7, 8],
        },
        "input": {"pfs": {"repo": "urls", "glob": "/*"}},
    }


def map_spec() -> dict[str, Any]:
    """pipelines/map.pipeline.json; ``app`` is the stand-in, same arguments."""
    return {
        "pipeline": {"name": "map"},
        "description": "A pipeline that tokenizes scraped pages and appends counts of words "
        "to corresponding files.",
        "transform": {
            "image": "pachyderm/example-wordcount:2.0.3",
            "cmd": ["python3", "word_map.py", "/pfs/scraper/", "/pfs/out"],
        },
        "input": {"pfs": {"repo": "scraper", "glob": "/*/*"}},
    }


def reduce_spec() -> dict[str, Any]:
    """pipelines/reduce.pipeline.json, verbatim."""
    return {
        "pipeline": {"name": "reduce"},
        "description": "A pipeline that aggregates the total counts for each word.",
        "transform": {
            "cmd": ["sh"],
            "stdin": [
                "mkdir /tmp/out",
                "set -x",
                "FILES=/pfs/map/*/*",
                "for f in $FILES",
                "do",
                "out=`basename $f`",
                "cat $f >> /tmp/out/${out}",
                "done",
                "find /tmp/out/ -name '*' | while read count; do cat $count | awk '{ sum+=$1} "
                "END {print sum}' >/tmp/count; mv /tmp/count /pfs/out/`basename $count`; "
                "echo `basename $count`; done",
            ],
        },
        "input": {"pfs": {"repo": "map", "glob": "/"}},
    }


# programs/fetch.py's offline pages, as the scraper stores them
PAGES = {
    "/Wikipedia/Main_Page.html": b"<html>" + b"license " * 5 + b"liberated librarians</html>\n",
    "/Wikipedia/Pachyderm.html": b"<html>" + b"license " * 5 + b"library licenses</html>\n",
    "/Github/pachyderm.html": b"<html>" + b"license " * 23 + b"libraries</html>\n",
}
WIKIPEDIA = ["/Wikipedia/Main_Page.html", "/Wikipedia/Pachyderm.html"]

# words per scraped page
PAGE_WORDS = {
    "/Wikipedia/Main_Page.html": {"html": 2, "license": 5, "liberated": 1, "librarians": 1},
    "/Wikipedia/Pachyderm.html": {"html": 2, "license": 5, "library": 1, "licenses": 1},
    "/Github/pachyderm.html": {"html": 2, "license": 23, "libraries": 1},
}


def mapped(ids: dict[str, str]) -> dict[str, bytes]:
    """map's output: ``/<datum id>/<word>`` -> count, for the pages with a datum id."""
    return {
        f"/{ids[page]}/{word}": f"{n}\n".encode()
        for page, words in PAGE_WORDS.items()
        if page in ids
        for word, n in words.items()
    }


def datum_ids(pl: Pachlocal, pipeline: str) -> dict[str, str]:
    """Input path -> datum id, over the datums of the pipeline's newest job."""
    job = pl("list", "job", "-p", pipeline, "--raw").json()[0]["id"]
    rows = pl("list", "datum", f"{pipeline}@{job}", "--raw").json()
    return {d["inputs"][0]["path"]: d["datum"] for d in rows}


def start_word_count(pl: Pachlocal) -> None:
    """README step 1: `urls` with the Wikipedia file, then the three pipelines."""
    pl("create", "repo", "urls")
    wikipedia = (
        b"https://en.wikipedia.org/wiki/Main_Page\nhttps://en.wikipedia.org/wiki/Pachyderm\n"
    )
    put_file(pl, "urls@master:/Wikipedia", wikipedia)
    for spec in (scraper_spec(), map_spec(), reduce_spec()):
        create_pipeline(pl, spec)


@pytest.mark.usefixtures("isolated_datums")
def test_word_count_map_and_reduce(pl: Pachlocal) -> None:
    """The scraper writes one directory per urls file and one page per URL; map writes
    one count file per word under each page's datum id; reduce sums them per word."""
    start_word_count(pl)
    # README: `pachctl list file scraper@master:/Wikipedia`
    assert pl.files("scraper@master") == {p: PAGES[p] for p in WIKIPEDIA}
    ids = datum_ids(pl, "map")
    assert sorted(ids) == WIKIPEDIA
    # map.go writes <datum id>/<word>; the README's flat `/license  4B` "5\n5\n" listing
    # is the 1.x layout, where datums appended to one file
    assert pl.files("map@master") == mapped(ids)
    assert job_counts(pl, "map") == [("success", 2, 0, 2)]
    # README: `get file reduce@master:/license` -> 10; /liberated, /librarians, /library,
    # /licenses 2B. `/out` is the reduce script's own: `find /tmp/out/` lists the folder
    # itself, whose empty sum it moves to /pfs/out/out
    assert pl.files("reduce@master") == {
        "/html": b"4\n",
        "/liberated": b"1\n",
        "/librarians": b"1\n",
        "/library": b"1\n",
        "/license": b"10\n",
        "/licenses": b"1\n",
        "/out": b"\n",
    }


@pytest.mark.usefixtures("isolated_datums")
def test_a_new_site_is_scraped_and_counted_alone(pl: Pachlocal) -> None:
    """README section 4: adding the Github file scrapes only that site (Wikipedia is
    not scraped again), maps only its page, and the totals take its words in."""
    start_word_count(pl)
    put_file(pl, "urls@master:/Github", b"https://github.com/pachyderm/pachyderm")
    # README: `pachctl list file scraper@master` -> /Github, /Wikipedia
    assert pl.files("scraper@master") == PAGES
    assert job_counts(pl, "scraper") == [("success", 1, 0, 1), ("success", 1, 1, 2)]
    assert job_counts(pl, "map") == [("success", 2, 0, 2), ("success", 1, 2, 3)]
    ids = datum_ids(pl, "map")
    assert len(ids) == 3
    # README: `get file map@master:/license` -> 23, 5, 5 (one count per page)
    assert pl.files("map@master") == mapped(ids)
    # README: `get file reduce@master:/license` -> 33 (23+5+5); /libraries appears
    assert pl.files("reduce@master") == {
        "/html": b"6\n",
        "/liberated": b"1\n",
        "/librarians": b"1\n",
        "/libraries": b"1\n",
        "/library": b"1\n",
        "/license": b"33\n",
        "/licenses": b"1\n",
        "/out": b"\n",
    }
