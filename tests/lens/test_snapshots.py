"""Snapshot runs whose parts land in several tick partitions (issue #14, item 2).

``lensfeed.snapshots`` assembles each export run of ``public_follower`` and
``public_profile`` across the ``dtime=<T>`` partitions of the ingest repo and
picks the newest complete one (completion marker ``<STAMP>.complete.json``);
``pipelines/eigentrust.py`` ranks it. The ingest layout is written directly for
the awkward cases; two tests go through ingest and the GCS emulator.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lensfeed import pg
from lensfeed.eigentrust import OG_HANDLES, eigentrust, follow_edges, global_trust_frame, pretrust
from lensfeed.gcs import GcsExportStore
from lensfeed.ingest import ingest_tick
from lensfeed.parquet import parquet_bytes
from lensfeed.schemas import FOLLOWERS, PROFILES, SCHEMAS
from lensfeed.snapshots import (
    MarkerError,
    SnapshotError,
    current_snapshot,
    marker_bytes,
    parse_marker,
    plan_markers,
    read_run,
)
from lensrun.emulator import EmulatorServer, upload_bytes, upload_exports
from lensrun.generate import ExportObject, generate_dataset, plan_exports
from tests.conftest import EMULATOR_BUCKET
from tests.lens.entry_points import load_entry_point

START, END = datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 3, tzinfo=UTC)
SEED = 7
OLD, NEW = "20240502T000000Z", "20240503T000000Z"  # two snapshot runs of each table
OLD_TICK = datetime(2024, 5, 2, 1, tzinfo=UTC)  # where the OLD runs landed, whole
HOUR = timedelta(hours=1)
BUCKET = EMULATOR_BUCKET  # the shared emulator's (tests/conftest.py)
Runs = dict[tuple[str, str], list[ExportObject]]


def tick(hours: int) -> datetime:
    return END + hours * HOUR


@pytest.fixture(scope="module")
def runs() -> Runs:
    """Every snapshot run, (table, stamp) -> its parts: followers in 13 parts, profiles in 2."""
    dataset = generate_dataset(300, SEED, START, END)
    found: Runs = {}
    for obj in plan_exports(dataset, START, END, 1, SEED, max_rows_per_object=60):
        if obj.table in (FOLLOWERS, PROFILES):
            found.setdefault((obj.table, f"{obj.export_time:%Y%m%dT%H%M%SZ}"), []).append(obj)
    assert len(found[FOLLOWERS, NEW]) == 13 and len(found[PROFILES, NEW]) == 2
    return found


def snapshot(runs: Runs, table: str, stamp: str) -> pa.Table:
    """What the exporter exported in one run: the concatenation of its parts."""
    return pa.concat_tables([o.table_data for o in runs[table, stamp]])


def place(root: Path, table: str, at: datetime, name: str, data: bytes) -> None:
    """One file as ingest files it: ``<root>/<table>/dtime=<at>/<name>``."""
    folder = root / table / f"dtime={at:%Y-%m-%dT%H:%M:%SZ}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def land(root: Path, parts: list[ExportObject], at: datetime, *, marker: bool = False) -> None:
    """Parts (and, with ``marker``, their run's completion marker) landed in tick ``at``."""
    for obj in parts:
        place(root, obj.table, at, obj.name.rsplit("/", 1)[1], parquet_bytes(obj.table_data))
    if marker:
        stamp = parts[0].name.rsplit("/", 1)[1].split("-")[0]
        place(root, parts[0].table, at, f"{stamp}.complete.json", marker_bytes(parts[0].parts))


@pytest.fixture
def root(runs: Runs, tmp_path: Path) -> Path:
    """Both OLD runs landed whole with markers, and the NEW profile run; NEW followers: per test."""
    ingest = tmp_path / "ingest"
    for table in (FOLLOWERS, PROFILES):
        land(ingest, runs[table, OLD], OLD_TICK, marker=True)
    land(ingest, runs[PROFILES, NEW], tick(1), marker=True)
    return ingest


def newest_partition_only(table_dir: Path) -> pa.Table:
    """The reader before the fix: every part of the newest ``dtime=`` partition, nothing else."""
    newest = max(table_dir.glob("dtime=*"))
    return pa.concat_tables([pq.read_table(p) for p in sorted(newest.glob("*.parquet"))])


def expected_globaltrust(followers: pa.Table, profiles: pa.Table, day: date) -> pd.DataFrame:
    f, p = followers.to_pandas(), profiles.to_pandas()
    graph = follow_edges(f, p)
    result = eigentrust(graph, pretrust(graph.peers, p, OG_HANDLES))
    return global_trust_frame(graph.peers, result.scores, "followship", day)


@pytest.fixture
def run_eigentrust(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Any:
    """``eigentrust`` on an ingest root: (exit code, stderr, globaltrust frame or None)."""
    for name in ("GLOBALTRUST_WRITE", "PRETRUST_HANDLES", "EIGENTRUST_TOLERANCE"):
        monkeypatch.delenv(name, raising=False)

    def run(ingest: Path) -> tuple[int, str, pd.DataFrame | None]:
        out = tmp_path / "out"
        args = ["--followers", str(ingest), "--profiles", str(ingest), "--out", str(out)]
        code = int(load_entry_point("eigentrust").main(args))
        found = out / "globaltrust.parquet"
        frame = pq.read_table(found).to_pandas() if found.exists() else None
        return code, capsys.readouterr().err, frame

    return run


# -- a run split across tick partitions --------------------------------------------------------


def test_a_run_split_across_two_partitions_is_read_whole(runs, root, run_eigentrust):
    parts = runs[FOLLOWERS, NEW]
    land(root, parts[:7], tick(1))
    land(root, parts[7:], tick(2), marker=True)
    exported = snapshot(runs, FOLLOWERS, NEW)
    old = newest_partition_only(root / FOLLOWERS)  # the bug: parts 7..12 only
    assert old.num_rows < exported.num_rows and not old.equals(exported)

    choice = current_snapshot(root / FOLLOWERS, FOLLOWERS)
    assert (choice.run.stamp, choice.notes, choice.run.completed()) == (NEW, (), tick(2))
    assert read_run(choice.run).equals(exported)

    code, err, got = run_eigentrust(root)
    assert (code, err) == (0, "")
    profiles = snapshot(runs, PROFILES, NEW)
    pd.testing.assert_frame_equal(got, expected_globaltrust(exported, profiles, date(2024, 5, 3)))


@pytest.mark.parametrize(
    ("landed", "problem"),
    [
        ([*range(7)], "7 part(s) landed, no completion marker yet"),
        ([*range(7), "marker"], "7 of 13 parts landed (missing 7, 8, 9, 10, 11 and 1 more)"),
        ([*range(12), "marker"], "12 of 13 parts landed (missing 12)"),
        ([12, "marker"], "1 of 13 parts landed (missing 0, 1, 2, 3, 4 and 7 more)"),  # reversed
        ([0, 1, 3], "3 part(s) landed, missing 2, no completion marker yet"),
    ],
)
def test_a_run_still_landing_is_skipped_until_its_last_file_lands(
    runs, root, run_eigentrust, landed, problem
):
    parts = runs[FOLLOWERS, NEW]
    land(root, [parts[n] for n in landed if n != "marker"], tick(1), marker="marker" in landed)
    code, err, got = run_eigentrust(root)
    note = f"eigentrust: {FOLLOWERS} run {NEW}: {problem}; using run {OLD}\n"
    assert (code, err) == (0, note)
    old, profiles = snapshot(runs, FOLLOWERS, OLD), snapshot(runs, PROFILES, NEW)
    pd.testing.assert_frame_equal(got, expected_globaltrust(old, profiles, OLD_TICK.date()))

    # the rest lands a tick later, the marker last and on the next day: the NEW run is used
    land(root, [p for n, p in enumerate(parts) if n not in landed], tick(2))
    place(root, FOLLOWERS, tick(25), f"{NEW}.complete.json", marker_bytes(13))
    code, err, got = run_eigentrust(root)
    assert (code, err) == (0, "")
    new = snapshot(runs, FOLLOWERS, NEW)
    pd.testing.assert_frame_equal(got, expected_globaltrust(new, profiles, date(2024, 5, 4)))


def test_a_relanded_part_is_read_from_its_newest_copy(runs, root):
    parts = runs[FOLLOWERS, NEW]
    stale = ExportObject(FOLLOWERS, parts[3].name, END, parts[3].table_data.slice(0, 5), 13)
    land(root, [*parts[:3], stale, *parts[4:]], tick(1), marker=True)
    land(root, [parts[3]], tick(2))  # overwritten in GCS: lands again, in a later window
    choice = current_snapshot(root / FOLLOWERS, FOLLOWERS)
    assert read_run(choice.run).equals(snapshot(runs, FOLLOWERS, NEW))
    assert choice.run.completed() == tick(2)


def test_without_any_marker_the_newest_run_is_assembled_and_the_gap_is_noted(runs, tmp_path):
    root = tmp_path / "ingest"
    for table in (FOLLOWERS, PROFILES):
        land(root, runs[table, OLD], OLD_TICK)
    parts = runs[FOLLOWERS, NEW]
    land(root, parts[:7], tick(1))
    land(root, parts[7:], tick(2))
    choice = current_snapshot(root / FOLLOWERS, FOLLOWERS)
    assert read_run(choice.run).equals(snapshot(runs, FOLLOWERS, NEW))
    assert choice.notes == (
        f"{FOLLOWERS}: no run has a completion marker (exports from before the marker "
        f"contract); using run {NEW} with the 13 part(s) landed: completeness could not be checked",
    )
    (
        root / FOLLOWERS / f"dtime={tick(1):%Y-%m-%dT%H:%M:%SZ}" / parts[2].name.split("/")[-1]
    ).unlink()
    choice = current_snapshot(root / FOLLOWERS, FOLLOWERS)
    assert read_run(choice.run).equals(snapshot(runs, FOLLOWERS, OLD))
    assert choice.notes[0] == (
        f"{FOLLOWERS} run {NEW}: 12 part(s) landed, missing 2, no completion marker yet; "
        f"using run {OLD}"
    )


# -- failures and empty snapshots --------------------------------------------------------------


def test_a_table_directory_that_holds_no_snapshot_is_a_clear_error(tmp_path: Path) -> None:
    table_dir = tmp_path / FOLLOWERS

    def error() -> str:
        with pytest.raises(SnapshotError) as raised:
            current_snapshot(table_dir, FOLLOWERS)
        return str(raised.value)

    assert error() == f"no dtime= partition under {table_dir}"
    (table_dir / "dtime=2024-05-03T01:00:00Z").mkdir(parents=True)
    assert error() == f"{FOLLOWERS}: no snapshot part in any dtime= partition"
    place(tmp_path, FOLLOWERS, tick(1), f"{NEW}.complete.json", b'{"parts": 0}')
    assert error().endswith(
        f"{NEW}.complete.json: completion marker field 'parts' must be an integer >= 1, got 0"
    )
    (table_dir / "dtime=2024-05-03T01:00:00Z" / f"{NEW}.complete.json").unlink()
    place(tmp_path, FOLLOWERS, tick(1), "notes.txt", b"")
    assert error().endswith(
        "notes.txt: neither a snapshot part (<STAMP>-<part>.parquet) "
        "nor a completion marker (<STAMP>.complete.json)"
    )
    (table_dir / "dtime=2024-05-03T01:00:00Z" / "notes.txt").unlink()
    (table_dir / "dtime=yesterday").mkdir()
    assert error() == f"{table_dir}/dtime=yesterday: not a dtime=<YYYY-MM-DDTHH:MM:SSZ> partition"


def test_no_complete_run_is_a_clear_error_and_nothing_is_written(runs, tmp_path, run_eigentrust):
    root = tmp_path / "ingest"
    land(root, runs[PROFILES, NEW], tick(1), marker=True)
    land(root, runs[FOLLOWERS, NEW][:4], tick(1), marker=True)
    land(root, runs[FOLLOWERS, OLD], OLD_TICK)  # older, without a marker: not a candidate
    code, err, got = run_eigentrust(root)
    assert (code, got) == (1, None)
    assert err == (
        f"eigentrust: {FOLLOWERS}: no complete snapshot among 2 run(s): run {NEW}: 4 of 13 "
        f"parts landed (missing 4, 5, 6, 7, 8 and 4 more); run {OLD}: 12 part(s) landed, no "
        "completion marker yet\n"
    )
    assert not (tmp_path / "out").exists()


def test_an_empty_profile_snapshot_fails_clearly_and_writes_nothing(
    runs, root, run_eigentrust, monkeypatch
):
    land(root, runs[FOLLOWERS, NEW], tick(1), marker=True)
    name = f"lens/{PROFILES}/20240503T060000Z-000000000000.parquet"
    empty = ExportObject(PROFILES, name, END, SCHEMAS[PROFILES].empty_table(), 1)
    land(root, [empty], tick(7), marker=True)  # the exporter writes one empty part
    monkeypatch.setenv("GLOBALTRUST_WRITE", "1")
    monkeypatch.setenv("PGSQL_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setattr(pg, "connect", lambda *a, **k: pytest.fail("PostgreSQL was touched"))
    code, err, got = run_eigentrust(root)
    assert (code, got) == (1, None)
    assert err == (
        f"eigentrust: {PROFILES} snapshot 20240503T060000Z has no rows: no peers to rank\n"
    )
    assert not (root.parent / "out").exists()


def test_an_empty_follower_snapshot_gives_the_pretrust(runs, root, run_eigentrust):
    name = f"lens/{FOLLOWERS}/{NEW}-000000000000.parquet"
    empty = ExportObject(FOLLOWERS, name, END, SCHEMAS[FOLLOWERS].empty_table(), 1)
    land(root, [empty], tick(1), marker=True)  # the exporter writes one empty part
    code, err, got = run_eigentrust(root)
    assert code == 0
    assert err == (
        f"eigentrust: {FOLLOWERS} snapshot {NEW} has no rows: no follow edges, "
        "every score is the pretrust\n"
    )
    profiles = snapshot(runs, PROFILES, NEW)
    expected = expected_globaltrust(SCHEMAS[FOLLOWERS].empty_table(), profiles, date(2024, 5, 3))
    pd.testing.assert_frame_equal(got, expected)
    assert len(got) == len(OG_HANDLES) and set(got["v"].round(12)) == {0.1}


# -- the marker ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "verdict"),
    [
        (b"", "completion marker is not JSON: Expecting value: line 1 column 1 (char 0)"),
        (b"parts=3", "completion marker is not JSON: Expecting value: line 1 column 1 (char 0)"),
        (b"\xff{}", "completion marker is not UTF-8 text"),
        (b"[3]", 'completion marker must be a JSON object like {"parts": 3}, not list'),
        (b'{"part": 3}', "completion marker has no field 'parts' (the number of parts of its run)"),
        (b'{"parts": "3"}', "completion marker field 'parts' must be an integer >= 1, got '3'"),
        (b'{"parts": 0}', "completion marker field 'parts' must be an integer >= 1, got 0"),
        (b'{"parts": true}', "completion marker field 'parts' must be an integer >= 1, got True"),
        (b'{"parts": 2.0}', "completion marker field 'parts' must be an integer >= 1, got 2.0"),
        (b" " * 5000, "completion marker is 5000 bytes; expected a small JSON object "),
    ],
)
def test_parse_marker_verdicts(data: bytes, verdict: str) -> None:
    with pytest.raises(MarkerError) as raised:
        parse_marker(data)
    assert str(raised.value).startswith(verdict)


def test_parse_marker_accepts_a_bom_and_extra_fields() -> None:
    assert parse_marker(b'\xef\xbb\xbf{"parts": 3, "rows": 741}') == 3
    assert parse_marker(marker_bytes(13)) == 13 and marker_bytes(13) == b'{"parts": 13}\n'


def test_plan_markers_only_for_runs_whose_parts_are_all_there(runs: Runs) -> None:
    parts = runs[FOLLOWERS, NEW]
    name = f"lens/public_profile_post/{NEW}-000000000000.parquet"
    posts = ExportObject(
        "public_profile_post", name, END, SCHEMAS["public_profile_post"].empty_table()
    )
    planned = plan_markers([*runs[PROFILES, NEW], posts, *parts[:12]])
    assert [(m.name, m.data, m.members) for m in planned] == [
        (f"lens/{PROFILES}/{NEW}.complete.json", b'{"parts": 2}\n', (0, 1))
    ]
    assert plan_markers(parts[::-1])[0].members == tuple(range(13))


# -- through ingest and the GCS emulator --------------------------------------------------------


@pytest.fixture
def gcs(emulator: EmulatorServer) -> tuple[Any, GcsExportStore]:
    emulator.wipe()
    bucket = emulator.client().bucket(BUCKET)
    return bucket, GcsExportStore(emulator.client(), BUCKET, attempts=2, base_delay=0.001)


@pytest.mark.integration
def test_markers_through_ingest_complete_a_split_run(runs, gcs, tmp_path, run_eigentrust):
    bucket, store = gcs
    objects = [o for key in sorted(runs) for o in runs[key]]
    late = {o.name for o in runs[FOLLOWERS, NEW][9:]}  # the last 4 parts land a tick late

    def landed(obj: ExportObject) -> datetime:
        return obj.export_time + timedelta(minutes=70 if obj.name in late else 10)

    names = upload_exports(bucket, objects, landed)
    markers = [n for n in names if n.endswith(".complete.json")]
    assert len(markers) == 6 and names[-6:] == markers  # one per run, after every part
    out = tmp_path / "ingest"
    for prev, now in ((START - HOUR, END), (END, tick(1))):
        assert ingest_tick(store, "lens", prev, now, out).rejected == []
    code, err, _ = run_eigentrust(out)  # 9 of 13 parts landed, no marker yet
    assert (code, err) == (
        0,
        f"eigentrust: {FOLLOWERS} run {NEW}: 9 part(s) landed, no "
        f"completion marker yet; using run {OLD}\n",
    )

    report = ingest_tick(store, "lens", tick(1), tick(2), out)
    assert [(e["path"], e["rows"]) for e in report.manifest if e["rows"] == 0] == [
        (f"/{FOLLOWERS}/dtime=2024-05-03T02:00:00Z/{NEW}.complete.json", 0)
    ]
    marker = out / FOLLOWERS / "dtime=2024-05-03T02:00:00Z" / f"{NEW}.complete.json"
    assert marker.read_bytes() == b'{"parts": 13}\n'
    assert not newest_partition_only(out / FOLLOWERS).equals(snapshot(runs, FOLLOWERS, NEW))
    choice = current_snapshot(out / FOLLOWERS, FOLLOWERS)
    assert read_run(choice.run).equals(snapshot(runs, FOLLOWERS, NEW))
    code, err, got = run_eigentrust(out)
    assert (code, err) == (0, "")
    exported = snapshot(runs, FOLLOWERS, NEW), snapshot(runs, PROFILES, NEW)
    pd.testing.assert_frame_equal(got, expected_globaltrust(*exported, date(2024, 5, 3)))


@pytest.mark.integration
def test_ingest_rejects_bad_markers_and_markers_of_increment_tables(gcs, tmp_path):
    bucket, store = gcs
    base = "lens/public_follower/20240503T0{}0000Z.complete.json"
    cases = {
        base.format(1): (
            b'{"parts": "3"}',
            "completion marker field 'parts' must be an integer >= 1, got '3'",
        ),
        base.format(2): (
            b"[]",
            'completion marker must be a JSON object like {"parts": 3}, not list',
        ),
        base.format(3): (
            b"{}",
            "completion marker has no field 'parts' (the number of parts of its run)",
        ),
        base.format(4): (
            b"x" * 4097,
            (
                'completion marker is 4097 bytes; expected a small JSON object like {"parts": 3} '
                "(at most 4096 bytes)"
            ),
        ),
        f"lens/public_profile_post/{NEW}.complete.json": (
            marker_bytes(1),
            "a completion marker belongs to a snapshot table (public_profile, public_follower); "
            "public_profile_post is exported as increments",
        ),
        f"lens/public_publication_stats/{NEW}.complete.json": (
            marker_bytes(1),
            "a completion marker belongs to a snapshot table (public_profile, public_follower); "
            "public_publication_stats is exported as increments",
        ),
        f"lens/{PROFILES}/{NEW}.manifest.json": (
            marker_bytes(1),
            "name does not match lens/<table>/<YYYYmmddTHHMMSSZ>.complete.json "
            "(a snapshot run's completion marker)",
        ),
    }
    for name, (data, _) in cases.items():
        upload_bytes(bucket, name, data, END + timedelta(minutes=5))
    upload_bytes(bucket, f"lens/{PROFILES}/{NEW}.complete.json", b'{"parts": 2, "x": 1}', END)
    report = ingest_tick(store, "lens", END - HOUR, tick(1), tmp_path)
    verdicts = {r["object"].removeprefix(f"gs://{BUCKET}/"): r["problem"] for r in report.rejected}
    assert verdicts == {name: verdict for name, (_, verdict) in cases.items()}
    assert [e["path"] for e in report.manifest] == [
        f"/{PROFILES}/dtime=2024-05-03T01:00:00Z/{NEW}.complete.json"
    ]
    assert (tmp_path / report.manifest[0]["path"].lstrip("/")).read_bytes() == b'{"parts": 2}\n'
    assert not (tmp_path / "public_profile_post").exists()
