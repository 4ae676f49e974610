"""YAML and JSON parsing with source positions and hard limits (private).

The parser is driven by YAML events (libyaml's C parser when available) and builds plain Python data
iteratively, so deep nesting cannot overflow the stack and alias bombs are counted as they expand. Every
value's position is recorded by its path, for diagnostics.
"""

from __future__ import annotations

import re
from typing import Any, final

import attrs
import yaml

from mesh_config.diagnostics import FieldPath, Position
from mesh_config.limits import LoadLimits

try:
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader

_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_SCALAR_TAGS = {
    "tag:yaml.org,2002:null": _CONSTRUCTOR.construct_yaml_null,
    "tag:yaml.org,2002:bool": _CONSTRUCTOR.construct_yaml_bool,
    "tag:yaml.org,2002:int": _CONSTRUCTOR.construct_yaml_int,
    "tag:yaml.org,2002:float": _CONSTRUCTOR.construct_yaml_float,
    "tag:yaml.org,2002:str": _CONSTRUCTOR.construct_yaml_str,
    # Kubernetes turns YAML into JSON: timestamps stay strings.
    "tag:yaml.org,2002:timestamp": _CONSTRUCTOR.construct_yaml_str,
}
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
_MAX_NUMBER_LENGTH = 100
"""Longer int/float scalars are refused: YAML 1.1's base-60 numbers (``1:2:3``) cost quadratic time."""
_MAX_QUOTED = 60
_REWRITE_BUDGET = 16 * 1024 * 1024
"""How much text parse_documents may parse again after quoting scalars (see _rewrite), in characters."""
# A JSON escaped surrogate pair ("\ud83d\ude00", as json.dumps writes non-BMP characters), not itself escaped.
_JSON_SURROGATE_PAIR = re.compile(r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE)


class YamlProblem(Exception):  # noqa: N818 (a problem report, not an error raised to users)
    """A document cannot be parsed; carries the position of the problem."""

    def __init__(self, message: str, position: Position | None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@final
@attrs.frozen
class ParsedDocument:
    """One parsed document: its data, the position of every value by path, and where it starts."""

    data: Any
    positions: dict[FieldPath, Position]
    start: Position
    index: int

    def position(self, path: FieldPath) -> Position:
        """The position of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                return found
        return self.start


@final
class _Locator:
    """Turns parser marks into positions in the text as written, undoing the rewrites of :func:`_rewrite`."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.rewrites: list[tuple[int, int, int, int]] = []
        """``(line, column, new length, old length)`` of each rewrite, in the order made (0-based)."""

    def __call__(self, mark: Any) -> Position:
        line, column = mark.line, mark.column
        for at_line, start, new, old in reversed(self.rewrites):
            if line == at_line and column >= start:
                column = start if column < start + new else column - new + old
        return Position(self.source, line + 1, column + 1)


class _Frame:
    """A list or map under construction."""

    __slots__ = ("anchor", "container", "key", "key_position", "merged", "path", "position", "start_nodes")

    def __init__(self, container: Any, path: FieldPath, anchor: str | None, position: Position, nodes: int) -> None:
        self.container = container
        self.path = path
        self.anchor = anchor
        self.position = position
        self.start_nodes = nodes
        self.key: object = _NO_KEY
        self.key_position: Position | None = None
        self.merged: set[str] = set()
        """Keys that came from a ``<<`` merge: a key written in the map itself overrides them."""


_NO_KEY = object()


def _scalar(event: Any, locate: _Locator) -> Any:
    tag = event.tag
    if tag is None or tag == "!":
        tag = _RESOLVER.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
    if tag == _MERGE_TAG:
        return _MERGE
    construct = _SCALAR_TAGS.get(tag)
    if construct is None:
        raise YamlProblem(f"unsupported YAML tag {tag!r}", locate(event.start_mark))
    name = tag.rsplit(":", 1)[-1]
    if tag in _NUMBER_TAGS and len(event.value) > _MAX_NUMBER_LENGTH:
        raise YamlProblem(
            f"{name} value {_quote(event.value)} is too long (at most {_MAX_NUMBER_LENGTH} characters)", None
        )
    node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark)
    try:
        return construct(node)
    except Exception as error:  # SafeConstructor raises IndexError on "!!int ''", ValueError on others
        raise YamlProblem(f"bad {name} value {_quote(event.value)}: {_quote(str(error))}", None) from None


def _quote(text: str) -> str:
    """``repr`` of a value for a message, shortened."""
    quoted = repr(text)
    return quoted if len(quoted) <= _MAX_QUOTED else quoted[: _MAX_QUOTED - 4] + "...'"


class _Merge:
    """The ``<<`` merge key."""


_MERGE = _Merge()


def parse_documents(text: str, source: str, limits: LoadLimits) -> tuple[list[ParsedDocument], YamlProblem | None]:
    """Parse every document of ``text``; returns the documents parsed before any problem, and the problem."""
    locate = _Locator(source)
    text = _json_surrogates(text)
    budget = _REWRITE_BUDGET
    while True:
        documents: list[ParsedDocument] = []
        try:
            _parse(text, locate, limits, documents)
        except YamlProblem as problem:
            return documents, problem
        except UnicodeEncodeError as error:
            # A str with lone surrogates (from surrogateescape decoding, say) cannot reach libyaml as UTF-8.
            message = "input is not valid Unicode text (lone surrogate)"
            return documents, YamlProblem(message, _offset(source, text, error.start))
        except yaml.reader.ReaderError as error:
            # The reader's position is a byte offset into the UTF-8 text (with libyaml) or a character index.
            at = error.position
            if _Loader is not yaml.SafeLoader:
                at = len(text.encode("utf-8", "surrogatepass")[:at].decode("utf-8", "replace"))
            message = f"YAML syntax error: {error.reason}: {_describe(error.character)}"
            return documents, YamlProblem(message, _offset(source, text, at))
        except yaml.MarkedYAMLError as error:
            budget -= len(text)
            rewritten = _rewrite(text, error, locate) if budget >= 0 else None
            if rewritten is not None:
                text = rewritten
                continue
            mark = error.problem_mark or error.context_mark
            position = locate(mark) if mark is not None else None
            message = " ".join(str(part) for part in (error.context, error.problem) if part)
            return documents, YamlProblem(f"YAML syntax error: {message or error}", position)
        except yaml.YAMLError as error:
            return documents, YamlProblem(f"YAML syntax error: {error}", None)
        return documents, None


def parse_single_document(text: str | bytes, source: str, limits: LoadLimits, *, what: str) -> ParsedDocument | None:
    """The one document of ``text`` (UTF-8 when bytes), or ``None`` when there is none.

    Args:
        text: the text, or its UTF-8 bytes.
        source: the name positions give the text.
        limits: bounds on size (in characters), depth and alias expansion.
        what: what the text is, for the message about more than one document (``"a registry file"``).

    Raises:
        YamlProblem: the text is not UTF-8, too large, holds NUL bytes, does not parse, or has more documents.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise YamlProblem(f"input is not UTF-8 text (byte {error.start} is invalid)", None) from None
    if len(text) > limits.max_bytes:
        raise YamlProblem(f"input is {len(text)} characters; the limit is {limits.max_bytes}", None)
    if "\x00" in text:
        raise YamlProblem("input contains NUL bytes: it is not a text file", None)
    documents, problem = parse_documents(text, source, limits)
    if problem is not None:
        raise problem
    if len(documents) > 1:
        raise YamlProblem(f"{what} is one YAML document, not {len(documents)}", documents[1].start)
    return documents[0] if documents else None


def _rewrite(text: str, error: yaml.MarkedYAMLError, locate: _Locator) -> str | None:
    """Quote a flow plain scalar that ends in ``:`` (``[2001:db8::]``), as Kubernetes' YAML reads it.

    libyaml refuses a ``:`` followed by ``,``, ``]`` or ``}`` inside a flow collection; go-yaml, which
    Kubernetes uses, takes it as the last character of the scalar. Such a scalar (on one line) is quoted and
    the text parsed again; ``locate`` maps positions back to the text as written. ``None`` for any other
    error.
    """
    start, colon = error.context_mark, error.problem_mark
    if error.problem != "found unexpected ':'" or start is None or colon is None or start.line != colon.line:
        return None
    line_start = 0
    for _ in range(colon.line):
        line_start = text.index("\n", line_start) + 1
    begin, end = line_start + start.column, line_start + colon.column + 1
    scalar = text[begin:end]
    quoted = "'" + scalar.replace("'", "''") + "'"
    locate.rewrites.append((colon.line, start.column, len(quoted), len(scalar)))
    return text[:begin] + quoted + text[end:]


def _describe(character: object) -> str:
    if isinstance(character, int):
        return f"character #x{character:04x}"
    return f"character {character!r}"


def _offset(source: str, text: str, index: int) -> Position:
    """The position of a character index in ``text``."""
    before = text[:index]
    line = before.count("\n") + 1
    return Position(source, line, index - (before.rfind("\n") + 1) + 1)


def _json_surrogates(text: str) -> str:
    r"""Turn JSON's escaped surrogate pairs into the characters they stand for, in JSON text only.

    YAML's ``\u`` escapes cannot spell a surrogate pair, yet JSON writers use them for every character
    outside the Basic Multilingual Plane (``json.dumps("😀")`` is ``"\ud83d\ude00"``). YAML text is left
    alone: there, a single-quoted or plain scalar may hold such text literally.
    """
    if not text.lstrip("\ufeff \t\r\n").startswith(("{", "[")) or "\\u" not in text:
        return text

    def combine(match: re.Match[str]) -> str:
        high, low = int(match.group(2), 16), int(match.group(3), 16)
        return match.group(1) + chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))

    return _JSON_SURROGATE_PAIR.sub(combine, text)


def _parse(text: str, locate: _Locator, limits: LoadLimits, out: list[ParsedDocument]) -> None:
    anchors: dict[str, Any] = {}
    anchor_sizes: dict[str, int] = {}
    stack: list[_Frame] = []
    positions: dict[FieldPath, Position] = {}
    nodes = 0
    root: Any = None
    has_root = False
    start = Position(locate.source, 1, 1)

    def place(value: Any, position: Position, size: int, anchor: str | None) -> None:
        nonlocal root, has_root, nodes
        nodes += size
        if nodes > limits.max_nodes:
            raise YamlProblem(f"document expands to more than {limits.max_nodes} values (alias bomb?)", position)
        if anchor is not None:
            anchors[anchor] = value
            anchor_sizes[anchor] = size
        if not stack:
            root, has_root = value, True
            positions[()] = position
            return
        frame = stack[-1]
        if isinstance(frame.container, list):
            path = (*frame.path, len(frame.container))
            frame.container.append(value)
            positions.setdefault(path, position)
            return
        if frame.key is _NO_KEY:
            if value is _MERGE:
                frame.key = _MERGE
            elif isinstance(value, dict | list):
                raise YamlProblem("a map key must be a plain value, not a list or map", position)
            else:
                frame.key = "null" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
            frame.key_position = position
            return
        key, frame.key = frame.key, _NO_KEY
        if key is _MERGE:
            for item in value if isinstance(value, list) else [value]:
                if not isinstance(item, dict):
                    raise YamlProblem("a merge key (<<) needs a map or a list of maps", position)
                for merged_key, merged_value in item.items():
                    if merged_key not in frame.container:
                        frame.container[merged_key] = merged_value
                        frame.merged.add(merged_key)
                        positions.setdefault((*frame.path, merged_key), position)
            return
        assert isinstance(key, str)
        if key in frame.merged:
            frame.merged.discard(key)
            positions.pop((*frame.path, key), None)
        elif key in frame.container:
            raise YamlProblem(f"duplicate key {key!r}", frame.key_position)
        frame.container[key] = value
        positions.setdefault((*frame.path, key), frame.key_position or position)

    def child_path(position: Position) -> tuple[FieldPath, Position]:
        """The path of the value about to be placed, and its best position (its key's, in a map)."""
        if not stack:
            return (), position
        frame = stack[-1]
        if isinstance(frame.container, list):
            return (*frame.path, len(frame.container)), position
        if frame.key is _NO_KEY or frame.key is _MERGE:
            return frame.path, position
        assert isinstance(frame.key, str)
        return (*frame.path, frame.key), frame.key_position or position

    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.DocumentStartEvent):
            anchors.clear()
            anchor_sizes.clear()
            positions = {}
            root, has_root = None, False
            start = locate(event.start_mark)
        elif isinstance(event, yaml.DocumentEndEvent):
            if len(out) >= limits.max_documents:
                raise YamlProblem(f"more than {limits.max_documents} documents", start)
            if has_root and root is not None:
                out.append(ParsedDocument(root, positions, start, len(out)))
        elif isinstance(event, yaml.ScalarEvent):
            position = locate(event.start_mark)
            try:
                value = _scalar(event, locate)
            except YamlProblem as problem:
                raise YamlProblem(problem.message, problem.position or position) from None
            place(value, position, 1, event.anchor)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            position = locate(event.start_mark)
            if len(stack) >= limits.max_depth:
                raise YamlProblem(f"nesting deeper than {limits.max_depth} levels", position)
            container: Any = [] if isinstance(event, yaml.SequenceStartEvent) else {}
            path, position = child_path(position)
            positions.setdefault(path, position)
            stack.append(_Frame(container, path, event.anchor, position, nodes))
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            frame = stack.pop()
            if not isinstance(frame.container, list) and frame.key is not _NO_KEY:
                raise YamlProblem("a map key has no value", frame.key_position)
            place(frame.container, frame.position, 1, None)
            if frame.anchor is not None:
                anchors[frame.anchor] = frame.container
                anchor_sizes[frame.anchor] = nodes - frame.start_nodes
        elif isinstance(event, yaml.AliasEvent):
            position = locate(event.start_mark)
            if event.anchor not in anchors:
                raise YamlProblem(f"unknown alias *{event.anchor}", position)
            place(anchors[event.anchor], position, anchor_sizes[event.anchor], None)
