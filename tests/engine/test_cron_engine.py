"""Cron inputs driven by ``pachlocal tick --until``: backfill, overwrite, @every, run cron."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import Pachlocal


def cron_spec(
    name: str, spec: str, *, overwrite: bool, start: str = "2024-05-01T00:00:00Z"
) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "transform": {
            "cmd": [
                "sh",
                "-c",
                "for t in /pfs/tick/*; do echo seen > /pfs/out/$(basename $t); done",
            ]
        },
        "input": {"cron": {"name": "tick", "spec": spec, "overwrite": overwrite, "start": start}},
    }


def tick_files(pl: Pachlocal, repo: str) -> list[str]:
    return sorted(pl.files(f"{repo}@master"))


def test_backfill_accumulates_ticks_one_commit_each(pl: Pachlocal, tmp_path: Path) -> None:
    pl(
        "create",
        "pipeline",
        "-f",
        pl.spec(tmp_path, cron_spec("hourly", "@hourly", overwrite=False)),
    )
    pl("tick", "--until", "2024-05-01T03:30:00Z")
    assert tick_files(pl, "hourly_tick") == [
        "/2024-05-01T01:00:00Z",
        "/2024-05-01T02:00:00Z",
        "/2024-05-01T03:00:00Z",
    ]
    user_commits = [c for c in pl("list", "commit", "hourly_tick", "--raw").json()]
    assert len(user_commits) == 3
    assert sorted(pl.files("hourly@master")) == tick_files(pl, "hourly_tick")
    newest = pl("list", "job", "-p", "hourly", "--raw").json()[0]
    assert (newest["processed"], newest["skipped"]) == (1, 2)

    # nothing is due again until the next tick; then only the missed ones are created
    pl("tick", "--until", "2024-05-01T03:59:59Z")
    assert len(pl("list", "commit", "hourly_tick", "--raw").json()) == 3
    pl("tick", "--until", "2024-05-01T05:00:00Z")
    assert tick_files(pl, "hourly_tick")[-2:] == ["/2024-05-01T04:00:00Z", "/2024-05-01T05:00:00Z"]


def test_overwrite_keeps_only_the_latest_tick(pl: Pachlocal, tmp_path: Path) -> None:
    spec = cron_spec("daily", "@every 12h", overwrite=True, start="2024-05-01T00:00:00Z")
    pl("create", "pipeline", "-f", pl.spec(tmp_path, spec))
    pl("tick", "--until", "2024-05-02T12:00:00Z")
    assert tick_files(pl, "daily_tick") == ["/2024-05-02T12:00:00Z"]
    assert len(pl("list", "commit", "daily_tick", "--raw").json()) == 3
    assert sorted(pl.files("daily@master")) == ["/2024-05-02T12:00:00Z"]
    # resuming after overwrite continues from the newest tick, not from start
    pl("tick", "--until", "2024-05-03T00:00:00Z")
    assert tick_files(pl, "daily_tick") == ["/2024-05-03T00:00:00Z"]
    assert len(pl("list", "commit", "daily_tick", "--raw").json()) == 4


def test_five_field_spec_and_run_cron(pl: Pachlocal, tmp_path: Path) -> None:
    pl(
        "create",
        "pipeline",
        "-f",
        pl.spec(tmp_path, cron_spec("even", "15 */2 * * *", overwrite=False)),
    )
    pl("tick", "--until", "2024-05-01T05:00:00Z")
    assert tick_files(pl, "even_tick") == [
        "/2024-05-01T00:15:00Z",
        "/2024-05-01T02:15:00Z",
        "/2024-05-01T04:15:00Z",
    ]
    pl("run", "cron", "even")
    assert len(tick_files(pl, "even_tick")) == 4


def test_never_fires_nothing_and_bad_specs_are_rejected(pl: Pachlocal, tmp_path: Path) -> None:
    pl("create", "pipeline", "-f", pl.spec(tmp_path, cron_spec("never", "@never", overwrite=False)))
    pl("tick", "--until", "2030-01-01T00:00:00Z")
    assert pl("list", "commit", "never_tick", "--raw").json() == []
    res = pl(
        "create",
        "pipeline",
        "-f",
        pl.spec(tmp_path, cron_spec("bad", "0 0 L * *", overwrite=False)),
        ok=False,
    )
    assert res.rc == 1 and "0 0 L * *" in res.err
    assert "bad" not in pl("list", "repo").out
