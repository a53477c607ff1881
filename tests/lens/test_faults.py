"""Reliability of the feed and ingest pipelines under faults, through pachlocal and the real specs.

Cases 1-3 create the real pipeline (``pachlocal create pipeline -f specs/<name>.pipeline.json``,
the CLI's ``main`` in process) with its secret made by ``create_secret.sh --local``, inject one
fault and check what an operator relies on: the job ends ``failure`` with a reason naming the
fault (job reason and logs), no commit holds partial output (a failed job's commit carries
exactly its parent's files), data already published is intact (whole frames) and a later run
recovers to exactly the expected result.

1. PostgreSQL SIGKILLed while a feed job is mid-``COPY`` inside its replace transaction.
2. PostgreSQL stopped before a feed job starts.
3. The GCS endpoint refusing connections when an ingest tick starts.
4. A malformed export corpus through the ingest entry point: one verdict per bad object in
   ``_rejected/<T>.json``, every good object of the same tick ingested, nothing written outside
   the output directory. (Kinds ``test_ingest`` already covers are not repeated.)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from lensfeed import gcs, pg
from lensfeed.feed import FeedParams, feed_csv, generate_feed, seed_from_bytes
from lensfeed.gcs import GcsExportStore, ObjectInfo, md5_base64, parquet_bytes
from lensfeed.ingest import MAX_NAME_BYTES, ingest_tick
from lensfeed.schemas import FOLLOWERS, MAX_STRING_BYTES, POSTS, PROFILES, STATS
from lensrun.emulator import EmulatorServer, upload_bytes, upload_exports
from lensrun.generate import ExportObject, generate_dataset, plan_exports
from lensrun.pgserver import EmbeddedPostgres
from pachlocal.cli import main
from pachlocal.store import Store
from tests.lens.entry_points import load_entry_point
from tests.lens.layouts import random_predictions

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FEED_SPEC = str(ROOT / "specs" / "feed.pipeline.json")
INGEST_SPEC = str(ROOT / "specs" / "ingest.pipeline.json")
STRATEGY = FeedParams().strategy_name
PG_PASSWORD = "pw-faults-5e1d0c9a"  # ignored by the embedded server, carried like a real one
HOLD_KEY = 0x46415554  # advisory lock that stops the feed's COPY mid-stream
START = datetime(2024, 5, 1, tzinfo=UTC)  # ingest's cron start
HOUR = timedelta(hours=1)
BUCKET = "lens-exports"
CORPUS_BUCKET = "lens-corpus"
# the bounded retries of lensfeed.pg.connect and GcsExportStore (5 tries, 0.5 s doubling)
BACKOFF = [0.5, 1.0, 2.0, 4.0]
DATUM_TRIES = 2  # both specs


# -- pachlocal, secrets and the object store ------------------------------------------------------

Cli = Callable[..., Any]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
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


def create_secret(home: Path, name: str, **values: str) -> None:
    """``create_secret.sh --local NAME`` with the values in its environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PGSQL_", "GCS_", "STORAGE_EMULATOR"))
    }
    env |= {
        "PACHLOCAL_HOME": str(home),
        "PACHLOCAL": str(Path(sys.executable).parent / "pachlocal"),
    }
    done = subprocess.run(
        ["bash", str(ROOT / "create_secret.sh"), "--local", name],
        env=env | values,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"created secret {name} (keys: ")


def files(home: Path, ref: str) -> dict[str, str]:
    """Path -> content hash of a commit (``repo@commit`` or ``repo@branch``)."""
    store = Store(home, readonly=True)
    try:
        return {path: entry.hash for path, entry in store.manifest(store.resolve(ref)).items()}
    finally:
        store.close()


def contents(home: Path, ref: str) -> dict[str, bytes]:
    store = Store(home, readonly=True)
    try:
        manifest = store.manifest(store.resolve(ref))
        return {path: store.objects.read(entry.hash) for path, entry in manifest.items()}
    finally:
        store.close()


def head_id(home: Path, ref: str) -> str:
    store = Store(home, readonly=True)
    try:
        return store.resolve(ref).id
    finally:
        store.close()


def log_text(pachlocal: Cli, pipeline: str, job: str) -> dict[int, str]:
    """``pachlocal logs`` of one job: attempt -> its output."""
    by_attempt: dict[int, str] = {}
    for record in pachlocal("logs", "-p", pipeline, "--job", job, "--raw"):
        by_attempt[record["attempt"]] = by_attempt.get(record["attempt"], "") + record["message"]
    return by_attempt


def assert_failed_without_output(
    pachlocal: Cli, home: Path, pipeline: str, job_id: str, parent: str
) -> dict[str, Any]:
    """The job failed on one datum after every try, and its commit holds exactly ``parent``'s files."""
    job = pachlocal("inspect", "job", f"{pipeline}@{job_id}", "--raw")
    assert job["state"] == "failure"
    assert re.fullmatch(
        r"1 datum\(s\) failed; first: datum [0-9a-f]{64}: command exited with code 1",
        job["reason"],
    ), job["reason"]
    (datum,) = [
        d
        for d in pachlocal("list", "datum", f"{pipeline}@{job_id}", "--raw")
        if d["state"] == "failed"
    ]
    assert datum["attempts"] == DATUM_TRIES
    commit = pachlocal("inspect", "commit", f"{pipeline}@{job_id}", "--raw")
    assert commit["error"] == job["reason"]
    assert commit["parent_commit"] == {"id": parent}
    assert files(home, f"{pipeline}@{job_id}") == files(home, f"{pipeline}@{parent}")
    assert head_id(home, f"{pipeline}@master") == job_id
    return dict(datum)


def assert_fsck_clean(pachlocal: Cli) -> None:
    pachlocal("fsck")  # re-hashes every referenced object; exit 1 on any problem


# -- PostgreSQL ---------------------------------------------------------------------------------


class Postgres:
    """The module's embedded server, which a test may kill, stop and start on the same data."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server: EmbeddedPostgres | None = None
        self.dsn = ""

    def start(self) -> None:
        if self.server is None:
            self.server = EmbeddedPostgres(self.data_dir)
            dsn = self.server.dsn.replace(
                "postgresql://postgres@", f"postgresql://postgres:{PG_PASSWORD}@", 1
            )
            assert self.dsn in ("", dsn), "a restart moved the server: the secret would be stale"
            self.dsn = dsn

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def kill(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server = None

    def connect(self) -> psycopg.Connection[Any]:
        return pg.connect(self.dsn, attempts=1)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = Postgres(tmp_path_factory.mktemp("faults-pg") / "pgdata")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def db(postgres: Postgres) -> Postgres:
    """The server, running, without the feed tables (each feed job creates them)."""
    postgres.start()
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS feed, feed_runs, globaltrust CASCADE")
        conn.execute("DROP FUNCTION IF EXISTS lens_fault_hold() CASCADE")
    return postgres


def predictions(n: int, seed: int) -> bytes:
    """``predictions.parquet`` as predict writes it, ids distinct per seed."""
    sink = io.BytesIO()
    random_predictions(n, seed, id_prefix=f"{seed:02x}-0x").to_parquet(sink, index=False)
    return sink.getvalue()


def expected_feed(raw: bytes) -> pd.DataFrame:
    """An independent run of the feed logic: what PostgreSQL must hold after a good job."""
    feed, _ = generate_feed(pd.read_parquet(io.BytesIO(raw)), seed_from_bytes(raw))
    return feed


def feed_in_db(db: Postgres) -> pd.DataFrame:
    with db.connect() as conn:
        return pg.read_feed(conn, STRATEGY)


def feed_runs(db: Postgres) -> list[tuple[Any, ...]]:
    with db.connect() as conn:
        return conn.execute(
            "SELECT commit_id, row_count, input_commits, feed_sha256 FROM feed_runs"
            " WHERE strategy_name = %s ORDER BY created_at",
            (STRATEGY,),
        ).fetchall()


def run_row(job_id: str, predict_commit: str, raw: bytes) -> tuple[Any, ...]:
    feed = expected_feed(raw)
    return (
        job_id,
        len(feed),
        {"predictions": predict_commit},
        hashlib.sha256(feed_csv(feed)).hexdigest(),
    )


def put_predictions(pachlocal: Cli, tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / f"predictions-{hashlib.sha256(raw).hexdigest()[:8]}.parquet"
    path.write_bytes(raw)
    pachlocal("put", "file", "predict@master:/predictions.parquet", "-f", str(path))


def first_feed(pachlocal: Cli, home: Path, db: Postgres, tmp_path: Path, raw: bytes) -> str:
    """Secret, repo ``predict``, the feed pipeline and its first good job; returns that job's id."""
    create_secret(home, "lens-postgres", PGSQL_URL=db.dsn)
    pachlocal("create", "repo", "predict")
    put_predictions(pachlocal, tmp_path, raw)
    pachlocal("create", "pipeline", "-f", FEED_SPEC)
    (job,) = pachlocal("list", "job", "-p", "feed", "--raw")
    assert (job["state"], job["processed"]) == ("success", 1)
    pd.testing.assert_frame_equal(feed_in_db(db), expected_feed(raw))
    assert contents(home, f"feed@{job['id']}")["/feed.csv"] == feed_csv(expected_feed(raw))
    assert feed_runs(db) == [run_row(job["id"], head_id(home, "predict@master"), raw)]
    return str(job["id"])


def assert_recovered(pachlocal: Cli, home: Path, db: Postgres, raw: bytes) -> str:
    """The newest feed job succeeded and PostgreSQL, feed.csv and feed_meta.json agree with ``raw``."""
    job = pachlocal("list", "job", "-p", "feed", "--raw")[0]
    assert (job["state"], job["processed"]) == ("success", 1), job["reason"]
    pd.testing.assert_frame_equal(feed_in_db(db), expected_feed(raw))
    out = contents(home, "feed@master")
    assert head_id(home, "feed@master") == job["id"]
    assert out["/feed.csv"] == feed_csv(expected_feed(raw))
    meta = json.loads(out["/feed_meta.json"])
    assert meta["input_commits"] == {"predictions": head_id(home, "predict@master")}
    return str(job["id"])


def _kill_when_blocked(db: Postgres, seen: dict[str, Any]) -> None:
    """Wait until the feed job's COPY waits on :data:`HOLD_KEY`, then SIGKILL the server."""
    deadline = time.monotonic() + 90
    with psycopg.connect(db.dsn, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT query, state, wait_event_type, wait_event, xact_start IS NOT NULL"
                " FROM pg_stat_activity WHERE application_name = 'lensfeed'"
                " AND wait_event = 'advisory'"
            ).fetchone()
            if row is not None:
                seen.update(
                    zip(("query", "state", "wait_type", "wait", "in_xact"), row, strict=True)
                )
                break
            time.sleep(0.02)
    db.kill()  # also after the deadline: a job blocked for good must not hang the suite


# -- 1. PostgreSQL killed mid-COPY ----------------------------------------------------------------


@pytest.mark.slow
def test_postgres_killed_mid_copy_keeps_the_previous_feed_and_a_rerun_recovers(
    db: Postgres, home: Path, pachlocal: Cli, tmp_path: Path
) -> None:
    old, new = predictions(6000, 1), predictions(6000, 2)
    first = first_feed(pachlocal, home, db, tmp_path, old)
    runs_before = feed_runs(db)

    # Stop the new feed's COPY at its middle row, inside the job's transaction (the DELETE
    # of the previous rows done, half the new rows sent), by a row trigger that waits on an
    # advisory lock this test holds; then SIGKILL the server.
    expected_new = expected_feed(new)
    middle = str(expected_new["post_id"].iloc[len(expected_new) // 2])
    holder = db.connect()
    holder.execute(
        sql.SQL(
            "CREATE FUNCTION lens_fault_hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.post_id = {} THEN PERFORM pg_advisory_xact_lock({}); END IF;"
            " RETURN NEW; END $$"
        ).format(sql.Literal(middle), sql.Literal(HOLD_KEY))
    )
    holder.execute(
        "CREATE TRIGGER lens_fault_hold BEFORE INSERT ON feed"
        " FOR EACH ROW EXECUTE FUNCTION lens_fault_hold()"
    )
    holder.execute("SELECT pg_advisory_lock(%s)", (HOLD_KEY,))
    seen: dict[str, Any] = {}
    killer = threading.Thread(target=_kill_when_blocked, args=(db, seen), daemon=True)
    killer.start()
    put_predictions(pachlocal, tmp_path, new)  # runs the feed job: blocked, killed, retried
    killer.join(timeout=120)
    holder.close()
    assert seen.get("query", "").startswith('COPY "feed" ("strategy_name", "post_id", "v")')
    assert (seen["state"], seen["wait_type"], seen["in_xact"]) == ("active", "Lock", True)

    # the job failed on both tries, with the reason in its logs; no half-written commit
    job_id = head_id(home, "predict@master")  # the job shares the commit set of its input
    assert_failed_without_output(pachlocal, home, "feed", job_id, parent=first)
    logs = log_text(pachlocal, "feed", job_id)
    assert re.search(
        r"feed: push to PostgreSQL failed: replace_feed\('ml-xgb-followship'\) failed \(.+\),"
        r" rolled back, the previous feed is kept: .+",
        logs[1],
    ), logs[1]
    assert re.search(
        r"feed: push to PostgreSQL failed: cannot connect to PostgreSQL \(host=\S+ port=\d+"
        r" dbname=postgres user=postgres\) after 5 attempts: .+",
        logs[2],
    ), logs[2]
    assert f"attempt 1/{DATUM_TRIES} failed: command exited with code 1" in logs[1]
    job = pachlocal("inspect", "job", f"feed@{job_id}", "--raw")
    assert PG_PASSWORD not in "".join(logs.values()) + job["reason"]

    # crash recovery on the same data: the previous feed, row for row, and no new run
    db.start()
    with db.connect() as conn:
        conn.execute("DROP FUNCTION lens_fault_hold() CASCADE")
    pd.testing.assert_frame_equal(feed_in_db(db), expected_feed(old))
    assert feed_runs(db) == runs_before

    # a rerun (update pipeline queues a job on the same input) publishes the new feed
    pachlocal("update", "pipeline", "-f", FEED_SPEC)
    rerun = assert_recovered(pachlocal, home, db, new)
    assert feed_runs(db) == [*runs_before, run_row(rerun, job_id, new)]
    assert_fsck_clean(pachlocal)


# -- 2. PostgreSQL down at the start of a job -----------------------------------------------------


@pytest.mark.slow
def test_postgres_down_at_job_start_retries_then_fails_and_a_later_run_recovers(
    db: Postgres, home: Path, pachlocal: Cli, tmp_path: Path
) -> None:
    old, missed, later = predictions(6000, 3), predictions(6000, 4), predictions(6000, 5)
    first = first_feed(pachlocal, home, db, tmp_path, old)
    runs_before = feed_runs(db)

    db.stop()
    put_predictions(pachlocal, tmp_path, missed)
    job_id = head_id(home, "predict@master")
    datum = assert_failed_without_output(pachlocal, home, "feed", job_id, parent=first)
    logs = log_text(pachlocal, "feed", job_id)
    for attempt in range(1, DATUM_TRIES + 1):
        text = logs[attempt]
        waits = re.findall(r"attempt (\d)/5 failed, retrying in ([\d.]+) s: .*\S", text)
        assert [(int(n), float(w)) for n, w in waits] == list(enumerate(BACKOFF, 1)), text
        assert re.search(
            r"feed: push to PostgreSQL failed: cannot connect to PostgreSQL \(host=\S+"
            r" port=\d+ dbname=postgres user=postgres\) after 5 attempts: .+",
            text,
        ), text
    # bounded: each try waits the whole backoff, and no more than a few seconds beyond it
    assert DATUM_TRIES * sum(BACKOFF) <= datum["seconds"] < DATUM_TRIES * sum(BACKOFF) + 30
    assert PG_PASSWORD not in "".join(logs.values())

    db.start()
    pd.testing.assert_frame_equal(feed_in_db(db), expected_feed(old))
    assert feed_runs(db) == runs_before

    put_predictions(pachlocal, tmp_path, later)  # the next upstream commit
    recovered = assert_recovered(pachlocal, home, db, later)
    assert feed_runs(db) == [*runs_before, run_row(recovered, recovered, later)]
    assert_fsck_clean(pachlocal)


# -- 3. GCS unreachable at the start of an ingest tick --------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(BUCKET) as server:
        yield server


@contextlib.contextmanager
def refusing_connections(emulator: EmulatorServer) -> Iterator[None]:
    """The emulator's port refuses connections, then serves the same objects on it again."""
    from gcp_storage_emulator.server import APIThread

    server = emulator._server
    port = server._api._httpd.server_address[1]
    server._api.join()  # shuts the HTTP server down and closes its socket
    try:
        yield
    finally:
        api = APIThread("127.0.0.1", port, server._storage, daemon=True)
        api.start()
        assert api.is_running.wait(10)
        server._api = api


def tree(root: Path) -> dict[str, bytes]:
    return {
        "/" + p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
    }


def gs(bucket: str, name: str) -> str:
    return f"gs://{bucket}/{name}"


@pytest.mark.slow
def test_gcs_unreachable_fails_the_tick_and_the_next_tick_takes_every_object_once(
    emulator: EmulatorServer, home: Path, pachlocal: Cli, tmp_path: Path
) -> None:
    emulator.wipe()
    end = START + 4 * HOUR
    exports = plan_exports(generate_dataset(200, 11, START, end), START, end, 1, 11)
    landed = {o.name: o.export_time + timedelta(minutes=1) for o in exports}
    upload_exports(
        emulator.client().bucket(BUCKET), exports, lambda o: landed[o.name], markers=False
    )
    key = tmp_path / "service-account.json"
    key.write_text('{"type": "placeholder"}')
    create_secret(
        home,
        "lens-gcs",
        GCS_BUCKET=BUCKET,
        GCS_PREFIX="lens",
        STORAGE_EMULATOR_HOST=emulator.host,
        GCS_SERVICE_ACCOUNT_FILE=str(key),
    )
    pachlocal("create", "pipeline", "-f", INGEST_SPEC)
    pachlocal("tick", "--until", "2024-05-01T01:00:00Z")
    tick1 = pachlocal("list", "job", "-p", "ingest", "--raw")[0]
    assert (tick1["state"], tick1["processed"]) == ("success", 1)

    with refusing_connections(emulator):
        pachlocal("tick", "--until", "2024-05-01T02:00:00Z")
    job_id = pachlocal("list", "job", "-p", "ingest", "--raw")[0]["id"]
    datum = assert_failed_without_output(pachlocal, home, "ingest", job_id, parent=tick1["id"])
    logs = log_text(pachlocal, "ingest", job_id)
    unreachable = (
        f"ingest: gs://{BUCKET}: listing 'lens/' failed after 5 attempts"
        " (last error: ConnectionError); is the bucket reachable?\n"
    )
    assert [logs[a].count(unreachable) for a in range(1, DATUM_TRIES + 1)] == [1] * DATUM_TRIES
    assert emulator.host.rsplit(":", 1)[1] not in "".join(logs.values())  # no endpoint
    assert DATUM_TRIES * sum(BACKOFF) <= datum["seconds"] < DATUM_TRIES * sum(BACKOFF) + 30

    pachlocal("tick", "--until", "2024-05-01T03:00:00Z")
    job = pachlocal("list", "job", "-p", "ingest", "--raw")[0]
    assert (job["state"], job["processed"], job["skipped"]) == ("success", 2, 1), job["reason"]
    got = contents(home, "ingest@master")

    # exactly what ticks 1..3 give when nothing fails, each object once, equal to its export
    direct = tmp_path / "direct"
    store = GcsExportStore(emulator.client(), BUCKET)
    for h in (1, 2, 3):
        ingest_tick(store, "lens", START + (h - 1) * HOUR, START + h * HOUR, direct)
    assert got == tree(direct)
    manifests = [json.loads(data) for path, data in got.items() if path.startswith("/_manifest/")]
    taken = Counter(entry["object"] for manifest in manifests for entry in manifest)
    due = [o for o in exports if landed[o.name] <= START + 3 * HOUR]
    assert taken == Counter(gs(BUCKET, o.name) for o in due)
    paths = {e["object"]: e["path"] for manifest in manifests for e in manifest}
    for obj in due:
        partition = pq.read_table(io.BytesIO(got[paths[gs(BUCKET, obj.name)]]))
        assert partition.equals(obj.table_data)
    assert not any(path.startswith("/_rejected/") for path in got)
    assert_fsck_clean(pachlocal)


# -- 4. a malformed export corpus -----------------------------------------------------------------

Tables = dict[str, pa.Table]  # the first good export of each table
Bad = tuple[str, bytes, str]  # object name, bytes, verdict (a regular expression, fullmatch)

TICK = "2024-05-01T01:00:00Z"  # every object of the corpus lands in its window (00:00, 01:00]
GOOD_LANDED = START + timedelta(minutes=10)
BAD_LANDED = START + timedelta(minutes=20)
OUTSIDE = r"is outside \[2020-01-01, 2100-01-01\) in"
LAYOUT = "name does not match lens/<table>/<YYYYmmddTHHMMSSZ>-<part>.parquet"


def _name(table: str, part: int, tail: str = "") -> str:
    return f"lens/{table}/20240501T003000Z-{part:012d}{tail}.parquet"


def _column(table: pa.Table, column: str, values: Any) -> pa.Table:
    """``table`` with ``column`` replaced (a list keeps the column's type)."""
    if not isinstance(values, pa.Array | pa.ChunkedArray):
        values = pa.array(values, table.schema.field(column).type)
    return table.set_column(table.schema.get_field_index(column), column, values)


def _cell(table: pa.Table, column: str, rows: dict[int, Any]) -> pa.Table:
    values = table.column(column).to_pylist()
    for row, value in rows.items():
        values[row] = value
    return _column(table, column, values)


def _raw_strings(values: list[bytes | None]) -> pa.Array:
    """A string array holding these bytes unchecked: Parquet writers and readers check no UTF-8."""
    binary = pa.array(values, pa.binary())
    validity, offsets, data = binary.buffers()
    return pa.StringArray.from_buffers(len(binary), offsets, data, validity, binary.null_count)


def _bad_utf8(table: pa.Table, column: str, rows: dict[int, bytes]) -> pa.Table:
    values = [None if v is None else v.encode() for v in table.column(column).to_pylist()]
    for row, value in rows.items():
        values[row] = value
    return _column(table, column, _raw_strings(values))


def _pq(table: pa.Table) -> bytes:
    return parquet_bytes(table)


def _json(table: pa.Table) -> bytes:
    return json.dumps(table.slice(0, 3).to_pylist(), default=str).encode()


def _csv(table: pa.Table, sep: str = ",") -> bytes:
    text = io.StringIO()
    table.slice(0, 3).to_pandas().to_csv(text, index=False, sep=sep)
    return text.getvalue().encode()


def _cut_body(data: bytes) -> bytes:
    """Magic and footer intact, the column chunks in between partly gone."""
    return data[:4] + data[len(data) // 2 :]


def _uuid_not_utf8(t: Tables) -> Bad:
    posts = t[POSTS]
    meta = posts.column("datastream_metadata").combine_chunks()
    uuids = [v.encode() for v in meta.field("uuid").to_pylist()]
    uuids[0] = b"\xed\xa0\x80-lone-surrogate"
    struct = pa.StructArray.from_arrays(
        [_raw_strings(uuids), meta.field("source_timestamp")], names=["uuid", "source_timestamp"]
    )
    verdict = (
        f"{POSTS}: column 'datastream_metadata.uuid' is not valid UTF-8 in 1 row, first at row 0"
    )
    return _name(POSTS, 402), _pq(_column(posts, "datastream_metadata", struct)), verdict


def _source_ms(t: Tables, row: int, millis: int) -> pa.Table:
    stats = t[STATS]
    meta = stats.column("datastream_metadata").combine_chunks()
    source = meta.field("source_timestamp").to_pylist()
    source[row] = millis
    struct = pa.StructArray.from_arrays(
        [meta.field("uuid"), pa.array(source, pa.int64())], names=["uuid", "source_timestamp"]
    )
    return _column(stats, "datastream_metadata", struct)


def _dup_followers(t: Tables) -> Bad:
    followers = t[FOLLOWERS]
    address, profile = (
        followers.column("address")[0].as_py(),
        followers.column("follow_profile_id")[0].as_py(),
    )
    verdict = re.escape(
        f"{FOLLOWERS}: duplicate primary key address={address!r}, "
        f"follow_profile_id={profile!r} in 2 rows (1 key repeated)"
    )
    return _name(FOLLOWERS, 501), _pq(pa.concat_tables([followers, followers.slice(0, 1)])), verdict


def _dup_stats(t: Tables) -> Bad:
    stats = t[STATS]
    key = stats.column("publication_id")[5].as_py()
    verdict = re.escape(
        f"{STATS}: duplicate primary key publication_id={key!r} in 2 rows (1 key repeated)"
    )
    return _name(STATS, 502), _pq(pa.concat_tables([stats, stats.slice(5, 1)])), verdict


def _dup_handle(t: Tables) -> Bad:
    profiles = t[PROFILES]
    handles = profiles.column("handle").to_pylist()
    first, second = [i for i, h in enumerate(handles) if h is not None][:2]
    verdict = re.escape(
        f"{PROFILES}: duplicate value handle={handles[first]!r} in 2 rows (1 value repeated)"
    )
    return _name(PROFILES, 503), _pq(_cell(profiles, "handle", {second: handles[first]})), verdict


def _s_overflow(t: Tables) -> Bad:
    followers = t[FOLLOWERS]
    seconds = [1_714_435_200] * followers.num_rows
    seconds[6] = 10**15  # year ~31.7 million: fits seconds, overflows microseconds
    column = pa.array(seconds, pa.int64()).cast(pa.timestamp("s", tz="UTC"))
    verdict = (
        rf"{FOLLOWERS}: column 'block_timestamp' cannot be cast to timestamp\[us, tz=UTC\]: "
        r".*out of bounds.*"
    )
    return _name(FOLLOWERS, 604), _pq(_column(followers, "block_timestamp", column)), verdict


def _name_case(name: str, verdict: str) -> Callable[[Tables], Bad]:
    return lambda t: (name, _pq(t[POSTS]), re.escape(verdict))


def _long(total: int) -> str:
    head, tail = f"lens/{POSTS}/", ".parquet"
    return head + "9" * (total - len(head) - len(tail)) + tail


#: Every kind of bad object ``test_ingest`` does not already cover; each is built from a good
#: export with exactly one defect, so its verdict is exactly one problem.
CORPUS: dict[str, Callable[[Tables], Bad]] = {
    # not Parquet at all
    "json-array": lambda t: (_name(POSTS, 101), _json(t[POSTS]), "not Parquet: looks like JSON"),
    "json-lines": lambda t: (
        _name(STATS, 102),
        b"\n".join(json.dumps(r, default=str).encode() for r in t[STATS].slice(0, 3).to_pylist()),
        "not Parquet: looks like JSON",
    ),
    "json-with-bom": lambda t: (
        _name(PROFILES, 103),
        b"\xef\xbb\xbf" + _json(t[PROFILES]),
        "not Parquet: looks like JSON",
    ),
    "tsv": lambda t: (
        _name(FOLLOWERS, 104),
        _csv(t[FOLLOWERS], "\t"),
        "not Parquet: looks like CSV",
    ),
    "csv-with-bom": lambda t: (
        _name(STATS, 105),
        b"\xef\xbb\xbf" + _csv(t[STATS]),
        "not Parquet: looks like CSV",
    ),
    "parquet-body-cut": lambda t: (
        _name(STATS, 106),
        _cut_body(_pq(t[STATS])),
        rf"unreadable Parquet \({STATS}\): .+",
    ),
    # columns
    "missing-nullable-column": lambda t: (
        _name(PROFILES, 201),
        _pq(t[PROFILES].drop_columns(["handle"])),
        f"{PROFILES}: missing column 'handle'",
    ),
    "missing-key-column": lambda t: (
        _name(FOLLOWERS, 202),
        _pq(t[FOLLOWERS].drop_columns(["follow_profile_id"])),
        f"{FOLLOWERS}: missing column 'follow_profile_id'",
    ),
    # wrong types
    "counter-as-string": lambda t: (
        _name(STATS, 301),
        _pq(_column(t[STATS], "total_upvotes", t[STATS].column("total_upvotes").cast(pa.string()))),
        f"{STATS}: column 'total_upvotes' has type string, expected int64",
    ),
    "counter-as-double": lambda t: (
        _name(STATS, 302),
        _pq(
            _column(t[STATS], "total_upvotes", t[STATS].column("total_upvotes").cast(pa.float64()))
        ),
        f"{STATS}: column 'total_upvotes' has type double, expected int64",
    ),
    "counter-as-uint64": lambda t: (
        _name(STATS, 303),
        _pq(_column(t[STATS], "total_upvotes", t[STATS].column("total_upvotes").cast(pa.uint64()))),
        f"{STATS}: column 'total_upvotes' has type uint64, expected int64",
    ),
    "timestamp-naive": lambda t: (
        _name(FOLLOWERS, 304),
        _pq(
            _column(
                t[FOLLOWERS],
                "block_timestamp",
                t[FOLLOWERS].column("block_timestamp").cast(pa.timestamp("us")),
            )
        ),
        rf"{FOLLOWERS}: column 'block_timestamp' has type timestamp\[us\], "
        r"expected timestamp\[us, tz=UTC\]",
    ),
    "timestamp-other-zone": lambda t: (
        _name(POSTS, 305),
        _pq(
            _column(
                t[POSTS],
                "block_timestamp",
                t[POSTS].column("block_timestamp").cast(pa.timestamp("us", tz="Europe/Paris")),
            )
        ),
        rf"{POSTS}: column 'block_timestamp' has type timestamp\[us, tz=Europe/Paris\], "
        r"expected timestamp\[us, tz=UTC\]",
    ),
    "timestamp-as-string": lambda t: (
        _name(PROFILES, 306),
        _pq(
            _column(
                t[PROFILES],
                "block_timestamp",
                t[PROFILES].column("block_timestamp").cast(pa.string()),
            )
        ),
        rf"{PROFILES}: column 'block_timestamp' has type string, expected timestamp\[us, tz=UTC\]",
    ),
    "flag-as-int": lambda t: (
        _name(POSTS, 307),
        _pq(_column(t[POSTS], "is_gated", t[POSTS].column("is_gated").cast(pa.int8()))),
        f"{POSTS}: column 'is_gated' has type int8, expected bool",
    ),
    # null and duplicate keys
    "null-primary-key": lambda t: (
        _name(POSTS, 401),
        _pq(_cell(t[POSTS], "post_id", {7: None})),
        f"{POSTS}: column 'post_id' is null in 1 row, first at row 7",
    ),
    "null-key-part": lambda t: (
        _name(FOLLOWERS, 403),
        _pq(_cell(t[FOLLOWERS], "address", {3: None, 5: None})),
        f"{FOLLOWERS}: column 'address' is null in 2 rows, first at row 3",
    ),
    "null-required-flag": lambda t: (
        _name(POSTS, 404),
        _pq(_cell(t[POSTS], "is_hidden", {2: None})),
        f"{POSTS}: column 'is_hidden' is null in 1 row, first at row 2",
    ),
    "duplicate-composite-key": _dup_followers,
    "duplicate-stats-key": _dup_stats,
    "duplicate-handle": _dup_handle,
    # strings
    "not-utf8-text": lambda t: (
        _name(POSTS, 405),
        _pq(_bad_utf8(t[POSTS], "content", {1: b"caf\xe9 (latin-1)"})),
        f"{POSTS}: column 'content' is not valid UTF-8 in 1 row, first at row 1",
    ),
    "not-utf8-key": lambda t: (
        _name(FOLLOWERS, 406),
        _pq(_bad_utf8(t[FOLLOWERS], "address", {2: b"0x\xc3\x28", 4: b"0x\xff\xfe"})),
        f"{FOLLOWERS}: column 'address' is not valid UTF-8 in 2 rows, first at row 2",
    ),
    "not-utf8-struct-child": _uuid_not_utf8,
    "huge-string": lambda t: (
        _name(POSTS, 407),
        _pq(_cell(t[POSTS], "content", {3: "x" * (MAX_STRING_BYTES + 1)})),
        f"{POSTS}: column 'content' is over {MAX_STRING_BYTES} bytes in 1 row, first at row 3: "
        f"{MAX_STRING_BYTES + 1} bytes",
    ),
    "huge-multibyte-strings": lambda t: (
        _name(PROFILES, 408),
        _pq(_cell(t[PROFILES], "name", {4: "é" * 600_000, 9: "é" * 600_000})),
        f"{PROFILES}: column 'name' is over {MAX_STRING_BYTES} bytes in 2 rows, first at row 4: "
        "1200000 bytes",
    ),
    # time out of range
    "timestamp-1970": lambda t: (
        _name(FOLLOWERS, 601),
        _pq(_cell(t[FOLLOWERS], "block_timestamp", {4: datetime(1970, 1, 1, tzinfo=UTC)})),
        rf"{FOLLOWERS}: column 'block_timestamp' {OUTSIDE} 1 row, first at row 4: "
        r"1970-01-01T00:00:00\+00:00",
    ),
    "timestamp-just-before-2020": lambda t: (
        _name(PROFILES, 602),
        _pq(
            _cell(
                t[PROFILES],
                "metadata_block_timestamp",
                {0: datetime(2019, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)},
            )
        ),
        rf"{PROFILES}: column 'metadata_block_timestamp' {OUTSIDE} 1 row, first at row 0: "
        r"2019-12-31T23:59:59\.999999\+00:00",
    ),
    "timestamp-2100": lambda t: (
        _name(POSTS, 603),
        _pq(_cell(t[POSTS], "block_timestamp", {5: datetime(2100, 1, 1, tzinfo=UTC)})),
        rf"{POSTS}: column 'block_timestamp' {OUTSIDE} 1 row, first at row 5: "
        r"2100-01-01T00:00:00\+00:00",
    ),
    "timestamp-overflow": _s_overflow,
    "source-timestamp-far-future": lambda t: (
        _name(STATS, 605),
        _pq(_source_ms(t, 2, 32_503_680_000_000)),  # 3000-01-01 in ms
        rf"{STATS}: column 'datastream_metadata.source_timestamp' {OUTSIDE} 1 row, "
        r"first at row 2: 3000-01-01T00:00:00\+00:00",
    ),
    "source-timestamp-negative": lambda t: (
        _name(STATS, 606),
        _pq(_source_ms(t, 0, -1)),
        rf"{STATS}: column 'datastream_metadata.source_timestamp' {OUTSIDE} 1 row, "
        r"first at row 0: 1969-12-31T23:59:59\.999000\+00:00",
    ),
    "negative-counter": lambda t: (
        _name(STATS, 607),
        _pq(_cell(t[STATS], "total_amount_of_mirrors", {0: -3})),
        f"{STATS}: column 'total_amount_of_mirrors' is negative in 1 row, first at row 0: -3",
    ),
    # object names (the bytes are a good export: the name alone must reject it)
    "name-absolute": _name_case(f"/{_name(POSTS, 701)}", "name is an absolute path"),
    "name-dotdot-escape": _name_case(
        f"lens/{POSTS}/../../../../escaped/20240501T003000Z-000000000702.parquet",
        "name has a '..' component",
    ),
    "name-dotdot-table": _name_case(
        "lens/../20240501T003000Z-000000000703.parquet", "name has a '..' component"
    ),
    "name-nul": _name_case(_name(POSTS, 704, "\x00"), "name contains control character U+0000"),
    "name-tab": _name_case(_name(POSTS, 705, "\t"), "name contains control character U+0009"),
    "name-cr": _name_case(_name(POSTS, 706, "\r"), "name contains control character U+000D"),
    "name-escape": _name_case(
        _name(POSTS, 707, "\x1b[2J"), "name contains control character U+001B"
    ),
    "name-del": _name_case(_name(POSTS, 708, "\x7f"), "name contains control character U+007F"),
    "name-c1-nel": _name_case(_name(POSTS, 709, "\x85"), "name contains control character U+0085"),
    "name-1024-bytes": _name_case(
        _long(MAX_NAME_BYTES), f"name is {MAX_NAME_BYTES} bytes; names must be under 1024"
    ),
    "name-multibyte-over-limit": _name_case(
        f"lens/{POSTS}/" + "é" * 600 + ".parquet", "name is 1233 bytes; names must be under 1024"
    ),
    "name-1023-bytes-off-layout": _name_case(_long(MAX_NAME_BYTES - 1), LAYOUT),
}


def _unstorable(name: str) -> bool:
    """Names the emulator refuses ('..') or never lists under ``lens/`` (a leading '/')."""
    return name.startswith("/") or ".." in name.split("/")


def _store_listing(extra: dict[str, bytes]) -> type[GcsExportStore]:
    """GcsExportStore that also lists ``extra``: real GCS stores '..' names, and a leading-'/'
    name would reach the listing through any store or gateway that strips the slash."""

    class Listing(GcsExportStore):
        def list_objects(self, prefix: str) -> list[ObjectInfo]:
            more = [
                ObjectInfo(
                    name,
                    len(data),
                    1,
                    md5_base64(data),
                    BAD_LANDED,
                    metadata={"landed_at": BAD_LANDED.isoformat()},
                )
                for name, data in extra.items()
            ]
            return sorted(super().list_objects(prefix) + more, key=lambda o: o.name)

        def read(self, name: str, generation: int) -> bytes:
            return extra[name] if name in extra else super().read(name, generation)

    return Listing


@dataclass(frozen=True)
class CorpusRun:
    code: int
    stdout: str
    root: Path
    out: Path
    good: list[ExportObject]
    bad: dict[str, Bad]
    rejected: list[dict[str, str]]
    manifest: list[dict[str, Any]]


@pytest.fixture(scope="module")
def corpus(emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory) -> CorpusRun:
    """One tick of the ingest entry point over good exports and the whole bad corpus."""
    client = emulator.client()
    bucket = client.create_bucket(CORPUS_BUCKET)
    end = START + 2 * HOUR
    good = plan_exports(generate_dataset(200, 5, START, end), START, end, 1, 5)
    upload_exports(bucket, good, lambda o: GOOD_LANDED, markers=False)
    tables = {
        t: next(o.table_data for o in good if o.table == t)
        for t in (POSTS, STATS, PROFILES, FOLLOWERS)
    }
    bad = {case: build(tables) for case, build in CORPUS.items()}
    extra = {}
    for name, data, _ in bad.values():
        if _unstorable(name):
            extra[name] = data
        else:
            upload_bytes(bucket, name, data, BAD_LANDED)
    root = tmp_path_factory.mktemp("corpus")
    (root / "pfs" / "tick").mkdir(parents=True)
    (root / "pfs" / "tick" / TICK).touch()
    out = root / "pfs" / "out"
    entry = load_entry_point("ingest")
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        for key, value in {
            "GCS_BUCKET": CORPUS_BUCKET,
            "GCS_PREFIX": "lens",
            "STORAGE_EMULATOR_HOST": emulator.host,
        }.items():
            mp.setenv(key, value)
        mp.delenv("INGEST_TIME_SOURCE", raising=False)
        mp.setattr(gcs, "GcsExportStore", _store_listing(extra))
        code = entry.main(
            [
                *("--tick-dir", str(root / "pfs" / "tick"), "--out", str(out)),
                *("--schedule", "@hourly", "--attempts", "2"),
            ]
        )
    rejected_path = out / "_rejected" / f"{TICK}.json"
    return CorpusRun(
        code=code,
        stdout=stdout.getvalue(),
        root=root,
        out=out,
        good=good,
        bad=bad,
        rejected=json.loads(rejected_path.read_text()) if rejected_path.exists() else [],
        manifest=json.loads((out / "_manifest" / f"{TICK}.json").read_text()),
    )


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_a_bad_object_gets_its_own_verdict(corpus: CorpusRun, case: str) -> None:
    name, _, verdict = corpus.bad[case]
    obj = gs(CORPUS_BUCKET, name)
    problems = [r["problem"] for r in corpus.rejected if r["object"] == obj]
    assert len(problems) == 1, f"{obj!r} rejected {len(problems)} times"
    assert re.fullmatch(verdict, problems[0]), problems[0]
    assert f"rejected {obj!r}: {problems[0]}\n" in corpus.stdout
    assert obj not in {entry["object"] for entry in corpus.manifest}


def test_the_quarantine_record_holds_exactly_the_bad_objects(corpus: CorpusRun) -> None:
    assert corpus.code == 0  # bad objects are rejected, never fatal
    assert [r["object"] for r in corpus.rejected] == sorted(
        gs(CORPUS_BUCKET, name) for name, _, _ in corpus.bad.values()
    )
    assert all(set(r) == {"object", "problem"} for r in corpus.rejected)


def test_every_good_object_of_the_tick_is_ingested_whole(corpus: CorpusRun) -> None:
    by_object = {entry["object"]: entry for entry in corpus.manifest}
    assert sorted(by_object) == sorted(gs(CORPUS_BUCKET, o.name) for o in corpus.good)
    for obj in corpus.good:
        entry = by_object[gs(CORPUS_BUCKET, obj.name)]
        assert entry["path"] == f"/{obj.table}/dtime={TICK}/{obj.name.rsplit('/', 1)[1]}"
        assert pq.read_table(corpus.out / entry["path"].lstrip("/")).equals(obj.table_data)
        assert entry["rows"] == obj.table_data.num_rows
    rows = sum(o.table_data.num_rows for o in corpus.good)
    assert corpus.stdout.endswith(
        f"tick {TICK}: window (2024-05-01T00:00:00Z, {TICK}], {len(corpus.good)} objects "
        f"ingested ({rows} rows), {len(corpus.bad)} rejected\n"
    )


def test_nothing_is_written_outside_the_output(corpus: CorpusRun) -> None:
    written = {
        p.relative_to(corpus.root).as_posix() for p in corpus.root.rglob("*") if not p.is_dir()
    }
    expected = {
        f"pfs/tick/{TICK}",
        f"pfs/out/_manifest/{TICK}.json",
        f"pfs/out/_rejected/{TICK}.json",
    }
    expected |= {"pfs/out" + entry["path"] for entry in corpus.manifest}
    assert written == expected
    assert sorted(p.name for p in corpus.root.iterdir()) == ["pfs"]
    assert sorted(p.name for p in (corpus.root / "pfs").iterdir()) == ["out", "tick"]
