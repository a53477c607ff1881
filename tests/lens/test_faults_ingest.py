"""Faults of the ingest pipeline through pachlocal and the real spec: the GCS endpoint refusing connections when a tick starts."""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lensfeed.gcs import GcsExportStore
from lensfeed.ingest import ingest_tick
from lensrun.emulator import EmulatorServer, upload_exports
from lensrun.generate import generate_dataset, plan_exports
from tests.lens.faults_engine import (
    BACKOFF,
    DATUM_TRIES,
    HOUR,
    ROOT,
    START,
    Cli,
    assert_failed_without_output,
    assert_fsck_clean,
    contents,
    create_secret,
    gs,
    log_text,
)

pytestmark = pytest.mark.integration

INGEST_SPEC = str(ROOT / "specs" / "ingest.pipeline.json")

BUCKET = "lens-exports"


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
