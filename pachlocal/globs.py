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
"""

from __future__ import annotations

import bisect
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol, cast

import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

__all__ = [
    "Glob",
    "GlobError",
    "Match",
    "UnsupportedGlob",
    "clean_path",
    "compile_glob",
    "match_paths",
    "match_ranges",
]


class GlobError(ValueError):
    """An invalid glob pattern."""


class UnsupportedGlob(GlobError):
    """A glob ohmyglob runs but this RE2 matcher cannot: pachd would accept it, so
    ``create pipeline`` refuses it rather than fail every job."""


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
# Parser (ohmyglob's tree shape) and compiler (to an RE2 regex)
# ---------------------------------------------------------------------------

_POSIX = {
    ":alnum:": "0-9A-Za-z",
    ":alpha:": "A-Za-z",
    ":ascii:": "\x01-\x7f",  # from \x01: NUL marks negations (and no path holds one)
    ":blank:": "\t ",
    ":cntrl:": "\x01-\x1f\x7f",
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


# RE2 has no lookahead, so a `!(...)` group (ohmyglob's `(?!body)[^/]*`) is
# matched in two passes: each body is run first at every position of the path,
# and where it does not match (the negation holds) a marker, NUL plus the
# group's letter, is put into the text the main program reads; the group then
# starts by consuming its marker, and every other atom skips markers. NUL is
# the one character a path cannot hold.
MAX_GLOB_LENGTH = 4096  # PATH_MAX; a longer glob is refused (UnsupportedGlob)
_MARK = "\x00"
_MARK_IDS = "ABCDEFGH"  # at most this many `!(...)` groups per glob
_SKIP = r"(?:\x00[^\x00])*"  # the markers standing at one position
_END = r"(?:\n?\z)"  # Go's and Python's `$`: the end, or before a final newline
_GO_META = frozenset("\\.+*?()|[]{}^$")
_STARS = {"any": "[^/]*", "super": ".*"}  # unmarked, as ohmyglob writes them


@dataclass
class _Translation:
    """How one glob is written in RE2 syntax."""

    marked: bool  # the text carries negation markers (the glob has `!(...)`)
    close: str = ""  # ends each alternative of a `!(...)` body: "" or _END
    bodies: list[str] = field(default_factory=list)  # one regex per `!(...)`

    def atom(self, regex: str) -> str:
        """One consumed character, after any markers at its position."""
        return _SKIP + regex if self.marked else regex

    def dot(self, excluded: str) -> str:
        """A character that is not ``excluded`` (nor a marker)."""
        return self.atom(f"[^{excluded}\\x00]" if self.marked else f"[^{excluded}]")


def _quote(s: str) -> str:
    """Go's regexp.QuoteMeta: '-' stays bare so class ranges keep working."""
    return "".join("\\" + c if c in _GO_META else c for c in s)


def _to_regex(node: _Node, t: _Translation) -> str:
    kind = node.kind
    if kind == "pattern":
        return "".join(_to_regex(c, t) for c in node.children)
    if kind == "anyof":
        return "(?:" + "|".join(_to_regex(c, t) for c in node.children) + ")"
    if kind == "capture":
        return _capture(node, t)
    if kind == "list":
        negated = node.value.startswith("!")
        chars = _quote(node.value[1:] if negated else node.value)
        if t.marked and negated and chars:  # nor a marker; a leading '-' stays literal
            chars = "\\x00" + ("\\" + chars if chars.startswith("-") else chars)
        # An empty class is left to the regex parser, as ohmyglob does ("[][a]" is one class).
        return t.atom("[" + ("^" if negated else "") + chars + "]")
    if kind == "text":
        return "".join(t.atom(_quote(c)) for c in node.value)
    if kind in ("any", "super"):  # `**` is Go's and Python's `.*`: no newline
        return "(?:" + t.dot("/" if kind == "any" else r"\n") + ")*" if t.marked else _STARS[kind]
    return t.dot("/")  # single


def _capture(node: _Node, t: _Translation) -> str:
    q = node.value
    if q == "!":
        if not t.marked:
            raise UnsupportedGlob("a !(...) group inside another !(...) group")
        if len(t.bodies) == len(_MARK_IDS):
            raise UnsupportedGlob(f"more than {len(_MARK_IDS)} !(...) groups")
        inner = _Translation(marked=False)
        body = "|".join(_to_regex(c, inner) + t.close for c in node.children)
        t.bodies.append(f"(?:{body})")
        mark = _MARK_IDS[len(t.bodies) - 1]
        # the body's own groups keep their numbers, and (as in a lookahead) stay empty
        unset = "()" * (sum(1 for n in _preorder(node) if n.kind == "capture") - 1)
        return f"({unset}{_SKIP}\\x00{mark}(?:{t.dot('/')})*)"
    if q not in "@*?+":
        raise GlobError(f"unimplemented quantifier {q}(")  # "^(" lexes but never compiles
    body = "|".join(_to_regex(c, t) for c in node.children)
    return f"({body})" if q == "@" else f"((?:{body}){q})"


def _preorder(node: _Node) -> Iterator[_Node]:
    stack = [node]
    while stack:
        top = stack.pop()
        yield top
        stack.extend(reversed(top.children))


def _negation_close(tree: _Node) -> str:
    """ohmyglob's reach of a negation: up to the next text, ``*`` or ``**`` after the
    first ``!(...)`` group, or (when none follows) to the end of the path."""
    nodes = list(_preorder(tree))
    first = next(i for i, n in enumerate(nodes) if n.kind == "capture" and n.value == "!")
    after = first + sum(1 for _ in _preorder(nodes[first]))
    return "" if any(n.kind in ("text", "any", "super") for n in nodes[after:]) else _END


# ---------------------------------------------------------------------------
# RE2 programs (google-re2 ships no type hints: these protocols are the part used)
# ---------------------------------------------------------------------------


class _Re2Match(Protocol):
    def group(self, index: int = 0, /) -> bytes: ...

    def groups(self) -> tuple[bytes | None, ...]: ...


class _Re2Regex(Protocol):
    def match(self, text: bytes, pos: int | None = None, /) -> _Re2Match | None: ...


def _re2(regex: str, *, capture: bool) -> _Re2Regex:
    options = re2.Options()
    options.log_errors = False  # a bad pattern becomes a GlobError, not a line on stderr
    options.never_capture = not capture  # without groups RE2 answers from its DFA
    try:
        return cast(_Re2Regex, re2.compile(regex.encode("utf-8", "surrogatepass"), options))
    except re2.error as exc:
        detail = exc.args[0] if exc.args else "cannot compile"
        text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
        # RE2 refuses what is wrong (as ohmyglob's parser does) and what is too big for it
        raise (UnsupportedGlob if "too large" in text else GlobError)(text) from None


def _mark(text: bytes, bodies: Sequence[_Re2Regex]) -> bytes:
    """``text`` with the marker of each ``!(...)`` group before every character (and
    at the end) where the group's body does not match."""
    out = bytearray()
    for pos in range(len(text) + 1):
        if pos == len(text) or text[pos] & 0xC0 != 0x80:  # not inside a UTF-8 sequence
            for mark, body in zip(_MARK_IDS, bodies, strict=False):
                if body.match(text, pos) is None:
                    out += (_MARK + mark).encode()
        out += text[pos : pos + 1]
    return bytes(out)


def _unmark(group: bytes | None) -> str:
    """A captured group as text, without negation markers ("" for an unset group)."""
    if not group:
        return ""
    head, *rest = group.split(_MARK.encode())
    return b"".join([head, *(piece[1:] for piece in rest)]).decode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class _Program:
    """A glob as RE2 programs, which run in time linear in the path (``!(...)``
    groups add one pass of their body per position). ``full`` reports capture
    groups, ``test`` only says whether a path matches."""

    full: _Re2Regex
    test: _Re2Regex
    bodies: tuple[_Re2Regex, ...]

    def _text(self, path: str) -> bytes | None:
        if _MARK in path:
            return None  # no PFS path holds a NUL byte, and markers use it
        raw = path.encode("utf-8", "surrogatepass")
        return _mark(raw, self.bodies) if self.bodies else raw

    def matches(self, path: str) -> bool:
        text = self._text(path)
        return text is not None and self.test.match(text) is not None

    def groups(self, path: str) -> list[str] | None:
        text = self._text(path)
        found = None if text is None else self.full.match(text)
        if found is None:
            return None
        return [_unmark(found.group(0)), *(_unmark(g) for g in found.groups())]


def _compile_program(pattern: str) -> _Program:
    if _MARK in pattern:
        raise GlobError("a glob cannot contain a NUL byte")
    if len(pattern) > MAX_GLOB_LENGTH:  # RE2 slows down, and logs, on huge programs
        raise UnsupportedGlob(f"longer than {MAX_GLOB_LENGTH} characters")
    tree = _parse(_lex(pattern))
    marked = any(n.kind == "capture" and n.value == "!" for n in _preorder(tree))
    if marked and any(n.kind == "list" and n.value in ("", "!") for n in _preorder(tree)):
        # the regex parser would read the class on into the text that follows it
        raise UnsupportedGlob("an empty class [] combined with !(...)")
    t = _Translation(marked, _negation_close(tree) if marked else "")
    regex = r"\A" + _to_regex(tree, t) + (_SKIP if marked else "") + r"\z"
    return _Program(
        full=_re2(regex, capture=True),
        test=_re2(regex, capture=False),
        bodies=tuple(_re2(body, capture=False) for body in t.bodies),
    )


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
    program: _Program = field(repr=False, compare=False)

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
        return Glob(cleaned, _compile_program(cleaned))
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
