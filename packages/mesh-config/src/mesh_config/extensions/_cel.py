"""A syntax check for CEL expressions, as ``cel.Env.Parse`` does it (private).

Istio's webhook (the istiod build) parses Telemetry's access log filter expressions with cel-go and rejects
those that do not parse. This module implements the CEL grammar of the cel-spec (literals, operators, the
ternary, member selection, indexing, calls, lists, maps, message construction) and the parse-time macro rules
(``has()`` needs a field selection; ``all``, ``exists``, ``exists_one``, ``map`` and ``filter`` need a plain
variable name). It checks syntax only: names and types are not resolved, as ``Parse`` does not resolve them.
"""

from __future__ import annotations

import re
from typing import final

__all__ = ["CelSyntaxError", "check_cel"]

MAX_LENGTH = 100_000
"""cel-go's default limit on the expression size, in code points."""

MAX_DEPTH = 100
"""The deepest nesting of sub-expressions accepted."""

_RESERVED = frozenset(
    {"as", "break", "const", "continue", "else", "for", "function", "if", "import", "let", "loop"}
    | {"package", "namespace", "return", "var", "void", "while"}
)
_TOKEN = re.compile(
    r"""
    (?P<ws>[\t\n\f\r ]+|//[^\n\r]*)
  | (?P<string>[rRbB]{0,2}(?:\"\"\"|'''|"|'))
  | (?P<float>(?:\d+\.\d+(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+))
  | (?P<int>(?:0[xX][0-9a-fA-F]+|\d+)[uU]?)
  | (?P<ident>[_a-zA-Z][_a-zA-Z0-9]*)
  | (?P<quoted>`[^`\n\r]*`)
  | (?P<op>\|\||&&|==|!=|<=|>=|[-+*/%<>!?:.,()\[\]{}])
    """,
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(?:[abfnrtv\\?\"'`]|[xX][0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-3][0-7]{2})")
_BINARY = {"||": 1, "&&": 2, "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3, "in": 3, "+": 4, "-": 4}
_BINARY |= {"*": 5, "/": 5, "%": 5}
_MACROS = {"all": (2,), "exists": (2,), "exists_one": (2,), "map": (2, 3), "filter": (2,)}


@final
class CelSyntaxError(ValueError):
    """An expression that does not parse; the message is ``<line>:<column>: <what>``."""


@final
class _Token:
    __slots__ = ("kind", "offset", "text")

    def __init__(self, kind: str, text: str, offset: int) -> None:
        self.kind = kind
        self.text = text
        self.offset = offset


def check_cel(expression: str) -> None:
    """Raise :class:`CelSyntaxError` when ``expression`` is not a syntactically valid CEL expression."""
    if len(expression) > MAX_LENGTH:
        raise CelSyntaxError(f"1:1: expression code point size exceeds limit: size: {len(expression)}")
    _Parser(expression).parse()


def _tokens(source: str) -> list[_Token]:
    out: list[_Token] = []
    at = 0
    while at < len(source):
        match = _TOKEN.match(source, at)
        if match is None:
            raise _error(source, at, f"token recognition error at: {source[at]!r}")
        kind = match.lastgroup or ""
        if kind == "string":
            end = _string_end(source, at, match.group())
            out.append(_Token("literal", source[at:end], at))
            at = end
            continue
        if kind == "int" or kind == "float":
            out.append(_Token("literal", match.group(), at))
        elif kind == "ident":
            word = match.group()
            out.append(_Token("literal" if word in ("true", "false", "null") else "ident", word, at))
        elif kind == "quoted":
            out.append(_Token("quoted", match.group(), at))
        elif kind == "op":
            out.append(_Token("op", match.group(), at))
        at = match.end()
    out.append(_Token("eof", "", len(source)))
    return out


def _string_end(source: str, start: int, opening: str) -> int:
    prefix = opening.rstrip("\"'")
    if len(prefix) == 2 and prefix.lower() != "br":
        raise _error(source, start, f"token recognition error at: {opening!r}")
    raw = "r" in prefix.lower()
    quote = opening[len(prefix) :]
    at = start + len(opening)
    while at < len(source):
        if source.startswith(quote, at):
            return at + len(quote)
        ch = source[at]
        if len(quote) == 1 and ch in "\r\n":
            break
        if ch == "\\" and not raw:
            escape = _ESCAPE.match(source, at)
            if escape is None:
                raise _error(source, at, f"invalid escape sequence in string literal at: {source[at : at + 2]!r}")
            at = escape.end()
            continue
        at += 1
    raise _error(source, start, "unterminated string literal")


def _error(source: str, offset: int, what: str) -> CelSyntaxError:
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return CelSyntaxError(f"{line}:{column}: Syntax error: {what}")


class _Node:
    """What the parser needs to know of a parsed sub-expression for the macro rules."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "ident", "select" or "other"


@final
class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokens(source)
        self.at = 0
        self.depth = 0

    def parse(self) -> None:
        self.expr()
        token = self.peek()
        if token.kind != "eof":
            raise self.fail(token, f"extraneous input {token.text!r}")

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        if token.kind != "eof":
            self.at += 1
        return token

    def accept(self, text: str) -> bool:
        token = self.peek()
        if token.kind == "op" and token.text == text:
            self.at += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            token = self.peek()
            found = "<EOF>" if token.kind == "eof" else repr(token.text)
            raise self.fail(token, f"mismatched input {found} expecting {text!r}")

    def fail(self, token: _Token, what: str) -> CelSyntaxError:
        return _error(self.source, token.offset, what)

    def expr(self) -> _Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(self.peek(), f"expression recursion limit exceeded: {MAX_DEPTH}")
        node = self.binary(1)
        if self.accept("?"):
            self.binary(1)
            self.expect(":")
            self.expr()
            node = _Node("other")
        self.depth -= 1
        return node

    def binary(self, lowest: int) -> _Node:
        node = self.unary()
        while True:
            token = self.peek()
            is_operator = token.kind == "op" or (token.kind == "ident" and token.text == "in")
            precedence = _BINARY.get(token.text, 0) if is_operator else 0
            if precedence < lowest:
                return node
            self.take()
            self.binary(precedence + 1)
            node = _Node("other")

    def unary(self) -> _Node:
        operators = 0
        while self.peek().kind == "op" and self.peek().text in ("!", "-"):
            self.take()
            operators += 1
        node = self.member_suffixes(self.primary())
        return _Node("other") if operators else node

    def member_suffixes(self, node: _Node) -> _Node:
        while True:
            if self.accept("."):
                name = self.take()
                if name.kind not in ("ident", "quoted") or name.text in _RESERVED or name.text == "in":
                    raise self.fail(name, f"no viable alternative at input '.{name.text}'")
                if self.accept("("):
                    count, first = self.arguments(")")
                    self.check_macro(name, count, first, receiver=True)
                    node = _Node("other")
                else:
                    node = _Node("select")
            elif self.accept("["):
                self.expr()
                self.expect("]")
                node = _Node("other")
            elif self.peek().text == "{" and node.kind in ("ident", "select"):
                self.take()
                self.field_inits()
                node = _Node("other")
            else:
                return node

    def primary(self) -> _Node:
        token = self.take()
        if token.kind == "literal":
            return _Node("other")
        if token.kind == "ident":
            if token.text in _RESERVED or token.text == "in":
                raise self.fail(token, f"reserved identifier: {token.text}")
            if self.accept("("):
                count, first = self.arguments(")")
                if token.text == "has" and count == 1 and first is not None and first.kind != "select":
                    raise self.fail(token, "invalid argument to has() macro")
                return _Node("other")
            return _Node("ident")
        if token.kind == "op":
            if token.text == ".":
                name = self.take()
                if name.kind != "ident" or name.text in _RESERVED:
                    raise self.fail(name, f"no viable alternative at input '.{name.text}'")
                if self.accept("("):
                    self.arguments(")")
                    return _Node("other")
                return _Node("ident")
            if token.text == "(":
                self.expr()
                self.expect(")")
                return _Node("other")
            if token.text == "[":
                self.arguments("]")
                return _Node("other")
            if token.text == "{":
                self.map_inits()
                return _Node("other")
        found = "<EOF>" if token.kind == "eof" else repr(token.text)
        raise self.fail(token, f"mismatched input {found}")

    def arguments(self, closing: str) -> tuple[int, _Node | None]:
        count = 0
        first: _Node | None = None
        while not self.accept(closing):
            if count:
                self.expect(",")
                if self.accept(closing):
                    break
            node = self.expr()
            first = first or node
            count += 1
        return count, first

    def map_inits(self) -> None:
        count = 0
        while not self.accept("}"):
            if count:
                self.expect(",")
                if self.accept("}"):
                    return
            self.expr()
            self.expect(":")
            self.expr()
            count += 1

    def field_inits(self) -> None:
        count = 0
        while not self.accept("}"):
            if count:
                self.expect(",")
                if self.accept("}"):
                    return
            name = self.take()
            if name.kind not in ("ident", "quoted"):
                raise self.fail(name, f"mismatched input {name.text!r} expecting IDENTIFIER")
            self.expect(":")
            self.expr()
            count += 1

    def check_macro(self, name: _Token, count: int, first: _Node | None, *, receiver: bool) -> None:
        arities = _MACROS.get(name.text)
        if receiver and arities and count in arities and (first is None or first.kind != "ident"):
            raise self.fail(name, "argument must be a simple name")
