"""Fixtures shared by the Lens test modules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import psycopg
import pytest

from lensfeed import pg
from lensfeed.booster import LoadedModel, load_model
from lensfeed.gcs import GcsExportStore
from lensfeed.model import fit
from lensrun.emulator import EmulatorServer
from lensrun.generate import ExportObject, generate_dataset, plan_exports
from pachlocal.cli import main
from tests.conftest import Database
from tests.lens.faults_engine import ROOT, Cli
from tests.lens.feature_rows import post, posts_frame, stat, stats_frame, trust_frame
from tests.lens.ingest_objects import END, START
from tests.lens.test_model import PRODUCTION_MODEL, SMALL, synthetic_features


@pytest.fixture(scope="session")
def session(duckdb_session: Any) -> Any:
    """The shared DuckDB session (:func:`tests.conftest.duckdb_session`), as the frame
    tests name it."""
    return duckdb_session


@pytest.fixture
def tiny(session: Any) -> tuple[Any, Any, Any]:
    """Five posts, their stats and three trust scores: the tiny whole-frame case."""
    posts = posts_frame(
        session,
        [
            post("0x01-0x01", "2024-05-01 00:00:00"),  # age 9 exactly
            # one second old, but of the day before: 1 calendar day, as datediff counts
            post("0x01-0x02", "2024-05-09 23:59:59", related_post="0x02-0x01", has_error=None),
            post(
                "0x01-0x03",
                "2024-05-05 12:00:00",  # 4.5 days: 5 calendar days
                has_error=True,
                related_comment="0x02-0x05",
                content_warning="NSFW",
                language=None,
            ),
            post("0x02-0x01", "2024-05-08 00:00:00"),  # age 2, no stats at all
            post("0x03-0x01", "2024-05-10 00:00:00"),  # age 0, every maximum is zero
        ],
    )
    stats = stats_frame(
        session,
        [
            stat("0x01-0x01", collects=2, mirrors=4, comments=1, upvotes=10, downvotes=0),
            stat("0x01-0x03", collects=0, mirrors=1, comments=3, upvotes=1, downvotes=2),
            stat("0x03-0x01"),
            stat("0x09-0x01", collects=99, mirrors=99),  # stats of an unknown post
        ],
    )
    trust = trust_frame(session, [("0x01", 0.6, 1), ("0x03", 0.1, 2), ("0x77", 0.3, 3)])
    return posts, stats, trust


@pytest.fixture
def conn(pg_db: Database) -> Iterator[psycopg.Connection[Any]]:
    """A connection to this module's database, the feed tables created anew and empty."""
    connection = pg.connect(pg_db.dsn)
    for table in (pg.FEED, pg.FEED_RUNS, pg.GLOBALTRUST):
        connection.execute(f"DROP TABLE IF EXISTS {table}")
    pg.ensure_schema(connection)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def emulator(gcs_emulator: EmulatorServer) -> EmulatorServer:
    """The shared GCS emulator (:func:`tests.conftest.gcs_emulator`), bucket ``lens-exports``."""
    return gcs_emulator


@pytest.fixture
def bucket(emulator: EmulatorServer) -> Any:
    """The emulator's bucket, emptied."""
    emulator.wipe()
    return emulator.client().bucket(emulator.bucket)


@pytest.fixture
def store(emulator: EmulatorServer, bucket: Any) -> GcsExportStore:
    """The emptied bucket as ingest reads it, with quick retries."""
    return GcsExportStore(emulator.client(), emulator.bucket, attempts=2, base_delay=0.001)


@pytest.fixture(scope="module")
def exports() -> list[ExportObject]:
    """Six hours of generated exports, snapshots every two hours."""
    dataset = generate_dataset(300, 7, START, END)
    return plan_exports(dataset, START, END, 2, 7, snapshot_every_hours=2)


@pytest.fixture(scope="session")
def own_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on synthetic features, as the model stage trains one."""
    booster, _ = fit(synthetic_features(1500, seed=11), SMALL)
    path = tmp_path_factory.mktemp("model") / "model.json"
    path.write_bytes(bytes(booster.save_raw("json")))
    return path


@pytest.fixture(scope="session")
def production_features() -> pd.DataFrame:
    """~1000 posts at the production scale (108k peers, rank bands 1000 / 50000)."""
    return synthetic_features(1000, seed=5, n_peers=108_000, top_rank=1000, no_rank=50_000)


@pytest.fixture(scope="session")
def production_model() -> LoadedModel:
    """The 2023 production model (skips without the fixture file)."""
    if not PRODUCTION_MODEL.exists():
        pytest.skip(f"fixture {PRODUCTION_MODEL} absent (../shared)")
    return load_model(PRODUCTION_MODEL, nthread=2)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh pachlocal state directory, the code root this checkout."""
    state = tmp_path / "state"
    monkeypatch.setenv("PACHLOCAL_HOME", str(state))
    monkeypatch.setenv("PACHLOCAL_CODE_ROOT", str(ROOT))
    return state


@pytest.fixture
def pachlocal(home: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``pachlocal ARGS``: its stdout (JSON decoded with ``--raw``); a non-zero exit fails."""

    def run(*args: str) -> Any:
        capsys.readouterr()
        code = main(["-q", *args])
        out = capsys.readouterr()
        assert code == 0, f"pachlocal {' '.join(args)}: exit {code}: {out.err}"
        return json.loads(out.out) if "--raw" in args else out.out

    return run
