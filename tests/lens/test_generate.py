"""Tests of lensrun.generate: the sample Lens data and its export objects."""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lensfeed.eigentrust import OG_HANDLES
from lensfeed.schemas import FOLLOWERS, POSTS, PROFILES, SCHEMAS, STATS, validate_table
from lensrun.__main__ import main
from lensrun.generate import (
    EXPORT_MODES,
    ExportObject,
    generate_dataset,
    hex_ids,
    plan_exports,
    write_exports,
)

START = datetime(2023, 5, 1, tzinfo=UTC)
END = datetime(2023, 5, 3, tzinfo=UTC)
N = 20_000
OBJECTS_PER_HOUR = 4
HEX_ID = re.compile(r"^0x(?!00)([0-9a-f]{2})+$")
ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")
OBJECT_NAME = re.compile(
    r"^lens/(public_profile_post|public_publication_stats|public_profile|public_follower)/"
    r"\d{8}T\d{6}Z-\d{12}\.parquet$"
)


@pytest.fixture(scope="module")
def dataset() -> dict[str, Any]:
    return generate_dataset(N, seed=11, start=START, end=END)


@pytest.fixture(scope="module")
def objects(dataset: dict[str, Any]) -> list[ExportObject]:
    return plan_exports(dataset, START, END, OBJECTS_PER_HOUR, seed=11, snapshot_every_hours=12)


@pytest.fixture(scope="module")
def posts(dataset: dict[str, Any]) -> pd.DataFrame:
    return dataset[POSTS].to_pandas()


def _of(objects: list[ExportObject], table: str) -> list[ExportObject]:
    return [o for o in objects if o.table == table]


def _hashes(paths: list[Path], root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in paths
    }


# --- determinism ---------------------------------------------------------------


def test_same_seed_gives_identical_tables_and_bytes(tmp_path: Path) -> None:
    first = generate_dataset(2_000, seed=3, start=START, end=END)
    second = generate_dataset(2_000, seed=3, start=START, end=END)
    for name in SCHEMAS:
        assert first[name].equals(second[name]), name
    written = []
    for run, data in enumerate((first, second)):
        root = tmp_path / f"run{run}"
        objs = plan_exports(data, START, END, OBJECTS_PER_HOUR, seed=3)
        written.append(_hashes(write_exports(objs, root), root))
    assert written[0] == written[1]
    assert len(written[0]) > 50


def test_different_seed_differs(tmp_path: Path) -> None:
    first = generate_dataset(2_000, seed=3, start=START, end=END)
    other = generate_dataset(2_000, seed=4, start=START, end=END)
    for name in SCHEMAS:
        assert not first[name].equals(other[name]), name
    hashes = []
    for seed, data in ((3, first), (4, other)):
        root = tmp_path / f"seed{seed}"
        objs = plan_exports(data, START, END, OBJECTS_PER_HOUR, seed=seed)
        parts = [p for p in write_exports(objs, root) if p.suffix == ".parquet"]
        hashes.append(set(_hashes(parts, root).values()))
    assert not hashes[0] & hashes[1]


# --- shape and validity ----------------------------------------------------------


def test_tables_have_canonical_schemas_and_pass_validation(dataset: dict[str, Any]) -> None:
    assert set(dataset) == set(SCHEMAS)
    for name, table in dataset.items():
        assert table.schema.equals(SCHEMAS[name], check_metadata=True), name
        assert validate_table(name, table) == [], name
    assert dataset[POSTS].num_rows == N
    assert dataset[PROFILES].num_rows == 1_000  # the default: one profile per 20 posts


def test_hex_ids_are_byte_padded() -> None:
    ids = hex_ids(np.array([0, 1, 255, 256, 4_520, 70_526, 2**32], dtype=np.int64))
    assert ids.to_pylist() == [
        "0x00",
        "0x01",
        "0xff",
        "0x0100",
        "0x11a8",
        "0x01137e",
        "0x0100000000",
    ]


def test_identifiers_look_like_lens(dataset: dict[str, Any], posts: pd.DataFrame) -> None:
    profiles = dataset[PROFILES].to_pandas()
    assert profiles.profile_id.str.match(HEX_ID).all()
    assert profiles.owned_by.str.match(ADDRESS).all()
    assert profiles.handle.str.endswith(".lens").all()
    assert posts.profile_id.str.match(HEX_ID).all()
    assert posts.contract_publication_id.str.match(HEX_ID).all()
    assert (posts.post_id == posts.profile_id + "-" + posts.contract_publication_id).all()
    assert dataset[FOLLOWERS].to_pandas().address.str.match(ADDRESS).all()


def test_post_ids_unique_and_publication_ids_increase_per_profile(posts: pd.DataFrame) -> None:
    assert posts.post_id.is_unique
    frame = posts.assign(pub=posts.contract_publication_id.apply(lambda h: int(h, 16)))
    frame = frame.sort_values(["profile_id", "block_timestamp", "pub"], kind="stable")
    assert (frame.groupby("profile_id").pub.diff().dropna() > 0).all()
    assert posts.block_timestamp.is_monotonic_increasing
    assert posts.block_timestamp.min() >= START
    assert posts.block_timestamp.max() < END


def test_mirrors_point_at_earlier_original_posts(posts: pd.DataFrame) -> None:
    by_id = posts.set_index("post_id")
    mirrors = posts[posts.is_related_to_post.notna()]
    assert mirrors.is_related_to_post.isin(posts.post_id).all()
    targets = by_id.loc[mirrors.is_related_to_post]
    assert (targets.block_timestamp.to_numpy() <= mirrors.block_timestamp.to_numpy()).all()
    assert targets.is_related_to_post.isna().all() and targets.is_related_to_comment.isna().all()
    # a mirror carries the metadata of what it mirrors
    assert (targets.content_uri.to_numpy() == mirrors.content_uri.to_numpy()).all()
    # mirrors of comments point outside this table (comments live elsewhere)
    comment_mirrors = posts.is_related_to_comment.dropna()
    assert len(comment_mirrors) > 0
    assert comment_mirrors.str.match(r"^0x[0-9a-f]+-0x[0-9a-f]+$").all()
    assert not comment_mirrors.isin(posts.post_id).any()
    assert not (posts.is_related_to_post.notna() & posts.is_related_to_comment.notna()).any()


def test_follows_reference_existing_profiles_after_they_exist(dataset: dict[str, Any]) -> None:
    profiles = dataset[PROFILES].to_pandas().set_index("profile_id")
    follows = dataset[FOLLOWERS].to_pandas()
    assert follows.follow_profile_id.isin(profiles.index).all()
    created = profiles.loc[follows.follow_profile_id, "block_timestamp"].to_numpy()
    assert (follows.block_timestamp.to_numpy() >= created).all()
    assert follows.block_timestamp.max() < END
    assert not follows.duplicated(["address", "follow_profile_id"]).any()


def test_stats_have_one_row_per_post(dataset: dict[str, Any]) -> None:
    assert dataset[STATS].column("publication_id").equals(dataset[POSTS].column("post_id"))


# --- distributions at n = 20k ---------------------------------------------------------


def test_post_shares_are_within_tolerance(posts: pd.DataFrame) -> None:
    is_mirror = posts.is_related_to_post.notna() | posts.is_related_to_comment.notna()
    assert is_mirror.mean() == pytest.approx(0.15, abs=0.015)
    assert posts.is_related_to_post.notna().mean() == pytest.approx(0.135, abs=0.015)
    assert posts.language.isna().mean() == pytest.approx(0.06, abs=0.01)
    assert posts.language.value_counts(normalize=True).index[0] == "en"
    assert posts.language.nunique() >= 10
    assert posts.is_hidden.mean() == pytest.approx(0.01, abs=0.004)
    assert posts.is_gated.mean() == pytest.approx(0.02, abs=0.005)
    assert posts.custom_filters_gardener_flagged.mean() == pytest.approx(0.005, abs=0.0025)
    assert posts.region.isna().mean() >= 0.997
    assert posts.content_warning.notna().mean() <= 0.002
    assert set(posts.content_warning.dropna()) <= {"NSFW", "SENSITIVE", "SPOILER"}
    focus = posts.main_content_focus.value_counts(normalize=True)
    assert set(focus.index) == {"TEXT_ONLY", "IMAGE", "VIDEO", "ARTICLE", "AUDIO", "LINK", "EMBED"}
    assert focus.index[0] == "TEXT_ONLY" and focus.index[1] == "IMAGE"
    assert posts.app_id.notna().mean() > 0.8


def test_authors_are_heavy_tailed(posts: pd.DataFrame) -> None:
    per_author = posts.profile_id.value_counts()
    top = per_author.head(max(1, len(per_author) // 100))
    assert top.sum() / len(posts) > 0.15  # the top 1% of authors write over 15%
    assert per_author.median() < 20


def test_og_handles_present_and_among_most_followed(dataset: dict[str, Any]) -> None:
    profiles = dataset[PROFILES].to_pandas()
    handles = profiles.set_index("profile_id").handle
    assert set(OG_HANDLES) <= set(profiles.handle)
    assert len(OG_HANDLES) == 10 and "stani.lens" in OG_HANDLES
    assert profiles.handle.is_unique
    assert not profiles[profiles.handle.isin(OG_HANDLES)].is_burnt.any()
    in_degree = dataset[FOLLOWERS].to_pandas().follow_profile_id.value_counts()
    most_followed = set(handles.loc[in_degree.index[:20]])
    assert set(OG_HANDLES) <= most_followed
    assert handles.loc[in_degree.index[0]] in OG_HANDLES
    assert in_degree.median() < in_degree.iloc[0] / 20  # heavy-tailed in-degree


def test_wallets_own_one_or_several_profiles(dataset: dict[str, Any]) -> None:
    profiles = dataset[PROFILES].to_pandas()
    per_wallet = profiles.owned_by.value_counts()
    assert (per_wallet == 1).mean() > 0.6
    assert (per_wallet >= 3).sum() > 5
    followers = set(dataset[FOLLOWERS].column("address").to_pylist())
    assert followers - set(profiles.owned_by)  # some followers own no profile
    assert 0 < profiles.is_burnt.mean() < 0.02


def test_stats_are_heavy_tailed(dataset: dict[str, Any]) -> None:
    stats = dataset[STATS].to_pandas()
    assert stats.total_upvotes.median() <= 2
    assert stats.total_upvotes.max() >= 300
    assert stats.total_amount_of_comments.max() >= 100
    assert (stats.total_upvotes >= stats.total_downvotes).mean() > 0.97
    assert (stats.total_upvotes > stats.total_downvotes).sum() > 10 * (
        stats.total_upvotes < stats.total_downvotes
    ).sum()


# --- export objects ------------------------------------------------------------------


def test_object_names_times_and_order(objects: list[ExportObject]) -> None:
    names = [o.name for o in objects]
    assert len(set(names)) == len(names)
    assert all(OBJECT_NAME.match(name) for name in names)
    times = [o.export_time for o in objects]
    assert times == sorted(times)
    grid = timedelta(hours=1) / OBJECTS_PER_HOUR
    assert all((t - START) % grid == timedelta(0) for t in times)
    assert min(times) == START and max(times) == END
    for o in objects:
        assert o.export_time.strftime("%Y%m%dT%H%M%SZ") in o.name
        assert o.name.startswith(f"lens/{o.table}/")


def test_every_object_passes_validation(objects: list[ExportObject]) -> None:
    for o in objects:
        assert o.table_data.schema.equals(SCHEMAS[o.table]), o.name
        assert validate_table(o.table, o.table_data) == [], o.name


def test_post_objects_cover_every_post_exactly_once(
    dataset: dict[str, Any], objects: list[ExportObject]
) -> None:
    post_objects = _of(objects, POSTS)
    assert EXPORT_MODES[POSTS] == "increment"
    union = pa.concat_tables([o.table_data for o in post_objects])
    assert union.num_rows == N
    assert union.sort_by("post_id").equals(dataset[POSTS].sort_by("post_id"))


def test_posts_are_exported_after_their_timestamp_some_late(
    objects: list[ExportObject],
) -> None:
    lags = []
    for o in _of(objects, POSTS):
        stamps = o.table_data.column("block_timestamp").to_pandas()
        lags.append(pd.Timestamp(o.export_time) - stamps)
    lag = pd.concat(lags)
    assert (lag >= pd.Timedelta(0)).all()
    assert lag.median() <= pd.Timedelta(minutes=15)
    assert (lag > pd.Timedelta(hours=1)).mean() == pytest.approx(0.03, abs=0.01)


def _stats_exports(objects: list[ExportObject]) -> pd.DataFrame:
    frames = []
    for order, o in enumerate(_of(objects, STATS)):
        frames.append(o.table_data.to_pandas().assign(_order=order))
    return pd.concat(frames, ignore_index=True)


def test_latest_stats_export_per_publication_equals_dataset(
    dataset: dict[str, Any], objects: list[ExportObject]
) -> None:
    exports = _stats_exports(objects)
    latest = exports.sort_values(["publication_id", "_order"], kind="stable")
    latest = latest.groupby("publication_id").tail(1).drop(columns="_order")
    rebuilt = pa.Table.from_pandas(latest, schema=SCHEMAS[STATS], preserve_index=False)
    assert rebuilt.sort_by("publication_id").equals(dataset[STATS].sort_by("publication_id"))


def test_stats_exports_repeat_publications_with_growing_counters(
    objects: list[ExportObject],
) -> None:
    exports = _stats_exports(objects).sort_values(["publication_id", "_order"], kind="stable")
    assert exports.publication_id.duplicated().mean() > 0.2  # many are exported several times
    grouped = exports.groupby("publication_id")
    counters = [c for c in SCHEMAS[STATS].names if c.startswith("total_")]
    for column in counters:
        assert (grouped[column].diff().dropna() >= 0).all(), column
    source = exports.datastream_metadata.map(lambda d: d["source_timestamp"])
    assert (source.groupby(exports.publication_id).diff().dropna() >= 0).all()
    assert not exports.duplicated(["publication_id", "_order"]).any()


def test_last_snapshots_equal_the_dataset(
    dataset: dict[str, Any], objects: list[ExportObject]
) -> None:
    for table in (PROFILES, FOLLOWERS):
        assert EXPORT_MODES[table] == "snapshot"
        snapshots = _of(objects, table)
        last = max(o.export_time for o in snapshots)
        assert last == END
        union = pa.concat_tables([o.table_data for o in snapshots if o.export_time == last])
        assert union.equals(dataset[table])
        # snapshots every 12 hours over two days, the first at start
        assert len({o.export_time for o in snapshots}) == 5


def test_earlier_snapshots_show_the_state_at_their_time(
    dataset: dict[str, Any], objects: list[ExportObject]
) -> None:
    final_edges = set(
        zip(
            dataset[FOLLOWERS].column("address").to_pylist(),
            dataset[FOLLOWERS].column("follow_profile_id").to_pylist(),
            strict=True,
        )
    )
    unfollowed = 0
    for o in _of(objects, PROFILES) + _of(objects, FOLLOWERS):
        table = o.table_data
        moment = pa.scalar(o.export_time, type=table.schema.field("block_timestamp").type)
        assert pc.all(pc.less_equal(table.column("block_timestamp"), moment)).as_py()
        if o.table == PROFILES and table.num_rows:
            meta = table.column("metadata_block_timestamp").drop_null()
            assert pc.all(pc.less_equal(meta, moment)).as_py() in (True, None)
        if o.table == FOLLOWERS and o.export_time < END:
            edges = zip(
                table.column("address").to_pylist(),
                table.column("follow_profile_id").to_pylist(),
                strict=True,
            )
            unfollowed += sum(edge not in final_edges for edge in edges)
    assert unfollowed > 0  # edges seen earlier and gone at the end: unfollows
    sizes = [o.table_data.num_rows for o in _of(objects, PROFILES)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_large_exports_are_split_into_numbered_parts(dataset: dict[str, Any]) -> None:
    objs = plan_exports(dataset, START, END, 1, seed=11, max_rows_per_object=1_000)
    assert max(o.table_data.num_rows for o in objs) <= 1_000
    parts = Counter((o.table, o.export_time) for o in objs)
    assert max(parts.values()) > 1
    assert any(o.name.endswith("-000000000001.parquet") for o in objs)
    union = pa.concat_tables([o.table_data for o in _of(objs, POSTS)])
    assert union.sort_by("post_id").equals(dataset[POSTS].sort_by("post_id"))
    last = max(o.export_time for o in objs)
    edges = pa.concat_tables([o.table_data for o in _of(objs, FOLLOWERS) if o.export_time == last])
    assert edges.equals(dataset[FOLLOWERS])


def test_write_exports_round_trips(tmp_path: Path) -> None:
    data = generate_dataset(500, seed=5, start=START, end=START + timedelta(hours=6))
    objs = plan_exports(data, START, START + timedelta(hours=6), 2, seed=5)
    written = [p.relative_to(tmp_path).as_posix() for p in write_exports(objs, tmp_path)]
    # each snapshot run's completion marker comes right after the run's last part
    expected = []
    for o in objs:
        expected.append(o.name)
        part = int(o.name.rsplit("-", 1)[1].removesuffix(".parquet"))
        if o.table in (PROFILES, FOLLOWERS) and part == o.parts - 1:
            expected.append(f"{o.name.rsplit('-', 1)[0]}.complete.json")
    assert written == expected
    for name in expected:
        if name.endswith(".complete.json"):
            stamp = name.removesuffix(".complete.json")
            count = sum(o.name.startswith(stamp + "-") for o in objs)
            assert (tmp_path / name).read_bytes() == f'{{"parts": {count}}}\n'.encode()
    paths = [tmp_path / o.name for o in objs]
    for path, o in zip(paths, objs, strict=True):
        read = pq.read_table(path)
        assert read.schema.equals(SCHEMAS[o.table])
        assert read.equals(o.table_data)
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    assert not list(tmp_path.rglob("*.partial"))


def test_write_exports_refuses_names_outside_the_directory(tmp_path: Path) -> None:
    obj = ExportObject(STATS, "../escape.parquet", START, SCHEMAS[STATS].empty_table())
    with pytest.raises(ValueError, match="relative path"):
        write_exports([obj], tmp_path)


def test_no_posts_still_gives_valid_tables_and_snapshots() -> None:
    data = generate_dataset(0, seed=1, start=START, end=END, n_profiles=30)
    assert data[POSTS].num_rows == 0 and data[STATS].num_rows == 0
    assert data[PROFILES].num_rows == 30
    objs = plan_exports(data, START, END, 1, seed=1)
    assert {o.table for o in objs} == {PROFILES, FOLLOWERS}
    for o in objs:
        assert validate_table(o.table, o.table_data) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_posts": -1}, "n_posts must be >= 0"),
        ({"n_profiles": 5}, "n_profiles must be >= 20"),
        ({"start": datetime(2023, 5, 1)}, "has no time zone"),
        ({"start": END}, "must be before end"),
        ({"start": datetime(2019, 6, 1, tzinfo=UTC)}, "the range must lie within"),
    ],
)
def test_generate_dataset_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"n_posts": 10, "seed": 1, "start": START, "end": END}
    with pytest.raises(ValueError, match=message):
        generate_dataset(**{**arguments, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objects_per_hour": 7}, "objects_per_hour must divide 3600"),
        ({"objects_per_hour": 0}, "objects_per_hour must divide 3600"),
        ({"snapshot_every_hours": 0}, "must be >= 1"),
        ({"prefix": "/abs"}, "prefix must be a relative path"),
    ],
)
def test_plan_exports_rejects_bad_arguments(
    dataset: dict[str, Any], kwargs: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"objects_per_hour": 4, "seed": 1}
    with pytest.raises(ValueError, match=message):
        plan_exports(dataset, START, END, **{**arguments, **kwargs})


def test_cli_writes_objects_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "generate",
        "--posts",
        "1000",
        "--seed",
        "2",
        "--start",
        "2023-05-01T00:00:00Z",
        "--end",
        "2023-05-01T12:00:00",
        "--objects-per-hour",
        "2",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())  # parts and markers
    assert any(p.name.endswith(".complete.json") for p in files)
    assert lines[0].startswith(f"wrote {len(files)} objects")
    assert "public_profile_post 1000" in lines[0]
    assert (tmp_path / "lens" / "public_profile_post").is_dir()


def test_cli_rejects_a_bad_time(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["generate", "--posts", "1", "--seed", "1", "--start", "yesterday"])
    assert raised.value.code == 2
    assert "not an ISO 8601 time" in capsys.readouterr().err


@pytest.mark.slow
def test_one_million_posts_generate_quickly() -> None:
    began = time.perf_counter()
    data = generate_dataset(1_000_000, seed=1, start=START, end=START + timedelta(days=30))
    elapsed = time.perf_counter() - began
    assert data[POSTS].num_rows == 1_000_000
    assert elapsed < 30, f"took {elapsed:.1f} s"
