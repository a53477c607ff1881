"""The one module that knows the Pachyderm worker environment.

Entry points get their ``/pfs`` paths as arguments (``--input /pfs/posts``);
this module reads what only the worker environment says: which commit an
input came from, the job and output commit ids, and secrets passed as
environment variables. Outside a worker (tests, a laptop) the same functions
work with the variables unset.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from lensfeed.parquet import parse_tick


class MissingSecret(RuntimeError):
    """A secret the pipeline needs is absent: a hard error, never a default."""


def input_commit(name: str) -> str:
    """The commit id input ``name`` was read from (``<name>_COMMIT``), or ``""``."""
    return os.environ.get(f"{name}_COMMIT", "")


def output_commit() -> str:
    """The output commit this datum writes to (``PACH_OUTPUT_COMMIT_ID``), or ``""``."""
    return os.environ.get("PACH_OUTPUT_COMMIT_ID", "")


def job_id() -> str:
    return os.environ.get("PACH_JOB_ID", "")


def require_env(name: str, *, what: str) -> str:
    """A secret delivered as an environment variable; missing or empty is an error.

    Args:
        name: the variable (e.g. ``PGSQL_URL``).
        what: what it is for, for the message (never the value).
    """
    value = os.environ.get(name, "")
    if not value:
        raise MissingSecret(f"{name} is not set: {what} must come from a pipeline secret")
    return value


def optional_env(name: str, default: str = "") -> str:
    """A non-secret knob from ``transform.env``."""
    return os.environ.get(name, default) or default


def tick_times(cron_dir: Path) -> list[datetime]:
    """The tick times present in a cron input directory, oldest first."""
    out = []
    for entry in sorted(cron_dir.iterdir()) if cron_dir.exists() else []:
        out.append(parse_tick(entry.name))
    return out
