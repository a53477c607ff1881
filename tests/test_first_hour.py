"""What a new user sees in the first hour of ``make run`` (issue #15).

One run of the driver at a tiny scale, its output captured: one progress line per
tick and no line for a job that processed nothing, a table of jobs, the feed's ranks
as integers, a provenance tree that expands each commit once, and the posts that
moved between the two latest feeds that differ. The pure helpers behind it
(tree, choice of feeds, moves, table, progress) are tested on hand-made inputs;
those tests are fast and stay in the fast tier.
"""

from __future__ import annotations

import contextlib
import io
import re
from datetime import UTC, datetime

import pytest

from lensrun import report
from lensrun.console import Console
from lensrun.demo import DemoConfig, run
from lensrun.lineage import FeedMoves, Node, feed_moves, pick_feed_pair, render_tree

POSTS = 600
TICKS = 3
DAYS = 2  # at 600 posts over 2 days the feed changes within 3 ticks (over 7 days it does not)
NODE = re.compile(r"^\s*(?:<- )?([a-z_]+)@([0-9a-f]+) ")


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    home = tmp_path_factory.mktemp("first-hour") / "state"
    config = DemoConfig(home=home, posts=POSTS, ticks=TICKS, days=DAYS)
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
        assert run(config) == 0
    return captured.getvalue().splitlines()


def section(lines: list[str], title: str) -> list[str]:
    """The indented lines under the line starting with ``title``, up to a blank line."""
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    body = []
    for line in lines[start + 1 :]:
        if not line.strip() or not line.startswith("  "):
            break
        body.append(line)
    return body


@pytest.mark.integration
@pytest.mark.slow
def test_one_progress_line_per_tick_and_none_per_job(output: list[str]) -> None:
    ticks = [line for line in output if line.startswith("tick ")]
    assert [t.split()[1] for t in ticks] == [f"2024-05-01T0{h}:00Z" for h in (1, 2, 3)]
    assert all(re.search(r"\d+ jobs  \d+ datums processed .* 0 failed", t) for t in ticks)
    assert not [line for line in output if re.match(r"\s*job\b", line)]
    assert not [line for line in output if re.search(r"(?<!\d)0 processed", line)]
    assert not [line for line in output if "FAILED" in line]


@pytest.mark.integration
@pytest.mark.slow
def test_a_table_of_jobs_per_pipeline(output: list[str]) -> None:
    table = section(output, "Jobs this run")
    assert table[0].split() == ["pipeline", "jobs", "processed", "skipped", "failed", "seconds"]
    rows = {line.split()[0]: line.split()[1:] for line in table[1:]}
    assert {"ingest", "feed", "total"} <= set(rows)
    assert int(rows["ingest"][1]) == TICKS  # one datum per tick
    assert len({len(line) for line in table}) == 1  # aligned: every row as wide


@pytest.mark.integration
@pytest.mark.slow
def test_the_top_of_the_feed_prints_ranks_as_integers(output: list[str]) -> None:
    top = section(output, "Top of the feed")
    assert top[0].split()[:2] == ["v", "post_id"]
    ranks = [line.split()[0] for line in top[1:]]
    assert ranks and all(r.isdigit() for r in ranks), top
    assert [int(r) for r in ranks] == sorted((int(r) for r in ranks), reverse=True)
    assert not any(".000000" in line for line in output)
    assert all(line.split()[2] in {"YES", "MAYBE"} for line in top[1:])


@pytest.mark.integration
@pytest.mark.slow
def test_the_provenance_tree_expands_each_commit_once(output: list[str]) -> None:
    tree = section(output, "Provenance of feed@")
    nodes = [(m.groups(), line) for line in tree if (m := NODE.match(line))]
    expanded = [key for key, line in nodes if not line.endswith("(see above)")]
    assert len(expanded) == len(set(expanded)), expanded
    assert [repo for repo, _ in expanded[:2]] == ["feed", "predict"]
    assert any(repo == "ingest" for repo, _ in expanded)
    assert any("export objects:" in line for line in tree)
    for key, line in nodes:  # a back-reference points at a commit printed above
        if line.endswith("(see above)"):
            assert key in expanded


@pytest.mark.integration
@pytest.mark.slow
def test_the_feed_diff_lists_posts_that_moved(output: list[str]) -> None:
    title = next(line for line in output if line.startswith("How the feed moved"))
    old, new = re.findall(r"feed@([0-9a-f]+)", title)
    assert old != new
    diff = section(output, "How the feed moved")
    assert re.match(r"\s+\d+ entered, \d+ left, \d+ moved, \d+ unchanged", diff[0])
    assert any(re.search(r"->\s+#\d+|entered|left", line) for line in diff[2:]), diff


# -- pure helpers --------------------------------------------------------------------------


def test_render_tree_expands_each_commit_once() -> None:
    graph = {
        ("feed", "c"): Node("pipeline feed", (("predict", "c"),)),
        ("predict", "c"): Node("pipeline predict", (("features", "c"), ("model", "m"))),
        ("features", "c"): Node("pipeline features", (("ingest", "c"), ("ingest", "c"))),
        ("model", "m"): Node("pipeline model", (("ingest", "c"),)),
        ("ingest", "c"): Node("pipeline ingest", (("tick", "c"),), ("export objects: 2",)),
        ("tick", "c"): Node("user commit"),
    }
    assert render_tree(graph, ("feed", "c")) == [
        "feed@c (pipeline feed)",
        "  <- predict@c (pipeline predict)",
        "    <- features@c (pipeline features)",
        "      <- ingest@c (pipeline ingest)",
        "        <- tick@c (user commit)",
        "        export objects: 2",
        "    <- model@m (pipeline model)",
        "      <- ingest@c (see above)",
    ]


def test_render_tree_names_a_commit_it_cannot_find() -> None:
    graph = {("feed", "c"): Node("pipeline feed", (("predict", "gone"),))}
    assert render_tree(graph, ("feed", "c"))[1] == "  <- predict@gone (not found)"


def test_pick_feed_pair_skips_identical_feeds_and_commits_without_a_feed() -> None:
    history = [("c5", "h2"), ("c4", "h2"), ("c3", None), ("c2", "h1"), ("c1", "h0")]
    assert pick_feed_pair(history) == ("c5", "c2")
    assert pick_feed_pair([("c3", None), ("c2", "h1"), ("c1", "h0")]) == ("c2", "c1")


@pytest.mark.parametrize(
    "history",
    [[], [("c1", None)], [("c2", "h1"), ("c1", "h1")], [("c2", "h1"), ("c1", None)]],
)
def test_pick_feed_pair_is_none_without_two_different_feeds(
    history: list[tuple[str, str | None]],
) -> None:
    assert pick_feed_pair(history) is None


def feed(*posts: str) -> bytes:
    """A feed.csv ranking ``posts`` top first: v = n..1."""
    rows = [f"s,{p},{len(posts) - i}" for i, p in enumerate(posts)]
    return "\n".join(["strategy_name,post_id,v", *rows]).encode() + b"\n"


def test_feed_moves_by_position_not_by_v() -> None:
    # d enters at the bottom: every v of a, b, c is unchanged, their positions too;
    # b and a swap; e leaves
    moves = feed_moves(feed("a", "b", "c", "e"), feed("b", "a", "c", "d"))
    assert moves == FeedMoves(
        entered=[("d", 4)], left=[("e", 4)], moved=[("b", 2, 1), ("a", 1, 2)], unchanged=1
    )


def test_feed_moves_of_equal_feeds_is_all_unchanged() -> None:
    assert feed_moves(feed("a", "b"), feed("a", "b")) == FeedMoves([], [], [], 2)


def test_moves_lines_lists_a_handful_then_counts_the_rest() -> None:
    moves = FeedMoves([("d", 1)], [("e", 3)], [("a", 1, 2), ("b", 2, 3)], 0)
    lines = report.moves_lines(moves, limit=3)
    assert lines[0].startswith("1 entered, 1 left, 2 moved, 0 unchanged")
    assert [line.split() for line in lines[1:]] == [
        ["post_id", "old", "new"],
        ["d", "-", "->", "#1", "entered"],
        ["e", "#3", "->", "-", "left"],
        ["a", "#1", "->", "#2", "down", "1"],
        ["...", "1", "more"],
    ]


def job(pipeline: str, seq: int, processed: int, state: str = "success") -> dict[str, object]:
    return {
        "pipeline": pipeline,
        "id": f"j{seq}",
        "seq": seq,
        "state": state,
        "processed": processed,
        "skipped": 1,
        "started": 10.0,
        "finished": 12.5,
        "reason": "1 datum(s) failed" if state != "success" else "",
    }


def test_job_table_one_row_per_pipeline_in_run_order_and_a_total() -> None:
    jobs = [job("feed", 3, 1), job("ingest", 1, 2), job("ingest", 2, 0, "failure")]
    assert report.job_table(jobs) == [
        "pipeline  jobs  processed  skipped  failed  seconds",
        "ingest       2          2        2       1      5.0",
        "feed         1          1        1       0      2.5",
        "total        3          3        3       1      7.5",
    ]


def test_tick_line_and_integer_ranks() -> None:
    line = report.tick_line(
        "tick 2024-05-01T03:00Z", [job("ingest", 1, 2), job("feed", 2, 1)], 3.14
    )
    assert line == "tick 2024-05-01T03:00Z  2 jobs  3 datums processed  2 skipped  0 failed  3.1 s"
    assert [report.format_rank(v) for v in (522.0, 1.0, 2.5)] == ["522", "1", "2.5"]


def test_quiet_console_reports_a_failed_job_and_nothing_else(
    capsys: pytest.CaptureFixture[str],
) -> None:
    console = Console(quiet=True)
    progress = console.progress()
    progress.job_finished(job("ingest", 1, 1))
    progress.job_finished(job("feed", 2, 0, "failure"))
    console.say("chatter")
    console.tick_done(datetime(2024, 5, 1, 1, tzinfo=UTC))
    assert capsys.readouterr().err == "FAILED job feed@j2 (failure): 1 datum(s) failed\n"


def test_console_says_one_line_per_tick(capsys: pytest.CaptureFixture[str]) -> None:
    console = Console(quiet=False)
    progress = console.progress()
    progress.job_finished(job("ingest", 1, 1))
    progress.job_finished(job("feed", 2, 1))
    console.tick_done(datetime(2024, 5, 1, 1, tzinfo=UTC))
    err = capsys.readouterr().err
    assert err.startswith("tick 2024-05-01T01:00Z  2 jobs  2 datums processed  2 skipped  0 failed")
    assert err.count("\n") == 1
    assert console.take_jobs()[0] == []  # the tick's jobs went with its line


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("  <- ingest@abc0 (see above)", ("ingest", "abc0")),
        ("feed@c8 (pipeline feed)", ("feed", "c8")),
    ],
)
def test_the_tree_parser_of_this_file_reads_both_kinds_of_line(
    line: str, key: tuple[str, str]
) -> None:
    match = NODE.match(line)
    assert match is not None and match.groups() == key
