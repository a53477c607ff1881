"""``post_score``: ages, per-author maxima and ``post_score`` with the features
transforms on the features engine, against a pandas row-wise ``apply``; every row's
values compared."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from bench import baselines
from bench.harness import paired, row, timed
from bench.scenarios import FEATURE_TIME


def posts_frame(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` posts by ``n / 10`` authors (a skewed share each), counters mostly small, many 0."""
    authors = max(n // 10, 1)
    author = np.minimum((authors * rng.random(n) ** 2).astype(np.int64), authors - 1)
    seconds = rng.integers(0, 3 * 365 * 86_400, n)
    stamps = pd.Timestamp(FEATURE_TIME) - pd.to_timedelta(seconds, unit="s")
    return pd.DataFrame(
        {
            "post_id": [f"0x{a:05x}-0x{i:06x}" for i, a in enumerate(author.tolist())],
            "profile_id": [f"0x{a:05x}" for a in author.tolist()],
            "block_timestamp": stamps.astype("datetime64[us, UTC]"),
            "mirrors": rng.geometric(0.5, n) - 1,
            "collects": rng.geometric(0.8, n) - 1,
            "comments": rng.geometric(0.4, n) - 1,
        }
    )


def bench_post_score(scale: dict[str, Any], repeat: int) -> list[dict[str, Any]]:
    import pyarrow as pa

    from lensfeed import features, frames

    engine = frames.engine_name()
    start_s, session = timed(lambda: frames.open_session("lensfeed-bench"))
    F = frames.api(session).F
    posts = posts_frame(scale["posts"], np.random.default_rng(2))
    frame = frames.from_arrow(session, pa.Table.from_pandas(posts, preserve_index=False))
    if engine == "spark":
        frame = frame.cache()
        frame.count()
    columns = ["post_id", "age", "max_age", "max_mirrors", "max_collects", "max_comments"]

    def ours_plan() -> Any:
        scored = features.add_post_score(
            features.add_author_maxima(features.add_age(frame, FEATURE_TIME))
        )
        return scored.select(*columns, "post_score")

    def ours() -> None:  # the whole plan, into the engine's own memory or nowhere
        if engine == "spark":
            ours_plan().write.format("noop").mode("overwrite").save()
        else:
            frames.materialize(ours_plan())

    feature_time = pd.Timestamp(FEATURE_TIME)
    small = posts.iloc[: max(len(posts) // 50, 10)]
    for _ in range(2):  # the JVM's JIT needs a few runs of the plan (paired adds one more)
        ours()
    times = paired(
        {"ours": ours, "apply": lambda: baselines.post_score_apply(posts, feature_time)},
        repeat,
        warmups={"apply": lambda: baselines.post_score_apply(small, feature_time)},
    )
    # values: every row, ours collected (untimed) against the baseline's
    collect_s, table = timed(lambda: ours_plan().orderBy(F.col("post_id")).toArrow())
    mine = table.to_pandas()
    theirs = baselines.post_score_apply(posts, feature_time).sort_values("post_id")
    same_ids = bool((mine["post_id"].to_numpy() == theirs["post_id"].to_numpy()).all())
    ints_equal = same_ids and all(
        (mine[c].to_numpy() == theirs[c].to_numpy()).all() for c in columns[1:]
    )
    worst = float(np.abs(mine["post_score"].to_numpy() - theirs["post_score"].to_numpy()).max())
    equal = ints_equal and worst <= 1e-9
    frames.close_session(session)
    extra = {
        "posts": len(posts),
        "engine": engine,
        "session_start_s": round(start_s, 3),
        "collect_to_arrow_s": round(collect_s, 3),
        "values_equal": equal,
        "max_abs_score_diff": worst,
        "rows_compared": len(mine),
    }
    return [
        row(
            "post_score",
            f"post_score + author maxima, {len(posts):,} posts ({engine})",
            times["ours"],
            times["apply"],
            speedup=True,
            target=20,
            extra=extra,
            ok=equal,
        )
    ]
