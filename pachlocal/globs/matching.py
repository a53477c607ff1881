"""Compiled globs and how PFS applies one to a commit: :class:`Glob`,
:func:`compile_glob`, :func:`match_ranges` and :func:`match_paths`.
"""

from __future__ import annotations

import bisect
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from .program import Program, compile_program
from .syntax import GlobError, UnsupportedGlob


def clean_path(p: str) -> str:
    """Pachyderm's ``pfsfile.CleanPath``: ``""`` -> ``/``, ``a/b/`` -> ``/a/b``."""
    cleaned = posixpath.normpath(p) if p else "."
    return "/" if cleaned == "." else "/" + cleaned.strip("/")


# Every match starts with the text before the first special character (or escape).
_LITERAL_PREFIX_END = re.compile(r"[*?\[\]{}!()@+^\\]")


@dataclass(frozen=True)
class Glob:
    """A compiled, cleaned glob (use :func:`compile_glob`)."""

    pattern: str
    program: Program = field(repr=False, compare=False)

    def match(self, path: str) -> bool:
        """True if the PFS path (file, or directory with or without ``/``) matches."""
        if path == "/" and self.pattern == "/":
            return True
        return self.program.matches(path.rstrip("/"))

    def captures(self, path: str) -> list[str] | None:
        """``[whole match, $1, $2, ...]`` (unmatched groups are ``""``), None if no match."""
        return self.program.groups(path.rstrip("/"))

    def replace(self, path: str, template: str) -> str:
        """ohmyglob's ``Replace``: ``$n``/``${n}`` -> capture n, ``$$`` -> ``$``.

        Captures that do not exist (or a path that does not match) expand to ``""``;
        a ``$`` not followed by digits stays as it is.
        """
        if "$" not in template:
            return template
        groups = self.captures(path) or []
        out: list[str] = []
        while template:
            i = template.find("$")
            if i < 0:
                break
            out.append(template[:i])
            template = template[i:]
            if template.startswith("$$"):
                out.append("$")
                template = template[2:]
                continue
            parsed = _extract(template)
            if parsed is None:
                out.append("$")
                template = template[1:]
                continue
            num, template = parsed
            if 0 <= num < len(groups):
                out.append(groups[num])
        out.append(template)
        return "".join(out)

    @property
    def literal_prefix(self) -> str:
        """The literal start every matching path shares (only used to skip work)."""
        m = _LITERAL_PREFIX_END.search(self.pattern)
        return self.pattern if m is None else self.pattern[: m.start()]


def _extract(template: str) -> tuple[int, str] | None:
    """Parse ``$n`` or ``${n}`` at the start of ``template``: (n or -1, rest)."""
    if len(template) < 2:
        return None
    brace = template[1] == "{"
    rest = template[2:] if brace else template[1:]
    i = 0
    while i < len(rest) and rest[i].isdecimal():
        i += 1
    if i == 0:
        return None
    name = rest[:i]
    if brace:
        if i >= len(rest) or rest[i] != "}":
            return None
        i += 1
    num = -1
    if name.isascii() and len(name) <= 8 and not (name[0] == "0" and len(name) > 1):
        num = int(name)
    return num, rest[i:]


@lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> Glob:
    """Clean and compile a Pachyderm glob; raises :class:`GlobError` naming it
    (:class:`UnsupportedGlob` for one only RE2 cannot run)."""
    cleaned = clean_path(pattern)
    try:
        return Glob(cleaned, compile_program(cleaned))
    except RecursionError:
        raise UnsupportedGlob(f"unsupported glob {pattern!r}: groups nested too deeply") from None
    except UnsupportedGlob as exc:
        raise UnsupportedGlob(f"unsupported glob {pattern!r}: {exc}") from exc
    except GlobError as exc:
        raise GlobError(f"invalid glob {pattern!r}: {exc}") from exc


@dataclass(frozen=True)
class Match:
    """One datum-forming match: the PFS path and the files it holds.

    ``path`` is as PFS reports it: a directory ends with ``/`` (the root is ``/``).
    """

    path: str
    files: tuple[str, ...]

    @property
    def is_dir(self) -> bool:
        return self.path.endswith("/")


def match_ranges(glob: Glob, paths: Sequence[str]) -> Iterator[tuple[str, int, int]]:
    """Yield ``(pfs_path, lo, hi)`` per match; ``paths[lo:hi]`` are the files it holds.

    ``paths`` must be sorted file paths. Files under a directory are contiguous
    in sorted order, so a directory is a slice found by bisection.
    """
    n = len(paths)
    if not n:
        return
    if glob.pattern == "/":
        yield "/", 0, n
        return
    # Only paths sharing the literal prefix can match; skip the rest.
    prefix = glob.literal_prefix
    start = bisect.bisect_left(paths, prefix)
    matches = glob.program.matches
    prev_dirs: list[str] = []
    for idx in range(start, n):
        p = paths[idx]
        if not p.startswith(prefix):
            break
        cut = p.rfind("/")
        dirs: list[str] = []
        j = p.find("/", 1)
        while 0 < j <= cut:
            dirs.append(p[: j + 1])
            j = p.find("/", j + 1)
        k = 0
        while k < len(dirs) and k < len(prev_dirs) and dirs[k] == prev_dirs[k]:
            k += 1
        for d in dirs[k:]:
            # A directory sorts before its contents, which form one slice.
            if matches(d[:-1]):
                yield d, idx, bisect.bisect_left(paths, d[:-1] + "0", idx)
        prev_dirs = dirs
        if matches(p):
            yield p, idx, idx + 1


def match_paths(pattern: str, files: Sequence[str]) -> list[Match]:
    """Match ``pattern`` against a commit's sorted file paths, in PFS order."""
    paths = sorted(files)
    return [
        Match(path, tuple(paths[lo:hi]))
        for path, lo, hi in match_ranges(compile_glob(pattern), paths)
    ]
