"""Snapshot tables in the ``ingest`` repo: which export run is the current state.

``public_profile`` and ``public_follower`` are exported as full snapshots, one
*run* at a time, its rows split into parts ``<STAMP>-<part:012d>.parquet``,
``<STAMP>`` being the run's export time (``YYYYmmddTHHMMSSZ``). Ingest files
each object under the tick whose window it *landed* in, so the parts of one run
can sit in several ``dtime=<T>`` partitions, and a run can still be landing
when a reader looks.

The contract: after its last part, an export run writes its completion marker
``<prefix>/<table>/<STAMP>.complete.json`` holding ``{"parts": N}`` (Hadoop's
``_SUCCESS`` file, with the count). Ingest accepts a marker only for a snapshot
table, validates it and files it next to the parts, as
``/<table>/dtime=<T>/<STAMP>.complete.json`` (canonical ``{"parts": N}``).

Reading (:func:`choose_run`): every run of a table is assembled across all its
partitions (a file that landed twice: the copy in the newest partition wins).
The current state is the newest *complete* run: its marker present and exactly
the parts ``0 .. N-1``; newer runs still landing are skipped with a note. When
no run has a marker (exports from before the contract), the newest run whose
parts are numbered ``0 .. k`` without a gap is used, with a note that its
completeness could not be checked. A run's *completing tick* is the newest tick
among the partitions holding the files used (its parts and marker).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from lensfeed.parquet import list_partitions, read_parts
from lensfeed.schemas import FOLLOWERS, PROFILES

#: The tables exported as full snapshots; only these have completion markers.
SNAPSHOT_TABLES = (PROFILES, FOLLOWERS)
MARKER_SUFFIX = ".complete.json"
#: A marker is one small JSON object; anything larger is not one.
MAX_MARKER_BYTES = 4096
PART_NAME = re.compile(r"(\d{8}T\d{6}Z)-(\d+)\.parquet")
MARKER_NAME = re.compile(r"(\d{8}T\d{6}Z)\.complete\.json")
_SHOWN_RUNS = 3


class MarkerError(ValueError):
    """A completion marker that cannot be used; the message is the verdict."""


class SnapshotError(ValueError):
    """No usable snapshot of a table (or a snapshot partition that cannot be read)."""


def marker_bytes(parts: int) -> bytes:
    """The canonical marker of a run of ``parts`` parts: ``{"parts": N}`` and a newline."""
    return (json.dumps({"parts": parts}) + "\n").encode()


def check_marker_size(size: int) -> None:
    """Raise :class:`MarkerError` when ``size`` bytes is too large for a marker."""
    if size > MAX_MARKER_BYTES:
        raise MarkerError(
            f"completion marker is {size} bytes; expected a small JSON object "
            f'like {{"parts": 3}} (at most {MAX_MARKER_BYTES} bytes)'
        )


def parse_marker(data: bytes) -> int:
    """The part count a completion marker declares.

    Raises:
        MarkerError: too large, not UTF-8 JSON, not an object, or ``parts`` missing
            or not an integer >= 1 (extra fields are ignored).
    """
    check_marker_size(len(data))
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise MarkerError("completion marker is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise MarkerError(f"completion marker is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        kind = type(doc).__name__
        raise MarkerError(
            f'completion marker must be a JSON object like {{"parts": 3}}, not {kind}'
        )
    if "parts" not in doc:
        raise MarkerError("completion marker has no field 'parts' (the number of parts of its run)")
    parts = doc["parts"]
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise MarkerError(f"completion marker field 'parts' must be an integer >= 1, got {parts!r}")
    return parts


# -- the exporter's side ------------------------------------------------------------------------


class PlannedPart(Protocol):
    """What :func:`plan_markers` needs of an export object (the generator's export objects)."""

    @property
    def table(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def parts(self) -> int: ...


@dataclass(frozen=True)
class PlannedMarker:
    """A run's completion marker: object name, bytes, and the positions of its parts."""

    name: str
    data: bytes
    members: tuple[int, ...]


def plan_markers(objects: Sequence[PlannedPart]) -> list[PlannedMarker]:
    """The marker of every snapshot run whose parts are all among ``objects``.

    A run with a part missing gets no marker: the exporter writes it only after
    the last part. Sorted by the position of each run's last part.
    """
    runs: dict[str, dict[int, int]] = {}  # run -> part number -> position
    for i, obj in enumerate(objects):
        head, _, base = obj.name.rpartition("/")
        match = PART_NAME.fullmatch(base)
        if obj.table in SNAPSHOT_TABLES and match is not None:
            runs.setdefault(f"{head}/{match[1]}", {})[int(match[2])] = i
    planned = []
    for run, members in runs.items():
        count = objects[next(iter(members.values()))].parts
        if set(members) == set(range(count)):
            positions = tuple(sorted(members.values()))
            planned.append(PlannedMarker(run + MARKER_SUFFIX, marker_bytes(count), positions))
    return sorted(planned, key=lambda m: max(m.members))


# -- the reader's side --------------------------------------------------------------------------


@dataclass(frozen=True)
class LandedFile:
    """One file of a snapshot table in the ingest repo: a part, or a marker (``part`` None)."""

    tick: datetime
    path: Path
    stamp: str
    part: int | None
    declared: int | None = None  # a marker's part count


@dataclass(frozen=True)
class Run:
    """One export run of a table as assembled across partitions (newest copy of each file)."""

    table: str
    stamp: str
    parts: Mapping[int, LandedFile]
    marker: LandedFile | None

    @property
    def declared(self) -> int | None:
        return None if self.marker is None else self.marker.declared

    def missing(self) -> list[int]:
        """Part numbers absent: below the marker's count, or (no marker) below the highest landed."""
        top = self.declared if self.declared is not None else max(self.parts, default=-1) + 1
        return [n for n in range(top) if n not in self.parts]

    def complete(self) -> bool:
        return self.declared is not None and set(self.parts) == set(range(self.declared))

    def completed(self) -> datetime:
        """The completing tick: the newest partition holding a file of the run."""
        files = [*self.parts.values(), *([self.marker] if self.marker else [])]
        return max(f.tick for f in files)

    def problem(self) -> str:
        """Why the run is not usable, e.g. ``3 of 5 parts landed (missing 3, 4)``."""
        landed = len(self.parts)
        if self.declared is None:
            gap = f", missing {_numbers(self.missing())}" if self.missing() else ""
            return f"{landed} part(s) landed{gap}, no completion marker yet"
        extra = sorted(n for n in self.parts if n >= self.declared)
        if extra:
            return f"parts {_numbers(extra)} beyond the {self.declared} its marker declares"
        return f"{landed} of {self.declared} parts landed (missing {_numbers(self.missing())})"


@dataclass(frozen=True)
class Choice:
    """The run chosen as a table's current state, and the notes for stderr."""

    run: Run
    notes: tuple[str, ...]


def _numbers(values: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _landed(tick: datetime, path: Path) -> LandedFile:
    part, marker = PART_NAME.fullmatch(path.name), MARKER_NAME.fullmatch(path.name)
    if part is not None:
        return LandedFile(tick, path, part[1], int(part[2]))
    if marker is None:
        raise SnapshotError(
            f"{path}: neither a snapshot part (<STAMP>-<part>.parquet) "
            f"nor a completion marker (<STAMP>{MARKER_SUFFIX})"
        )
    try:
        declared = parse_marker(path.read_bytes())
    except MarkerError as exc:
        raise SnapshotError(f"{path}: {exc}") from None
    return LandedFile(tick, path, marker[1], None, declared)


def list_landed(table_dir: Path) -> list[LandedFile]:
    """Every part and marker under ``<table_dir>/dtime=<T>/`` (reads the markers).

    Raises:
        SnapshotError: no ``dtime=`` partition, a partition not named by an RFC 3339
            tick, an unexpected file, or an unreadable marker.
    """
    try:
        partitions = list_partitions(table_dir)
    except ValueError as exc:
        raise SnapshotError(str(exc)) from None
    if not partitions:
        raise SnapshotError(f"no dtime= partition under {table_dir}")
    found = []
    for partition in partitions:
        found += [_landed(partition.tick, path) for path in sorted(partition.path.iterdir())]
    return found


def assemble_runs(table: str, files: Iterable[LandedFile]) -> list[Run]:
    """Group files into runs, newest run first; of a file that landed twice, the newest copy."""
    parts: dict[str, dict[int, LandedFile]] = {}
    markers: dict[str, LandedFile] = {}
    for f in sorted(files, key=lambda f: f.tick):  # later ticks overwrite earlier copies
        if f.part is None:
            markers[f.stamp] = f
        else:
            parts.setdefault(f.stamp, {})[f.part] = f
    stamps = sorted({*parts, *markers}, reverse=True)
    return [Run(table, s, parts.get(s, {}), markers.get(s)) for s in stamps]


def _not_found(table: str, runs: Sequence[Run]) -> SnapshotError:
    if not runs:
        return SnapshotError(f"{table}: no snapshot part in any dtime= partition")
    shown = "; ".join(f"run {r.stamp}: {r.problem()}" for r in runs[:_SHOWN_RUNS])
    more = f"; and {len(runs) - _SHOWN_RUNS} older run(s)" if len(runs) > _SHOWN_RUNS else ""
    return SnapshotError(f"{table}: no complete snapshot among {len(runs)} run(s): {shown}{more}")


def choose_run(table: str, runs: Sequence[Run]) -> Choice:
    """The newest complete run (see the module doc), with a note per newer run skipped.

    Args:
        table: the table name, for the messages.
        runs: from :func:`assemble_runs`, newest first.

    Raises:
        SnapshotError: no run is complete (or, without markers, none is gap-free).
    """
    checked = any(r.marker is not None for r in runs)
    for i, run in enumerate(runs):
        usable = run.complete() if checked else bool(run.parts) and not run.missing()
        if not usable:
            continue
        notes = [f"{table} run {r.stamp}: {r.problem()}; using run {run.stamp}" for r in runs[:i]]
        if not checked:
            notes.append(
                f"{table}: no run has a completion marker (exports from before the "
                f"marker contract); using run {run.stamp} with the {len(run.parts)} part(s) "
                "landed: completeness could not be checked"
            )
        return Choice(run, tuple(notes))
    raise _not_found(table, runs)


def read_run(run: Run, columns: list[str] | None = None) -> Any:
    """The rows of a run's parts in part order, as one ``pyarrow.Table``."""
    return read_parts([run.parts[n].path for n in sorted(run.parts)], columns=columns)


def current_snapshot(table_dir: Path, table: str) -> Choice:
    """The run of ``table`` to read under ``table_dir`` (``/pfs/<input>/<table>``)."""
    return choose_run(table, assemble_runs(table, list_landed(table_dir)))
