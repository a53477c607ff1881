"""``feed_push``: :func:`lensfeed.pg.replace_feed` against pandas ``to_sql`` and a raw
``COPY`` of the same rows into embedded PostgreSQL; after one more (untimed) push of
each side the whole table is compared with the rows."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from bench import baselines
from bench.harness import paired, row

STRATEGY = "ml-xgb-followship"


def feed_rows(n: int, rng: np.random.Generator) -> pd.DataFrame:
    profiles = rng.integers(1, 200_000, n)
    posts = rng.permutation(n) + 1
    post_id = [
        f"0x{a:04x}-0x{b:02x}" for a, b in zip(profiles.tolist(), posts.tolist(), strict=True)
    ]
    return pd.DataFrame({"post_id": post_id, "v": rng.random(n)})


def bench_feed_push(scale: dict[str, Any], repeat: int) -> list[dict[str, Any]]:
    import sqlalchemy

    from lensfeed import pg
    from lensrun.pgserver import EmbeddedPostgres

    rows = feed_rows(scale["feed"], np.random.default_rng(1))
    csv = baselines.feed_csv(STRATEGY, rows)
    run = {"commit_id": "bench", "input_commits": {"predictions": "bench"}, "feed_sha256": "0" * 64}
    with (
        tempfile.TemporaryDirectory(prefix="lensfeed-bench-") as tmp,
        EmbeddedPostgres(Path(tmp) / "pgdata") as server,
    ):
        conn = pg.connect(server.dsn)
        engine = sqlalchemy.create_engine(baselines.sqlalchemy_url(server.dsn))
        try:
            pg.ensure_schema(conn)

            def setup() -> None:
                conn.execute("TRUNCATE feed, feed_runs")
                conn.execute("CHECKPOINT")

            expected = sorted(
                zip([STRATEGY] * len(rows), rows["post_id"], rows["v"].tolist(), strict=True)
            )

            def same_table() -> bool:
                """Whether the table holds exactly the pushed rows (every value equal)."""
                got = conn.execute("SELECT strategy_name, post_id, v FROM feed").fetchall()
                return sorted(got) == expected

            times = paired(
                {
                    "ours": lambda: pg.replace_feed(conn, STRATEGY, rows, run),
                    "to_sql": lambda: baselines.feed_push_to_sql(engine, STRATEGY, rows),
                    "copy": lambda: baselines.feed_push_copy_csv(conn, STRATEGY, csv),
                },
                repeat,
                setup=setup,
            )
            equal = {}
            for name, push in (
                ("ours", lambda: pg.replace_feed(conn, STRATEGY, rows, run)),
                ("to_sql", lambda: baselines.feed_push_to_sql(engine, STRATEGY, rows)),
                ("copy", lambda: baselines.feed_push_copy_csv(conn, STRATEGY, csv)),
            ):
                setup()
                push()
                equal[name] = same_table()
        finally:
            engine.dispose()
            conn.close()
    extra = {"rows": len(rows), "tables_equal": equal}
    same = all(equal.values())
    return [
        row(
            "feed_push_vs_to_sql",
            f"feed push {len(rows):,} rows vs to_sql",
            times["ours"],
            times["to_sql"],
            speedup=True,
            target=4,
            extra=extra,
            ok=same,
        ),
        row(
            "feed_push_vs_copy",
            f"feed push {len(rows):,} rows vs raw COPY",
            times["ours"],
            times["copy"],
            speedup=False,
            target=1.2,
            extra=extra,
            ok=same,
        ),
    ]
