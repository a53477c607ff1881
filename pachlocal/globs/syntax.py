"""Pachyderm's glob syntax, read as ohmyglob reads it: the lexer's token stream and the
parser's tree (patterns, ``{...}`` alternatives, capture groups, classes, text,
``*``, ``**`` and ``?``), with ohmyglob's quirks kept (see :mod:`pachlocal.globs`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


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


def lex(s: str) -> list[_Token]:
    """The tokens of glob ``s``, as ohmyglob's lexer yields them."""
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
# Parser (ohmyglob's tree shape)
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
class Node:
    """One node of a parsed glob; a ``pattern``'s children are matched in sequence."""

    kind: str  # pattern, anyof, capture, list, text, any, super, single
    value: str = ""
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)

    def add(self, child: Node) -> Node:
        child.parent = self
        self.children.append(child)
        return child


def _grandparent(node: Node) -> Node:
    if node.parent is None or node.parent.parent is None:
        raise GlobError("unbalanced group")
    return node.parent.parent


def parse(tokens: list[_Token]) -> Node:
    """The tree of a token stream (unclosed groups are closed at the end)."""
    root = tree = Node("pattern")
    it = iter(tokens)
    for kind, raw in it:
        if kind == _TEXT:
            tree.add(Node("text", raw))
        elif kind in (_ANY, _SUPER, _SINGLE):
            tree.add(Node(kind))
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
            tree.add(Node("list", ("!" if negated else "") + chars))
        elif kind == _TERMS_OPEN:
            tree = tree.add(Node("anyof")).add(Node("pattern"))
        elif kind == _CAPTURE_OPEN:
            tree = tree.add(Node("capture", raw)).add(Node("pattern"))
        elif kind == _SEP:
            if tree.parent is None:
                raise GlobError("unbalanced group")
            tree = tree.parent.add(Node("pattern"))
        else:  # a group closes
            tree = _grandparent(tree)
    return root


def preorder(node: Node) -> Iterator[Node]:
    """``node`` and every node below it, parents before children, in pattern order."""
    stack = [node]
    while stack:
        top = stack.pop()
        yield top
        stack.extend(reversed(top.children))
