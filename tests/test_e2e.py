"""The whole DAG on pachlocal at small scale, as ``make run`` runs it.

Generated exports -> GCS emulator -> ingest -> eigentrust (-> PostgreSQL
globaltrust) -> trust -> features (DuckDB) -> model -> predict -> feed ->
PostgreSQL ``feed``. Two independent runs with the same seed must produce a
byte-identical ``feed.csv``; the feed rows in PostgreSQL must equal it; a feed
row must trace back to the export object that delivered it.
"""

from __future__ import annotations

import contextlib
import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lensrun import lineage
from lensrun.demo import DemoConfig, run
from pachlocal.engine import Engine
from pachlocal.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POSTS = 600
TICKS = 2
PG_PASSWORD = "pw-e2e-7f3a9c2d51"  # ignored by the embedded server, carried like a real one


def feed_csv(home: Path) -> bytes:
    store = Store(home, readonly=True)
    try:
        commit = store.resolve("feed@master")
        return store.objects.read(store.manifest(commit)["/feed.csv"].hash)
    finally:
        store.close()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("run1") / "state"
    config = DemoConfig(home=home, posts=POSTS, ticks=TICKS, days=2, pg_password=PG_PASSWORD)
    output = io.StringIO()
    with contextlib.redirect_stderr(output), contextlib.redirect_stdout(output):
        assert run(config) == 0  # not quiet: its output is scanned for secrets below
    (home.parent / "run-output.txt").write_text(output.getvalue())
    return home


def test_no_secret_value_in_any_output_log_or_commit(first_run: Path) -> None:
    key = (first_run / "demo-service-account.json").read_bytes()
    values = [PG_PASSWORD.encode(), key]
    store = first_run / "secrets"
    assert sorted(p.stat().st_mode & 0o777 for p in store.iterdir()) == [0o600, 0o600]
    scanned = 0
    for path in first_run.rglob("*"):
        if not path.is_file() or store in path.parents or path.name == "demo-service-account.json":
            continue
        data = path.read_bytes()
        scanned += 1
        for value in values:
            assert value not in data, f"a secret value leaked into {path}"
    assert scanned > 50  # objects, manifests, logs, meta.db
    output = (first_run.parent / "run-output.txt").read_text()
    assert "Top of the feed" in output
    assert PG_PASSWORD not in output


def test_feed_rows_in_postgres_equal_feed_csv(first_run: Path) -> None:
    from lensrun.pgserver import EmbeddedPostgres

    rows = list(csv.DictReader(io.StringIO(feed_csv(first_run).decode())))
    assert rows, "the feed is not empty"
    with EmbeddedPostgres(first_run.with_name("state-services") / "pgdata") as server:
        in_db = lineage.top_of_feed(server.dsn, "ml-xgb-followship", 100_000)
    assert [(r["post_id"], float(r["v"])) for r in rows] == in_db


def test_a_feed_row_traces_back_to_its_export_object(first_run: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(feed_csv(first_run).decode())))
    store = Store(first_run, readonly=True)
    try:
        head = store.resolve("feed@master")
        objects = lineage.export_objects_for_post(store, "feed", head.id, rows[0]["post_id"])
        tree = lineage.describe(store, "feed", head.id)
    finally:
        store.close()
    assert len(objects) == 1
    assert objects[0].startswith("gs://lens-exports/lens/public_profile_post/")
    assert [line.split("@")[0].strip(" <-") for line in tree[:2]] == ["feed", "predict"]
    assert any("export objects:" in line for line in tree)


def test_every_tick_ran_every_pipeline_successfully(first_run: Path) -> None:
    with Engine(first_run, write=False) as engine:
        jobs = engine.jobs()
    assert {j["state"] for j in jobs} == {"success"}
    assert {j["pipeline"] for j in jobs} >= {
        "ingest",
        "eigentrust",
        "trust",
        "features",
        "model",
        "predict",
        "feed",
    }


def test_every_tick_predicts_and_pushes_a_feed(first_run: Path) -> None:
    """Each tick's jobs see what the tick before produced: every tick after the first
    predicts and commits a non-empty feed. The first tick's feed comes when the runner
    points the empty daily trigger branches at their sources (the deploy's bootstrap):
    without it the first model, hence the first feed, would wait for midnight."""
    with Engine(first_run, write=False) as engine:
        ticks = [j["id"] for j in reversed(engine.jobs("ingest")) if j["processed"]]
        assert len(ticks) == TICKS
        (first_model,) = [c for c in engine.store.list_commits("features") if c.origin == "ALIAS"]
        assert engine.jobs("predict", ticks[0])[0]["processed"] == 0  # no model yet
        for set_id in [first_model.id, *ticks[1:]]:
            (predict,) = engine.jobs("predict", set_id)
            assert (predict["state"], predict["processed"]) == ("success", 1), predict
            files = engine.store.manifest(engine.store.get_commit("feed", set_id))
            assert files["/feed.csv"].size > 0


def test_rerunning_the_same_ticks_changes_nothing(first_run: Path) -> None:
    with Engine(first_run) as engine:
        before = len(engine.store.list_commits())
        engine.run_pending()
        assert engine.tick_until(datetime(2024, 5, 1, TICKS, tzinfo=UTC)) == []
        assert len(engine.store.list_commits()) == before


def test_a_second_independent_run_gives_a_byte_identical_feed(
    first_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("run2") / "state"
    assert run(DemoConfig(home=home, posts=POSTS, ticks=TICKS, days=2, quiet=True)) == 0
    assert feed_csv(home) == feed_csv(first_run)
