"""Pachyderm's cron pipelines, from the cron concept page's two examples
(doc/docs/2.3.x/concepts/pipeline-concepts/pipeline/cron.md in pachyderm/pachyderm,
"Every 60 Seconds" and "Daily with Overwrites") and the pipeline spec's ``input.cron``
(doc/docs/2.3.x/reference/pipeline-spec.md, "Cron Input"): pachd creates the repo
``<pipeline>_<input>`` and commits, per tick, one empty file named by the tick's
RFC 3339 time; ``overwrite`` replaces the previous tick file. Ticks are driven with
``pachlocal tick --until`` from a fixed ``start``."""

from __future__ import annotations

from typing import Any

from tests.engine.conftest import Pachlocal

from .support import create_pipeline, job_counts

# the stand-in for a periodic query: one output per tick file in the datum
QUERY = (
    'for t in /pfs/tick/*; do echo "rows at $(basename $t)" > /pfs/out/$(basename $t).json; done'
)


def cron_spec(spec: str, **options: Any) -> dict[str, Any]:
    """A pipeline named as in the cron page's figure (repo ``pipeline_tick``)."""
    return {
        "pipeline": {"name": "pipeline"},
        "input": {
            "cron": {"name": "tick", "spec": spec, "start": "2024-05-01T00:00:00Z", **options}
        },
        "transform": {"cmd": ["sh", "-c", QUERY]},
    }


def commits(pl: Pachlocal, repo: str) -> int:
    return len(pl("list", "commit", repo, "--raw").json())


def test_every_60_seconds_accumulates_tick_files(pl: Pachlocal) -> None:
    """ "By default, each cron trigger adds a new tick file to the cron input repository,
    accumulating more datums over time": one commit and one job per tick, each job
    processing only the new tick."""
    create_pipeline(pl, cron_spec("@every 60s"))
    pl("tick", "--until", "2024-05-01T00:03:30Z")
    ticks = ["2024-05-01T00:01:00Z", "2024-05-01T00:02:00Z", "2024-05-01T00:03:00Z"]
    assert pl.files("pipeline_tick@master") == {f"/{t}": b"" for t in ticks}
    assert commits(pl, "pipeline_tick") == 3
    assert pl.files("pipeline@master") == {f"/{t}.json": f"rows at {t}\n".encode() for t in ticks}
    # the first job, at `create pipeline`, has no tick to process yet
    assert job_counts(pl, "pipeline") == [
        ("success", 0, 0, 0),
        ("success", 1, 0, 1),
        ("success", 1, 1, 2),
        ("success", 1, 2, 3),
    ]


def test_daily_with_overwrite_keeps_only_the_latest_tick(pl: Pachlocal) -> None:
    """ "You can set the overwrite flag to true to overwrite the timestamp file on each
    tick": the repo holds one file, the latest tick's, and the output follows it."""
    create_pipeline(pl, cron_spec("@daily", overwrite=True))
    pl("tick", "--until", "2024-05-03T12:00:00Z")
    assert pl.files("pipeline_tick@master") == {"/2024-05-03T00:00:00Z": b""}
    assert commits(pl, "pipeline_tick") == 2
    assert pl.files("pipeline@master") == {
        "/2024-05-03T00:00:00Z.json": b"rows at 2024-05-03T00:00:00Z\n"
    }
    pl("tick", "--until", "2024-05-04T00:00:00Z")
    assert pl.files("pipeline_tick@master") == {"/2024-05-04T00:00:00Z": b""}
    assert pl.files("pipeline@master") == {
        "/2024-05-04T00:00:00Z.json": b"rows at 2024-05-04T00:00:00Z\n"
    }
