"""Ingest: copy the export objects that landed in one tick's window into PFS.

Grain: one output directory per (table, tick). Tick ``T`` of a schedule, whose
previous scheduled tick is ``P``, takes exactly the objects whose *landing time*
is in ``(P, T]``; consecutive scheduled ticks partition time, so every object is
taken by exactly one tick whatever the upload order, an object landing exactly
on ``T`` belongs to ``T``, and objects that land while the pipeline is down are
taken when the missed ticks are backfilled. An off-schedule tick (``pachctl run
cron``) gets the empty window ``(T, T]``: its objects belong to a scheduled tick.

Landing time (:func:`landing_time`): metadata ``landed_at`` (RFC 3339) when
present (the simulated uploader sets it), else ``custom_time`` when the time
source is ``custom_time``, else the server's ``time_created``.

Assumption: an object whose landing time is at most ``T`` is listed by the time
tick ``T`` lists the bucket. With ``time_created`` that holds up to clock skew
between GCS and the scheduler; a live tick may wait ``settle`` past ``T`` first
(:func:`settle_seconds`), backfilled ticks never wait. Re-running a tick over
an unchanged bucket gives the same partition, byte for byte; an object
overwritten after its tick lands again (new generation) in a later window, and
objects landing at or before the cron input's ``start`` are never taken.

Completion markers (:mod:`lensfeed.snapshots`): a snapshot table's export run
(``public_profile``, ``public_follower``) ends with
``<prefix>/<table>/<STAMP>.complete.json``, ``{"parts": N}``. It is taken like
any object (by landing time), validated (a JSON object whose ``parts`` is an
integer >= 1) and written as ``/<table>/dtime=<T>/<STAMP>.complete.json`` in
canonical form, with ``rows`` 0 in the manifest. A marker of an increment table
(posts, stats) is rejected, so their readers never see one.

Outputs of :func:`ingest_tick` under ``out_dir`` (paths as in the repo):
``/<table>/dtime=<T>/<basename>`` (validated, conformed Parquet, or a marker),
``/_manifest/<T>.json`` (always, written last) and ``/_rejected/<T>.json``
(only when something was rejected). A bad object is rejected, never fatal; an
unreachable bucket (:class:`lensfeed.gcs.StoreError`) is fatal.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from croniter import croniter

from lensfeed.gcs import (
    LANDED_AT,
    ExportStore,
    ObjectGone,
    ObjectInfo,
    md5_base64,
    parse_rfc3339,
    rfc3339,
)
from lensfeed.parquet import parquet_bytes, partition_path, read_table, tick_name
from lensfeed.schemas import TABLES, SchemaError, conform_table, validate_table
from lensfeed.snapshots import (
    MARKER_NAME,
    SNAPSHOT_TABLES,
    MarkerError,
    check_marker_size,
    marker_bytes,
    parse_marker,
)

TIME_SOURCES = ("time_created", "custom_time")
MAX_NAME_BYTES = 1024
_BASENAME = re.compile(r"\d{8}T\d{6}Z-\d+\.parquet")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class ExportError(ValueError):
    """An export object that cannot be ingested; the message is its verdict."""


def parse_duration(text: str) -> timedelta:
    """A Go-style duration (``1h``, ``90s``, ``1h30m``, ``0``) as whole seconds."""
    pos, seconds = 0, 0.0
    while pos < len(text):
        match = _DURATION.match(text, pos)
        if match is None:
            break
        seconds, pos = seconds + float(match[1]) * _UNIT_SECONDS[match[2]], match.end()
    if text == "0":
        return timedelta(0)
    if not text or pos != len(text):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 90s, 1h or 1h30m")
    return timedelta(seconds=int(seconds))


def tick_window(schedule: str, tick: datetime) -> tuple[datetime, datetime]:
    """The landing-time window ``(P, T]`` of tick ``T`` under a Pachyderm cron spec.

    ``@every D`` ticks are ``D`` apart, so ``P = T - D`` (at least 1 s, as
    Pachyderm rounds). Other specs (``@hourly``, ``@daily``, 5 fields) use
    croniter: ``P`` is the last scheduled time before ``T``; a ``T`` that is not
    itself scheduled gets the empty window ``(T, T]``.

    Raises:
        ValueError: an invalid spec or a naive ``tick``.
    """
    if tick.tzinfo is None:
        raise ValueError(f"tick {tick.isoformat()} has no time zone")
    tick = tick.astimezone(UTC)
    if schedule.startswith("@every "):
        period = max(parse_duration(schedule.removeprefix("@every ").strip()), timedelta(seconds=1))
        return tick - period, tick
    if not croniter.is_valid(schedule):
        raise ValueError(f"invalid cron schedule {schedule!r}")
    prev: datetime = croniter(schedule, tick).get_prev(datetime)
    if croniter(schedule, prev).get_next(datetime) != tick:
        return tick, tick
    return prev.astimezone(UTC).replace(fold=0), tick


def settle_seconds(tick: datetime, now: datetime, settle: timedelta) -> float:
    """How long a live tick waits so that objects landed by ``T`` are listed (0 for past ticks)."""
    return max(0.0, (tick + settle - now).total_seconds())


def landing_time(obj: ObjectInfo, time_source: str = "time_created") -> datetime:
    """When an object landed: ``landed_at``, else ``custom_time`` if chosen, else ``time_created``.

    A malformed ``landed_at`` falls back to the next source (and is rejected by
    :func:`ingest_tick` in the window it falls in).
    """
    if time_source not in TIME_SOURCES:
        raise ValueError(f"time source {time_source!r}: expected one of {', '.join(TIME_SOURCES)}")
    landed = parse_rfc3339(obj.metadata.get(LANDED_AT, ""))
    if landed is not None:
        return landed
    if time_source == "custom_time" and obj.custom_time is not None:
        return obj.custom_time.astimezone(UTC)
    return obj.time_created.astimezone(UTC)


def select_window(
    objects: Iterable[ObjectInfo],
    prev: datetime,
    tick: datetime,
    time_source: str = "time_created",
) -> list[ObjectInfo]:
    """The objects whose landing time is in ``(prev, tick]``, sorted by name."""
    chosen = [o for o in objects if prev < landing_time(o, time_source) <= tick]
    return sorted(chosen, key=lambda o: (o.name, o.generation))


def check_object_name(name: str) -> str | None:
    """Why an object name is unsafe to use as a path, or None when it is fine."""
    size = len(name.encode("utf-8", "surrogatepass"))
    if size >= MAX_NAME_BYTES:
        return f"name is {size} bytes; names must be under {MAX_NAME_BYTES}"
    for char in name:
        if ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:
            return f"name contains control character U+{ord(char):04X}"
    if not name:
        return "name is empty"
    if name.startswith("/"):
        return "name is an absolute path"
    if ".." in name.split("/"):
        return "name has a '..' component"
    return None


def _layout(name: str, prefix: str) -> tuple[str, str] | None:
    """(table, basename) of ``<prefix>/<table>/<YYYYmmddTHHMMSSZ>-<part>.parquet`` or a marker."""
    head = prefix.strip("/") + "/"
    parts = name.removeprefix(head).split("/") if name.startswith(head) else []
    if len(parts) != 2 or not parts[0]:
        return None
    if not (_BASENAME.fullmatch(parts[1]) or MARKER_NAME.fullmatch(parts[1])):
        return None
    return parts[0], parts[1]


def table_of(name: str, prefix: str) -> str | None:
    """The source table an object belongs to, or None (bad layout or unknown table)."""
    layout = _layout(name, prefix) if check_object_name(name) is None else None
    return layout[0] if layout is not None and layout[0] in TABLES else None


def name_problem(name: str, prefix: str) -> str | None:
    """The verdict on an object name: unsafe, off-layout or of an unknown table; None if fine."""
    problem = check_object_name(name)
    if problem is not None:
        return problem
    layout = _layout(name, prefix)
    if layout is None and name.endswith(".json"):
        return (
            f"name does not match {prefix.strip('/')}/<table>/<YYYYmmddTHHMMSSZ>.complete.json"
            " (a snapshot run's completion marker)"
        )
    if layout is None:
        return f"name does not match {prefix.strip('/')}/<table>/<YYYYmmddTHHMMSSZ>-<part>.parquet"
    if layout[0] not in TABLES:
        return f"unknown table {layout[0]!r}; known tables: {', '.join(sorted(TABLES))}"
    return None


def _not_parquet(data: bytes) -> str:
    # a UTF-8 byte order mark (Excel, PowerShell) must not hide what follows it
    text = data[:4096].removeprefix(b"\xef\xbb\xbf").lstrip()
    if text[:1] in (b"{", b"["):
        return "not Parquet: looks like JSON"
    try:
        first = text.decode("utf-8").splitlines()[0] if text else ""
    except UnicodeDecodeError:
        first = ""
    if "," in first or "\t" in first:
        return "not Parquet: looks like CSV"
    return "not Parquet: no PAR1 magic at the start"


def parse_export(table: str, data: bytes) -> Any:
    """Read one export object as a ``pyarrow.Table``.

    Raises:
        ExportError: zero bytes, not Parquet (CSV, JSON, other), truncated or unreadable.
    """
    if not data:
        raise ExportError("empty object (0 bytes)")
    if not data.startswith(b"PAR1"):
        raise ExportError(_not_parquet(data))
    if len(data) < 12 or not data.endswith(b"PAR1"):
        raise ExportError(f"truncated Parquet: no footer in {len(data)} bytes")
    try:
        return read_table(data)
    except (pa.ArrowException, OSError) as exc:
        raise ExportError(f"unreadable Parquet ({table}): {exc}") from None


def conform_export(table: str, data: bytes) -> Any:
    """Parse, validate and conform one export object; ExportError lists every problem."""
    parsed = parse_export(table, data)
    problems = validate_table(table, parsed)
    if problems:
        raise ExportError("; ".join(problems))
    try:
        return conform_table(table, parsed)
    except SchemaError as exc:
        raise ExportError(str(exc)) from None


def write_atomic(out_dir: Path, path: str, data: bytes) -> Path:
    """Write ``data`` at repo path ``path`` under ``out_dir`` via a temporary file and a rename.

    Raises:
        ValueError: the path would land outside ``out_dir``.
    """
    root = out_dir.resolve()
    target = (root / path.lstrip("/")).resolve()
    if not target.is_relative_to(root) or target == root:
        raise ValueError(f"refusing to write {path!r} outside {out_dir}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def _json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class TickReport:
    """What one tick took: manifest entries and rejections, both sorted by object."""

    tick: datetime
    prev: datetime
    manifest: list[dict[str, Any]]
    rejected: list[dict[str, str]]

    def summary(self) -> str:
        rows = sum(int(entry["rows"]) for entry in self.manifest)
        return (
            f"tick {tick_name(self.tick)}: window ({rfc3339(self.prev)}, {rfc3339(self.tick)}], "
            f"{len(self.manifest)} objects ingested ({rows} rows), {len(self.rejected)} rejected"
        )


def _ingest_object(
    store: ExportStore, obj: ObjectInfo, prefix: str, tick: datetime, time_source: str
) -> tuple[dict[str, Any], bytes]:
    """One object's manifest entry and output bytes; ExportError is its rejection."""
    problem = name_problem(obj.name, prefix)
    if problem is not None:
        raise ExportError(problem)
    if LANDED_AT in obj.metadata and parse_rfc3339(obj.metadata[LANDED_AT]) is None:
        raise ExportError(f"metadata {LANDED_AT} is not an RFC 3339 time with a zone")
    table, basename = obj.name.split("/")[-2:]
    marker = MARKER_NAME.fullmatch(basename) is not None
    if marker and table not in SNAPSHOT_TABLES:
        raise ExportError(
            f"a completion marker belongs to a snapshot table ({', '.join(SNAPSHOT_TABLES)}); "
            f"{table} is exported as increments"
        )
    try:
        if marker:  # before reading it: a marker is small
            check_marker_size(obj.size)
        data = store.read(obj.name, obj.generation)
    except (MarkerError, ObjectGone) as exc:
        raise ExportError(str(exc)) from None
    if len(data) != obj.size or (obj.md5 is not None and md5_base64(data) != obj.md5):
        raise ExportError("content does not match the listed size and MD5 (changed since listing)")
    output, rows = _marker_output(data) if marker else _parquet_output(table, data)
    entry = {
        "object": f"gs://{store.bucket}/{obj.name}",
        "table": table,
        "generation": str(obj.generation),
        "md5": obj.md5,
        "size": obj.size,
        "landed": rfc3339(landing_time(obj, time_source)),
        "rows": rows,
        "path": partition_path(table, tick, basename),
    }
    return entry, output


def _parquet_output(table: str, data: bytes) -> tuple[bytes, int]:
    conformed = conform_export(table, data)
    return parquet_bytes(conformed), conformed.num_rows


def _marker_output(data: bytes) -> tuple[bytes, int]:
    """A marker in canonical form (extra fields dropped); it carries no rows."""
    try:
        return marker_bytes(parse_marker(data)), 0
    except MarkerError as exc:
        raise ExportError(str(exc)) from None


def ingest_tick(
    store: ExportStore,
    prefix: str,
    prev: datetime,
    tick: datetime,
    out_dir: Path,
    *,
    time_source: str = "time_created",
) -> TickReport:
    """Copy the objects that landed in ``(prev, tick]`` into ``out_dir`` (see the module doc).

    Args:
        store: the export bucket.
        prefix: first name component of the export objects (``lens``).
        prev, tick: the window bounds (aware datetimes; ``prev == tick`` is empty).
        out_dir: the output directory (``/pfs/out``); nothing is written outside it.
        time_source: ``time_created`` or ``custom_time`` (``landed_at`` always wins).

    Returns:
        The manifest entries and rejections written.

    Raises:
        StoreError: the bucket cannot be listed or read (after retries).
    """
    if time_source not in TIME_SOURCES:
        raise ValueError(f"time source {time_source!r}: expected one of {', '.join(TIME_SOURCES)}")
    listed = store.list_objects(prefix.strip("/") + "/")
    manifest: list[dict[str, Any]] = []
    rejected: list[dict[str, str]] = []
    for obj in select_window(listed, prev, tick, time_source):
        try:
            entry, data = _ingest_object(store, obj, prefix, tick, time_source)
        except ExportError as exc:
            rejected.append({"object": f"gs://{store.bucket}/{obj.name}", "problem": str(exc)})
            continue
        write_atomic(out_dir, entry["path"], data)
        manifest.append(entry)
    manifest.sort(key=lambda e: str(e["object"]))
    rejected.sort(key=lambda r: (r["object"], r["problem"]))
    name = tick_name(tick)
    if rejected:
        write_atomic(out_dir, f"/_rejected/{name}.json", _json_bytes(rejected))
    write_atomic(out_dir, f"/_manifest/{name}.json", _json_bytes(manifest))
    return TickReport(tick, prev, manifest, rejected)
