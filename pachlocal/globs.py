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
"""

from __future__ import annotations

import bisect
import posixpath
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = [
    "Glob",
    "GlobError",
    "Match",
    "clean_path",
    "compile_glob",
    "match_paths",
    "match_ranges",
]


class GlobError(ValueError):
    """An invalid glob pattern."""


# ---------------------------------------------------------------------------
# Lexer (token stream as ohmyglob's lexer produces it)
# ---------------------------------------------------------------------------

_BASIC_BREAKERS = frozenset("?*[{(")
_EXTENDED_BREAKERS = _BASIC_BREAKERS | frozenset("@!^+")
_CAPTURE_BREAKERS = _EXTENDED_BREAKERS | frozenset(")|")
_TERMS_BREAKERS = _EXTENDED_BREAKERS | frozenset("},")

# Token kinds; a token is (kind, value).
_TEXT, _ANY, _SUPER, _SINGLE, _NOT, _SEP = "text", "any", "super", "single", "not", "sep"
_RANGE_OPEN, _RANGE_CLOSE = "range_open", "range_close"
_TERMS_OPEN, _TERMS_CLOSE, _CAPTURE_OPEN, _CAPTURE_CLOSE = "{", "}", "(", ")"

_Token = tuple[str, str]


def _fetch_text(s: str, i: int, breakers: frozenset[str], out: list[_Token]) -> int:
    data: list[str] = []
    escaped = False
    while i < len(s):
        c = s[i]
        if not escaped:
            if c == "\\":
                escaped = True
                i += 1
                continue
            if c in breakers:
                break
        escaped = False
        data.append(c)
        i += 1
    if data:
        out.append((_TEXT, "".join(data)))
    return i


def _fetch_range(s: str, i: int, out: list[_Token]) -> int:
    data: list[str] = []
    seen_not = in_posix = escaped = False
    while True:
        if i >= len(s):
            raise GlobError("unexpected end of input")
        c = s[i]
        i += 1
        if not escaped:
            if c == "\\":
                escaped = True
                continue
            if c == "[":
                in_posix = True
            if c == "]":
                if not in_posix:
                    break
                in_posix = False
            if not seen_not and c in "!^":
                out.append((_NOT, c))
                seen_not = True
                continue
        escaped = False
        data.append(c)
    if data:
        out.append((_TEXT, "".join(data)))
    out.append((_RANGE_CLOSE, "]"))
    return i


def _lex(s: str) -> list[_Token]:
    out: list[_Token] = []
    terms = capture = 0
    i = 0
    while i < len(s):
        c = s[i]
        nxt = s[i + 1] if i + 1 < len(s) else ""
        if c == "{":
            terms += 1
            out.append((_TERMS_OPEN, c))
            i += 1
        elif c == "," and terms:
            out.append((_SEP, c))
            i += 1
        elif c == "}" and terms:
            out.append((_TERMS_CLOSE, c))
            terms -= 1
            i += 1
        elif c == "|" and capture:
            out.append((_SEP, c))
            i += 1
        elif c == "[":
            out.append((_RANGE_OPEN, c))
            i = _fetch_range(s, i + 1, out)
        elif c == "(":
            out.append((_CAPTURE_OPEN, "@"))
            capture += 1
            i += 1
        elif c in "@!^+":
            if nxt == "(":
                out.append((_CAPTURE_OPEN, c))
                capture += 1
                i += 2
            else:
                i = _fetch_text(s, i, _BASIC_BREAKERS, out)
        elif c == ")" and capture:
            out.append((_CAPTURE_CLOSE, c))
            capture -= 1
            i += 1
        elif c == "?":
            if nxt == "(":
                out.append((_CAPTURE_OPEN, c))
                capture += 1
                i += 2
            else:
                out.append((_SINGLE, c))
                i += 1
        elif c == "*":
            if nxt == "*" and s[i + 2 : i + 3] != "(":
                out.append((_SUPER, "**"))
                i += 2
            elif nxt == "(":
                out.append((_CAPTURE_OPEN, c))
                capture += 1
                i += 2
            else:
                # `**(` is `*` followed by the capture `*(`
                out.append((_ANY, c))
                i += 1
        else:
            breakers = (
                _TERMS_BREAKERS if terms else _CAPTURE_BREAKERS if capture else _EXTENDED_BREAKERS
            )
            i = _fetch_text(s, i, breakers, out)
    return out


# ---------------------------------------------------------------------------
# Parser (ohmyglob's tree shape) and compiler (to a Python regex)
# ---------------------------------------------------------------------------

_POSIX = {
    ":alnum:": "0-9A-Za-z",
    ":alpha:": "A-Za-z",
    ":ascii:": "\x00-\x7f",
    ":blank:": "\t ",
    ":cntrl:": "\x00-\x1f\x7f",
    ":digit:": "0-9",
    ":graph:": "!-~]",
    ":lower:": "a-z",
    ":print:": " -~",
    ":punct:": "!-/:-@[-`{-~",
    ":space:": "\t\n\v\f\r ",
    ":upper:": "A-Z",
    ":word:": "0-9A-Za-z_",
    ":xdigit:": "0-9A-Fa-f",
}


@dataclass(eq=False)
class _Node:
    kind: str  # pattern, anyof, capture, list, text, any, super, single
    value: str = ""
    parent: _Node | None = None
    children: list[_Node] = field(default_factory=list)

    def add(self, child: _Node) -> _Node:
        child.parent = self
        self.children.append(child)
        return child


def _grandparent(node: _Node) -> _Node:
    if node.parent is None or node.parent.parent is None:
        raise GlobError("unbalanced group")
    return node.parent.parent


def _parse(tokens: list[_Token]) -> _Node:
    root = tree = _Node("pattern")
    it = iter(tokens)
    for kind, raw in it:
        if kind == _TEXT:
            tree.add(_Node("text", raw))
        elif kind in (_ANY, _SUPER, _SINGLE):
            tree.add(_Node(kind))
        elif kind == _RANGE_OPEN:
            negated, chars = False, ""
            for kind2, raw2 in it:
                if kind2 == _NOT:
                    negated = True
                elif kind2 == _TEXT:
                    chars = raw2
                    for name, expansion in _POSIX.items():
                        chars = chars.replace(name, expansion)
                elif kind2 == _RANGE_CLOSE:
                    break
            tree.add(_Node("list", ("!" if negated else "") + chars))
        elif kind == _TERMS_OPEN:
            tree = tree.add(_Node("anyof")).add(_Node("pattern"))
        elif kind == _CAPTURE_OPEN:
            tree = tree.add(_Node("capture", raw)).add(_Node("pattern"))
        elif kind == _SEP:
            if tree.parent is None:
                raise GlobError("unbalanced group")
            tree = tree.parent.add(_Node("pattern"))
        else:  # a group closes
            tree = _grandparent(tree)
    return root


# Markers for the scope of `!(...)`; they cannot occur in a path.
_CLOSE_NEG = "\uffff"
_BOUNDARY = "\ufffe"
_GO_META = frozenset("\\.+*?()|[]{}^$")
_DOT = "[^/]"


def _quote(s: str) -> str:
    """Go's regexp.QuoteMeta: '-' stays bare so class ranges keep working."""
    return "".join("\\" + c if c in _GO_META else c for c in s)


def _to_regex(node: _Node) -> str:
    kind = node.kind
    if kind == "pattern":
        return "".join(_to_regex(c) for c in node.children)
    if kind == "anyof":
        return "(?:" + "|".join(_to_regex(c) for c in node.children) + ")"
    if kind == "capture":
        q = node.value
        if q == "!":
            body = (_CLOSE_NEG + "|").join(_to_regex(c) for c in node.children)
            return f"((?:(?!(?:{body}{_CLOSE_NEG})){_DOT}*))"
        if q not in "@*?+":
            raise GlobError(f"unimplemented quantifier {q}(")  # "^(" lexes but never compiles
        body = "|".join(_to_regex(c) for c in node.children)
        return f"({body})" if q == "@" else f"((?:{body}){q})"
    if kind == "list":
        negated = node.value.startswith("!")
        chars = node.value[1:] if negated else node.value
        # An empty class is left to the regex parser, as ohmyglob does ("[]a]" is valid).
        return "[" + ("^" if negated else "") + _quote(chars) + "]"
    if kind == "text":
        return _quote(node.value) + _BOUNDARY
    if kind == "any":
        return _DOT + "*" + _BOUNDARY
    if kind == "super":
        return ".*" + _BOUNDARY
    return _DOT  # single


def _compile_regex(pattern: str) -> re.Pattern[str]:
    regex = _to_regex(_parse(_lex(pattern)))
    # A negation reaches to the next boundary, or to the end of the path.
    index = regex.find(_CLOSE_NEG + ")")
    if index > 0:
        regex = regex.replace(_CLOSE_NEG, "" if _BOUNDARY in regex[index:] else "$")
    regex = regex.replace(_BOUNDARY, "")
    with warnings.catch_warnings():
        # Python warns about '--', '&&', '~~' in classes; Go treats them literally too.
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return re.compile(r"\A" + regex + r"\Z")
        except re.error as exc:
            raise GlobError(str(exc)) from exc


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


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
    regex: re.Pattern[str] = field(repr=False, compare=False)

    def match(self, path: str) -> bool:
        """True if the PFS path (file, or directory with or without ``/``) matches."""
        if path == "/" and self.pattern == "/":
            return True
        return self.regex.match(path.rstrip("/")) is not None

    def captures(self, path: str) -> list[str] | None:
        """``[whole match, $1, $2, ...]`` (unmatched groups are ``""``), None if no match."""
        m = self.regex.match(path.rstrip("/"))
        if m is None:
            return None
        return [m.group(0), *(g or "" for g in m.groups())]

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
    """Clean and compile a Pachyderm glob; raises :class:`GlobError` naming it."""
    cleaned = clean_path(pattern)
    try:
        return Glob(cleaned, _compile_regex(cleaned))
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
    regex = glob.regex
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
            if regex.match(d[:-1]):
                yield d, idx, bisect.bisect_left(paths, d[:-1] + "0", idx)
        prev_dirs = dirs
        if regex.match(p):
            yield p, idx, idx + 1


def match_paths(pattern: str, files: Sequence[str]) -> list[Match]:
    """Match ``pattern`` against a commit's sorted file paths, in PFS order."""
    paths = sorted(files)
    return [
        Match(path, tuple(paths[lo:hi]))
        for path, lo, hi in match_ranges(compile_glob(pattern), paths)
    ]
