"""Diagnostics: one problem found in config, with where it is and how bad it is.

A diagnostic names its source file, line and column, the object (kind, namespace/name) and the field path
in the user's own spelling (``spec.http[0].route[1].weight``), so that ``FILE:LINE:COL: error: Kind
ns/name: field.path: message`` is enough to find and fix it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import final

import attrs

__all__ = ["Diagnostic", "FieldPath", "Position", "Severity", "format_path"]

FieldPath = tuple[str | int, ...]
"""A path into a document: field names (as written in YAML) and list indexes."""


def format_path(path: Sequence[str | int]) -> str:
    """Format a path as ``spec.http[0].route[1].weight``; map keys that are not identifiers are quoted."""
    out: list[str] = []
    for segment in path:
        if isinstance(segment, int):
            out.append(f"[{segment}]")
        elif segment and all(ch.isalnum() or ch in "_-" for ch in segment):
            out.append(f".{segment}" if out else segment)
        else:
            out.append(f"[{segment!r}]")
    return "".join(out)


class Severity(enum.Enum):
    """How bad a problem is: errors reject the object, warnings do not."""

    ERROR = "error"
    WARNING = "warning"


@final
@attrs.frozen(order=True)
class Position:
    """A place in a source file; line and column count from 1.

    Attributes:
        source: the file name, or ``"-"`` for standard input, or a label such as ``"<string>"``.
        line: the line, from 1.
        column: the column, from 1.
    """

    source: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.source
        return f"{self.source}:{self.line}:{self.column}"


@final
@attrs.frozen
class Diagnostic:
    """One problem, with its severity, position, object and field path.

    Attributes:
        severity: error or warning.
        message: what is wrong, quoting the offending value.
        position: where in the source, when known.
        kind: the object's kind (``VirtualService``), empty when the document has none.
        namespace: the object's namespace.
        name: the object's name.
        path: the field path inside the document.
    """

    severity: Severity
    message: str
    position: Position | None = None
    kind: str = ""
    namespace: str = ""
    name: str = ""
    path: FieldPath = ()

    @property
    def is_error(self) -> bool:
        """True for errors."""
        return self.severity is Severity.ERROR

    @property
    def field(self) -> str:
        """The field path, formatted (``spec.http[0].route``)."""
        return format_path(self.path)

    def format(self) -> str:
        """``FILE:LINE:COL: error: Kind namespace/name: field.path: message`` (parts left out when unknown)."""
        parts = [str(self.position) if self.position else "<unknown>", self.severity.value]
        if self.kind:
            who = f"{self.namespace}/{self.name}" if self.namespace else self.name
            parts.append(f"{self.kind} {who}".rstrip())
        if self.path and self.message.startswith("in body "):
            # Kubernetes' own wording for schema errors: "spec.port in body should be ...".
            parts.append(f"{self.field} {self.message}")
        else:
            if self.path:
                parts.append(self.field)
            parts.append(self.message)
        return ": ".join(parts)

    def to_json(self) -> dict[str, object]:
        """The diagnostic as a JSON-ready dict (``meshctl validate --output json``)."""
        position = self.position or Position("")
        return {
            "severity": self.severity.value,
            "file": position.source,
            "line": position.line,
            "column": position.column,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "field": self.field,
            "message": self.message,
        }


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    """True when any diagnostic is an error."""
    return any(d.is_error for d in diagnostics)
