"""The store: versioned files (PFS) and the pipeline system's records (PPS) on one SQLite
database, beside content-addressed objects. All of pachlocal's SQL lives in this package.

Layout of a state directory (``PACHLOCAL_HOME``, default ``./.pachlocal``)::

    meta.db            SQLite (WAL): repos, branches, commits, pipelines, jobs, datums
    objects/ab/<hash>  file contents, named by their SHA-256, written once
    tmp/               scratch on the same filesystem, so that renames are atomic
    lock               advisory lock held by the one process that writes

Rooms: :mod:`.objects` (objects and manifests), :mod:`.pfs` (repos, branches, commits),
:mod:`.pps` (pipelines, commit sets, jobs, datums), :mod:`.schema` (tables and
migrations), :mod:`.fsck` (invariants), :mod:`.killpoints` (crash injection).
"""

from .errors import Commit, Entry, NotFound, StoreError, check_name, clean_path, new_id
from .fsck import FsckReport, fsck_report
from .killpoints import killpoint, killpoints_passed
from .objects import (
    ObjectStore,
    apply_changes,
    collision_error,
    decode_manifest,
    encode_manifest,
    path_collision,
)
from .pfs import Store, TriggeredBranch, default_home
from .pps import JOB_DONE, DatumRow, PpsRecords

__all__ = [
    "JOB_DONE",
    "Commit",
    "DatumRow",
    "Entry",
    "FsckReport",
    "NotFound",
    "ObjectStore",
    "PpsRecords",
    "Store",
    "StoreError",
    "TriggeredBranch",
    "apply_changes",
    "check_name",
    "clean_path",
    "collision_error",
    "decode_manifest",
    "default_home",
    "encode_manifest",
    "fsck_report",
    "killpoint",
    "killpoints_passed",
    "new_id",
    "path_collision",
]
