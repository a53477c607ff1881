"""The eigentrust and trust pipelines in-process: snapshots -> globaltrust (file, PostgreSQL) -> trust."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lensfeed import pg
from lensfeed.eigentrust import (
    OG_HANDLES,
    eigentrust,
    follow_edges,
    global_trust_frame,
    pretrust,
    rank_trust,
)
from lensfeed.schemas import FOLLOWERS, PROFILES
from lensrun.generate import generate_dataset, plan_exports
from pachlocal.spec import load_spec_documents, parse_pipeline_spec
from tests.conftest import Database
from tests.lens.entry_points import load_entry_point

ROOT = Path(__file__).resolve().parents[2]
START, END = datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 3, tzinfo=UTC)


@pytest.fixture(scope="module")
def dataset() -> dict[str, Any]:
    return generate_dataset(400, 5, START, END)


def write_snapshots(dataset: dict[str, Any], root: Path, until: datetime) -> None:
    """The ingest layout: ``<root>/<table>/dtime=<T>/<part>.parquet``, snapshots up to ``until``."""
    for obj in plan_exports(dataset, START, END, 1, 5, max_rows_per_object=300):
        if obj.table in (FOLLOWERS, PROFILES) and obj.export_time <= until:
            directory = root / obj.table / f"dtime={obj.export_time:%Y-%m-%dT%H:%M:%SZ}"
            directory.mkdir(parents=True, exist_ok=True)
            pq.write_table(obj.table_data, directory / Path(obj.name).name)


@pytest.fixture
def ingest(dataset: dict[str, Any], tmp_path: Path) -> Path:
    root = tmp_path / "ingest"
    write_snapshots(dataset, root, END)
    return root


def expected_globaltrust(dataset: dict[str, Any], day: date, handles=OG_HANDLES) -> pd.DataFrame:
    followers, profiles = dataset[FOLLOWERS].to_pandas(), dataset[PROFILES].to_pandas()
    graph = follow_edges(followers, profiles)
    result = eigentrust(graph, pretrust(graph.peers, profiles, handles))
    return global_trust_frame(graph.peers, result.scores, "followship", day)


def run_eigentrust(ingest: Path, out: Path) -> int:
    args = ["--followers", str(ingest), "--profiles", str(ingest), "--out", str(out)]
    return int(load_entry_point("eigentrust").main(args))


def run_trust(tmp_path: Path) -> pd.DataFrame:
    ticks = tmp_path / "tick"
    ticks.mkdir(exist_ok=True)
    (ticks / "2024-05-04T00:00:00Z").write_bytes(b"")
    out = tmp_path / "trust_out"
    assert load_entry_point("trust").main(["--tick-dir", str(ticks), "--out", str(out)]) == 0
    return pq.read_table(out / "trust.parquet").to_pandas()


# --- eigentrust without PostgreSQL ------------------------------------------------------


def test_eigentrust_reads_the_newest_snapshots(ingest, dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("GLOBALTRUST_WRITE", raising=False)
    monkeypatch.delenv("PRETRUST_HANDLES", raising=False)
    assert len(list((ingest / FOLLOWERS).glob("dtime=*"))) == 3
    assert run_eigentrust(ingest, tmp_path / "out") == 0
    table = pq.read_table(tmp_path / "out" / "globaltrust.parquet")
    assert table.schema == pa.schema(
        [
            ("strategy_name", pa.string()),
            ("i", pa.string()),
            ("v", pa.float64()),
            ("date", pa.date32()),
        ]
    )
    got = table.to_pandas()
    expected = expected_globaltrust(dataset, date(2024, 5, 3))
    pd.testing.assert_frame_equal(got, expected)
    assert got["v"].sum() == pytest.approx(1.0)
    og = got[
        got["i"].isin(dataset[PROFILES].to_pandas().query("handle in @OG_HANDLES")["profile_id"])
    ]
    assert len(og) == 10 and (og["v"] > 0.05).all()


def test_eigentrust_date_is_the_newest_follower_partition(dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("GLOBALTRUST_WRITE", raising=False)
    root = tmp_path / "ingest"
    write_snapshots(dataset, root, datetime(2024, 5, 2, tzinfo=UTC))
    assert run_eigentrust(root, tmp_path / "out") == 0
    got = pq.read_table(tmp_path / "out" / "globaltrust.parquet").to_pandas()
    assert set(got["date"]) == {date(2024, 5, 2)}
    assert not got.equals(expected_globaltrust(dataset, date(2024, 5, 2)))  # older graph


def test_pretrust_handles_override(ingest, dataset, tmp_path, monkeypatch):
    profiles = dataset[PROFILES].to_pandas()
    chosen = profiles[profiles["handle"].notna() & ~profiles["handle"].isin(OG_HANDLES)].iloc[0]
    monkeypatch.setenv("PRETRUST_HANDLES", f" {chosen['handle']} ,")
    monkeypatch.delenv("GLOBALTRUST_WRITE", raising=False)
    assert run_eigentrust(ingest, tmp_path / "out") == 0
    got = pq.read_table(tmp_path / "out" / "globaltrust.parquet").to_pandas()
    pd.testing.assert_frame_equal(
        got, expected_globaltrust(dataset, date(2024, 5, 3), [chosen["handle"]])
    )
    assert got["i"].iloc[0] == chosen["profile_id"] and got["v"].iloc[0] >= 0.5


def test_eigentrust_tolerance_knob(ingest, dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("EIGENTRUST_TOLERANCE", "1e-12")
    monkeypatch.delenv("GLOBALTRUST_WRITE", raising=False)
    assert run_eigentrust(ingest, tmp_path / "out") == 0
    got = pq.read_table(tmp_path / "out" / "globaltrust.parquet").to_pandas()
    default = expected_globaltrust(dataset, date(2024, 5, 3)).set_index("i")["v"]
    assert np.allclose(got.set_index("i")["v"].reindex(default.index), default, atol=1e-3)


def test_eigentrust_failures(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GLOBALTRUST_WRITE", "1")
    monkeypatch.delenv("PGSQL_URL", raising=False)
    assert run_eigentrust(tmp_path, tmp_path / "out") == 2
    assert "PGSQL_URL is not set" in capsys.readouterr().err
    monkeypatch.setenv("GLOBALTRUST_WRITE", "0")
    assert run_eigentrust(tmp_path, tmp_path / "out") == 1
    assert "no dtime= partition" in capsys.readouterr().err
    monkeypatch.setenv("EIGENTRUST_TOLERANCE", "tight")
    assert run_eigentrust(tmp_path, tmp_path / "out") == 2


def test_trust_requires_the_dsn(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PGSQL_URL", raising=False)
    args = ["--tick-dir", str(tmp_path), "--out", str(tmp_path / "out")]
    assert load_entry_point("trust").main(args) == 2
    assert "PGSQL_URL is not set" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "cmd"),
    [
        (
            "eigentrust",
            ["--followers", "/pfs/followers", "--profiles", "/pfs/profiles", "--out", "/pfs/out"],
        ),
        ("trust", ["--tick-dir", "/pfs/tick", "--out", "/pfs/out"]),
    ],
)
def test_specs_are_valid_and_match_the_entry_points(name, cmd):
    text = (ROOT / "specs" / f"{name}.pipeline.json").read_text()
    (doc,) = load_spec_documents(text, f"{name}.pipeline.json")
    spec = parse_pipeline_spec(doc)
    assert spec["pipeline"]["name"] == name
    assert spec["transform"]["cmd"] == ["python3", f"pipelines/{name}.py", *cmd]
    assert spec["transform"]["image"] == "ghcr.io/lens-feed/pipelines:0.1.0"
    assert spec["transform"]["secrets"] == [
        {"name": "lens-postgres", "key": "dsn", "envVar": "PGSQL_URL"}
    ]
    assert spec["datumTries"] == 2 and spec["description"]


def test_spec_inputs():
    def parsed(name: str) -> dict[str, Any]:
        text = (ROOT / "specs" / f"{name}.pipeline.json").read_text()
        return parse_pipeline_spec(load_spec_documents(text, name)[0])

    eigen = parsed("eigentrust")
    legs = [
        (leg["pfs"]["name"], leg["pfs"]["repo"], leg["pfs"]["glob"])
        for leg in eigen["input"]["cross"]
    ]
    assert sorted(legs) == [
        ("followers", "ingest", "/public_follower"),
        ("profiles", "ingest", "/public_profile"),
    ]
    assert eigen["transform"]["env"] == {"GLOBALTRUST_WRITE": "1"}
    # stored sorted by input name as written: the cron input counts as ""
    tick, scores = parsed("trust")["input"]["cross"]
    assert tick["cron"] == {
        "name": "tick",
        "spec": "@daily",
        "overwrite": True,
        "start": "2024-04-30T00:00:00Z",
        "repo": "trust_tick",
    }
    assert (scores["pfs"]["name"], scores["pfs"]["repo"], scores["pfs"]["glob"]) == (
        "scores",
        "eigentrust",
        "/",
    )


# --- with PostgreSQL ---------------------------------------------------------------------


@pytest.fixture
def conn(pg_db: Database, monkeypatch) -> Iterator[psycopg.Connection[Any]]:
    connection = pg.connect(pg_db.dsn)
    for table in (pg.FEED, pg.FEED_RUNS, pg.GLOBALTRUST):
        connection.execute(f"DROP TABLE IF EXISTS {table}")
    monkeypatch.setenv("PGSQL_URL", pg_db.dsn)
    monkeypatch.delenv("TRUST_STRATEGY", raising=False)
    monkeypatch.delenv("PRETRUST_HANDLES", raising=False)
    yield connection
    connection.close()


def globaltrust_rows(conn: psycopg.Connection[Any]) -> pd.DataFrame:
    rows = conn.execute(
        'SELECT strategy_name, i, v, date FROM globaltrust ORDER BY date, v DESC, i COLLATE "C"'
    ).fetchall()
    return pd.DataFrame(rows, columns=["strategy_name", "i", "v", "date"])


@pytest.mark.integration
def test_eigentrust_writes_postgres_and_trust_ranks_it(
    ingest, dataset, tmp_path, monkeypatch, conn
):
    monkeypatch.setenv("GLOBALTRUST_WRITE", "1")
    older = tmp_path / "older"
    write_snapshots(dataset, older, datetime(2024, 5, 2, tzinfo=UTC))
    assert run_eigentrust(older, tmp_path / "out_old") == 0
    assert run_eigentrust(ingest, tmp_path / "out") == 0
    assert run_eigentrust(ingest, tmp_path / "out") == 0  # a rerun replaces, never duplicates

    old_file = pq.read_table(tmp_path / "out_old" / "globaltrust.parquet").to_pandas()
    new_file = pq.read_table(tmp_path / "out" / "globaltrust.parquet").to_pandas()
    pd.testing.assert_frame_equal(
        globaltrust_rows(conn), pd.concat([old_file, new_file], ignore_index=True)
    )

    trust = run_trust(tmp_path)
    expected = rank_trust(new_file)[["strategy_name", "i", "v", "rank", "date"]]
    pd.testing.assert_frame_equal(trust, expected)
    assert trust["rank"].dtype == np.int64 and set(trust["date"]) == {date(2024, 5, 3)}


@pytest.mark.integration
def test_trust_of_an_empty_table_is_an_empty_file(tmp_path, conn):
    trust = run_trust(tmp_path)
    assert trust.empty
    schema = pq.read_schema(tmp_path / "trust_out" / "trust.parquet")
    assert schema == pa.schema(
        [
            ("strategy_name", pa.string()),
            ("i", pa.string()),
            ("v", pa.float64()),
            ("rank", pa.int64()),
            ("date", pa.date32()),
        ]
    )


@pytest.mark.integration
def test_trust_strategy_knob(tmp_path, monkeypatch, conn):
    pg.ensure_schema(conn)
    frame = pd.DataFrame(
        {
            "strategy_name": "influencer",
            "i": ["0x02", "0x01"],
            "v": [0.5, 0.5],
            "date": date(2024, 5, 9),
        }
    )
    pg.replace_globaltrust(conn, frame)
    monkeypatch.setenv("TRUST_STRATEGY", "influencer")
    trust = run_trust(tmp_path)
    assert trust[["i", "rank"]].values.tolist() == [["0x01", 1], ["0x02", 2]]
    monkeypatch.setenv("TRUST_STRATEGY", "x'; DROP TABLE globaltrust; --")
    args = ["--tick-dir", str(tmp_path / "tick"), "--out", str(tmp_path / "o2")]
    assert load_entry_point("trust").main(args) == 2
