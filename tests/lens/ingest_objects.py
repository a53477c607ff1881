"""Times and listed objects shared by the ingest tests."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lensfeed.gcs import (
    ObjectInfo,
)
from lensrun.generate import ExportObject
from tests.conftest import EMULATOR_BUCKET

START = datetime(2024, 5, 1, tzinfo=UTC)
END = datetime(2024, 5, 1, 6, tzinfo=UTC)
HOUR = timedelta(hours=1)
US = timedelta(microseconds=1)
BUCKET = EMULATOR_BUCKET


def tick(hour: int) -> datetime:
    return START + hour * HOUR


def info(name: str, created: datetime, **kw: Any) -> ObjectInfo:
    return ObjectInfo(name=name, size=1, generation=1, md5=None, time_created=created, **kw)


OFFSETS = (timedelta(0), US, -US, timedelta(minutes=17))


def edge_landing(exports: list[ExportObject]) -> dict[str, datetime]:
    """Landing times one hour after export, nudged onto, just after and just before tick edges."""
    return {o.name: o.export_time + HOUR + OFFSETS[i % 4] for i, o in enumerate(exports)}


def expected_tick(landed: datetime) -> datetime:
    """The scheduled hourly tick whose window (T - 1h, T] holds ``landed`` (an independent oracle)."""
    micros = (landed - START) // US
    hour_us = HOUR // US
    return START + -(-micros // hour_us) * HOUR


def manifests(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "_manifest").glob("*.json"))}


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def gs(name: str) -> str:
    return f"gs://{BUCKET}/{name}"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
