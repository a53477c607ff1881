"""Content-addressed objects, and the commit manifests stored as objects."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO

from .errors import Entry, StoreError
from .killpoints import killpoint

CHUNK = 1 << 20


class ObjectStore:
    """Content-addressed blobs named by SHA-256, written once by atomic rename."""

    def __init__(self, root: Path) -> None:
        self.root = root / "objects"
        self.tmp = root / "tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            tmp = self.tmp / f"put-{uuid.uuid4().hex}"
            try:
                killpoint("object.write")
                tmp.write_bytes(data)
                self._install(tmp, digest)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                self._check_full(exc)
                raise
        return digest

    def put_stream(self, src: IO[bytes]) -> tuple[str, int]:
        h = hashlib.sha256()
        size = 0
        tmp = self.tmp / f"put-{uuid.uuid4().hex}"
        try:
            killpoint("object.write")
            with tmp.open("wb") as out:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            digest = h.hexdigest()
            if self.has(digest):
                tmp.unlink()
            else:
                self._install(tmp, digest)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                self._check_full(exc)
            raise
        return digest, size

    def _check_full(self, exc: OSError) -> None:
        """A full (or read-only) filesystem under the store is a clean error naming the store;
        any other OSError (say, reading the source) is left to the caller."""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
            raise StoreError(
                f"cannot write to the object store {self.root}: {exc.strerror}"
            ) from exc

    def adopt(self, file: Path) -> tuple[str, int]:
        """Move a finished file (e.g. a datum output) into the store; returns (hash, size)."""
        killpoint("object.adopt")
        h = hashlib.sha256()
        size = 0
        with file.open("rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
        digest = h.hexdigest()
        if self.has(digest):
            file.unlink()
        else:
            self._install(file, digest)
        return digest, size

    def _install(self, tmp: Path, digest: str) -> None:
        dest = self.path(digest)
        dest.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o444)
        killpoint("object.rename")
        os.replace(tmp, dest)
        killpoint("object.renamed")

    def read(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError as exc:
            raise StoreError(f"object {digest} is missing from the store") from exc

    def open(self, digest: str) -> IO[bytes]:
        return self.path(digest).open("rb")

    def verify(self, digest: str) -> bool:
        return self.verified_size(digest) is not None

    def verified_size(self, digest: str) -> int | None:
        """The object's size if it exists and re-hashes to its name, else None."""
        h = hashlib.sha256()
        size = 0
        try:
            with self.path(digest).open("rb") as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
                    size += len(chunk)
        except FileNotFoundError:
            return None
        return size if h.hexdigest() == digest else None

    def all_digests(self) -> Iterator[str]:
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir():
                for f in sorted(sub.iterdir()):
                    yield f.name


def encode_manifest(entries: Iterable[Entry]) -> bytes:
    rows = sorted((e.path, e.hash, e.size, e.datum) for e in entries)
    return "\n".join(json.dumps(r, separators=(",", ":")) for r in rows).encode()


def decode_manifest(data: bytes) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for line in data.splitlines():
        path, digest, size, datum = json.loads(line)
        out[path] = Entry(path, digest, size, datum)
    return out


# One change to a commit's files: (path, content hash, size); a hash of None deletes the
# file or the whole directory at ``path``.
Change = tuple[str, str | None, int]


def apply_changes(files: Mapping[str, Entry], changes: Iterable[Change]) -> dict[str, Entry]:
    """``files`` with ``changes`` applied in order (a later change to a path wins).

    Args:
        files: the parent commit's files, path -> entry; not modified.
        changes: puts and deletions, oldest first.

    Returns:
        The new file listing.
    """
    out = dict(files)
    for path, digest, size in changes:
        if digest is None:
            prefix = path.rstrip("/") + "/"
            for p in [p for p in out if p == path or p.startswith(prefix)]:
                del out[p]
        else:
            out[path] = Entry(path, digest, size)
    return out


def path_collision(paths: Iterable[str]) -> tuple[str, str] | None:
    """The first file that another file needs as a directory, with that file
    (``("/a", "/a/b")``), or None: Pachyderm's ``file / directory path collision``."""
    files = set(paths)
    clashes = []
    for path in files:
        i = path.find("/", 1)
        while i != -1:
            if path[:i] in files:
                clashes.append((path[:i], path))
                break
            i = path.find("/", i + 1)
    return min(clashes, key=lambda c: (c[1], c[0])) if clashes else None


def collision_error(files: Iterable[str], where: str, outcome: str) -> StoreError | None:
    """A :class:`StoreError` naming both paths of a file / directory collision, or None."""
    clash = path_collision(files)
    if clash is None:
        return None
    parent, child = clash
    return StoreError(
        f"{where}: file / directory path collision ({child}): {parent} is a file, so it "
        f"cannot also be the directory of {child}; {outcome}"
    )
