"""Pachyderm glob semantics: pattern matching, capture groups and datum paths.

A re-implementation of ``github.com/pachyderm/ohmyglob`` (the glob library pachd
uses) and of how PFS applies a glob to a commit (``globFile`` in
``src/server/pfs/server``):

* The pattern is cleaned like ``pfsfile.CleanPath`` (``path.Clean``, one
  leading ``/``, no trailing ``/``) and compiled with ``/`` as the separator:
  ``*`` and ``?`` never cross ``/``, ``**`` does, ``[...]``/``[!...]`` classes
  (a negated class does match ``/``, as in ohmyglob), ``{a,b}`` alternatives,
  ``(a|b)`` / ``@(...)`` / ``*(...)`` / ``+(...)`` / ``?(...)`` / ``!(...)``
  capture groups, ``\\`` escapes. ohmyglob's quirks are kept: an unclosed
  ``{`` or ``(`` is closed at the end, a ``!`` or ``^`` anywhere in a class
  negates it, a stray ``)``, ``}``, ``,`` or ``|`` is literal text.
* A glob is matched against every entry of the commit: files and the implied
  directories. PFS writes directories with a trailing ``/`` and trims it before
  matching, so ``/a/*`` yields ``/a/b/`` (a directory datum) as well as
  ``/a/c.txt``. The root ``/`` is matched only by the glob ``/``.
* Nested matches are all kept: with ``/**`` both ``/a/`` and ``/a/b.txt`` are
  datums (PFS's index filter passes the subtree of a matched directory on and
  every entry is tested again).
* Entries come in PFS order: lexicographic by path, directories carrying their
  trailing ``/`` (so ``/a.txt`` < ``/a/`` < ``/a/b``).

ohmyglob hands its regex to a backtracking engine, where ``/+(a|aa)`` takes
exponential time on a long run of ``a``. Here the regex runs on RE2, in time
linear in the path, with the same leftmost-first captures. RE2 has no
lookahead, which ``!(...)`` needs, so each such group's body is run at every
position of the path first (quadratic at worst: about 0.1 s for a 10,000
character path) and the main program reads where it holds from markers.

Limits: a ``!(...)`` inside another, more than 8 of them, or a glob longer than
4096 characters is refused (:class:`UnsupportedGlob`); a group nested in a
repeated group whose body can match empty (``*(?(x))``) may capture from a
different iteration than ohmyglob's (RE2 drops a final empty iteration); a path
holding a NUL byte (none can) matches nothing.

Rooms: :mod:`.syntax` (the lexer and parser: glob text to a tree),
:mod:`.program` (the tree translated to RE2 programs), :mod:`.matching`
(:class:`Glob`, :func:`compile_glob`, and matching a commit's paths).
"""

from .matching import Glob, Match, clean_path, compile_glob, match_paths, match_ranges
from .program import MAX_GLOB_LENGTH
from .syntax import GlobError, UnsupportedGlob

__all__ = [
    "MAX_GLOB_LENGTH",
    "Glob",
    "GlobError",
    "Match",
    "UnsupportedGlob",
    "clean_path",
    "compile_glob",
    "match_paths",
    "match_ranges",
]
