"""The context every validation rule reports into."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, final

from mesh_config.diagnostics import FieldPath, Severity
from mesh_config.meta import ObjectMeta

__all__ = ["ValidationContext"]

Finding = tuple[Severity, FieldPath, str]
_MISSING: Any = object()


@final
class ValidationContext:
    """Collects the errors and warnings of one object, each at a field path.

    Rules receive a context positioned at the part of the object they check, step into fields with
    :meth:`at`, and report with :meth:`error` and :meth:`warning`::

        for index, route in enumerate(spec.http):
            here = ctx.at("http", index)
            if route.redirect is not None and route.route:
                here.error("route and redirect may not both be set", "redirect")

    Paths use the names as written in YAML (``exportTo``, not ``export_to``).
    """

    def __init__(
        self,
        metadata: ObjectMeta | None = None,
        *,
        path: FieldPath = ("spec",),
        findings: list[Finding] | None = None,
        raw: Any = _MISSING,
    ) -> None:
        self.metadata = metadata or ObjectMeta()
        self.path = path
        self.findings: list[Finding] = findings if findings is not None else []
        self._raw = raw

    @property
    def namespace(self) -> str:
        """The namespace of the object being checked."""
        return self.metadata.namespace

    @property
    def name(self) -> str:
        """The name of the object being checked."""
        return self.metadata.name

    def at(self, *segments: str | int) -> ValidationContext:
        """A context for a field below this one (sharing the same findings)."""
        return ValidationContext(
            self.metadata, path=(*self.path, *segments), findings=self.findings, raw=self.raw(*segments)
        )

    def raw(self, *segments: str | int) -> Any:
        """The data as written at ``segments`` below this field (a dict, list or scalar).

        For rules that need to tell an empty value from an absent one; absent fields give a sentinel that
        :meth:`has` reports as absent.
        """
        node = self._raw
        for segment in segments:
            if isinstance(node, dict) and isinstance(segment, str) and segment in node:
                node = node[segment]
            elif isinstance(node, list) and isinstance(segment, int) and 0 <= segment < len(node):
                node = node[segment]
            else:
                return _MISSING
        return node

    def has(self, *segments: str | int) -> bool:
        """True when the field was written, even as an empty list or map (CEL's ``has()``)."""
        return self.raw(*segments) is not _MISSING

    def error(self, message: str, *segments: str | int) -> None:
        """Report an error at this path, or at ``segments`` below it."""
        self.findings.append((Severity.ERROR, (*self.path, *segments), message))

    def warning(self, message: str, *segments: str | int) -> None:
        """Report a warning at this path, or at ``segments`` below it."""
        self.findings.append((Severity.WARNING, (*self.path, *segments), message))

    # Kubernetes' wording for the CRD schema layer, so that messages read as `kubectl apply` prints them.

    def required(self, *segments: str | int) -> None:
        """A required field is missing (``Required value``)."""
        self.error("Required value", *segments)

    def rule(self, message: str, *segments: str | int, json_type: str = "object") -> None:
        """A CRD ``x-kubernetes-validations`` (CEL) rule failed: ``Invalid value: "object": <message>``."""
        self.error(f'Invalid value: "{json_type}": {message}', *segments)

    def unsupported(self, value: object, supported: Iterable[str], *segments: str | int) -> None:
        """A value outside an enum: ``Unsupported value: "x": supported values: "a", "b"``."""
        names = ", ".join(f'"{item}"' for item in supported)
        self.error(f'Unsupported value: "{value}": supported values: {names}', *segments)

    def duplicate(self, value: object, *segments: str | int) -> None:
        """A repeated value in a list that must hold each value once: ``Duplicate value: "x"``."""
        self.error(f'Duplicate value: "{value}"', *segments)

    def min_length(self, length: int, *segments: str | int) -> None:
        """A string shorter than the schema allows."""
        self.error(f"in body should be at least {length} chars long", *segments)

    def max_length(self, length: int, *segments: str | int) -> None:
        """A string longer than the schema allows."""
        self.error(f"in body may not be longer than {length}", *segments)

    def min_items(self, count: int, *segments: str | int) -> None:
        """A list with fewer items than the schema requires."""
        self.error(f"in body should have at least {count} items", *segments)

    def max_items(self, count: int, *segments: str | int) -> None:
        """A list with more items than the schema allows."""
        self.error(f"in body should have at most {count} items", *segments)

    def min_properties(self, count: int, *segments: str | int) -> None:
        """A map with fewer entries than the schema requires."""
        self.error(f"in body should have at least {count} properties", *segments)

    def minimum(self, bound: float, *segments: str | int) -> None:
        """A number below the schema's minimum."""
        self.error(f"in body should be greater than or equal to {bound}", *segments)

    def maximum(self, bound: float, *segments: str | int) -> None:
        """A number above the schema's maximum."""
        self.error(f"in body should be less than or equal to {bound}", *segments)

    def pattern(self, regex: str, *segments: str | int) -> None:
        """A string that does not match the schema's pattern."""
        self.error(f"in body should match '{regex}'", *segments)

    @property
    def has_errors(self) -> bool:
        """True when an error has been reported."""
        return any(severity is Severity.ERROR for severity, _, _ in self.findings)
