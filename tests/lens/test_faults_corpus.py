"""A malformed export corpus through the ingest entry point: one verdict per bad object in
``_rejected/<T>.json``, every good object of the same tick ingested, nothing written outside
the output directory. (Kinds ``test_ingest`` already covers are not repeated.)
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from lensfeed import gcs
from lensfeed.gcs import GcsExportStore, ObjectInfo, md5_base64
from lensfeed.schemas import FOLLOWERS, POSTS, PROFILES, STATS
from lensrun.emulator import EmulatorServer, upload_bytes, upload_exports
from lensrun.generate import ExportObject, generate_dataset, plan_exports
from tests.lens.bad_exports import BAD_LANDED, CORPUS, GOOD_LANDED, TICK, Bad
from tests.lens.entry_points import load_entry_point
from tests.lens.faults_engine import (
    HOUR,
    START,
    gs,
)

pytestmark = pytest.mark.integration

CORPUS_BUCKET = "lens-corpus"


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
