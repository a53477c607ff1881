"""A parsed glob translated to RE2 programs, which run in time linear in the path.

RE2 has no lookahead, which ``!(...)`` needs, so each such group's body is run at
every position of the path first and the main program reads where it holds from
markers (see :mod:`pachlocal.globs` for the limits this sets).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

from .syntax import GlobError, Node, UnsupportedGlob, lex, parse, preorder

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


def _to_regex(node: Node, t: _Translation) -> str:
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


def _capture(node: Node, t: _Translation) -> str:
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
        unset = "()" * (sum(1 for n in preorder(node) if n.kind == "capture") - 1)
        return f"({unset}{_SKIP}\\x00{mark}(?:{t.dot('/')})*)"
    if q not in "@*?+":
        raise GlobError(f"unimplemented quantifier {q}(")  # "^(" lexes but never compiles
    body = "|".join(_to_regex(c, t) for c in node.children)
    return f"({body})" if q == "@" else f"((?:{body}){q})"


def _negation_close(tree: Node) -> str:
    """ohmyglob's reach of a negation: up to the next text, ``*`` or ``**`` after the
    first ``!(...)`` group, or (when none follows) to the end of the path."""
    nodes = list(preorder(tree))
    first = next(i for i, n in enumerate(nodes) if n.kind == "capture" and n.value == "!")
    after = first + sum(1 for _ in preorder(nodes[first]))
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
class Program:
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


def compile_program(pattern: str) -> Program:
    """The RE2 programs of a cleaned glob; raises :class:`GlobError` (or
    :class:`UnsupportedGlob`) without naming the pattern."""
    if _MARK in pattern:
        raise GlobError("a glob cannot contain a NUL byte")
    if len(pattern) > MAX_GLOB_LENGTH:  # RE2 slows down, and logs, on huge programs
        raise UnsupportedGlob(f"longer than {MAX_GLOB_LENGTH} characters")
    tree = parse(lex(pattern))
    marked = any(n.kind == "capture" and n.value == "!" for n in preorder(tree))
    if marked and any(n.kind == "list" and n.value in ("", "!") for n in preorder(tree)):
        # the regex parser would read the class on into the text that follows it
        raise UnsupportedGlob("an empty class [] combined with !(...)")
    t = _Translation(marked, _negation_close(tree) if marked else "")
    regex = r"\A" + _to_regex(tree, t) + (_SKIP if marked else "") + r"\z"
    return Program(
        full=_re2(regex, capture=True),
        test=_re2(regex, capture=False),
        bodies=tuple(_re2(body, capture=False) for body in t.bodies),
    )
