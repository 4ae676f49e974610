"""Reports of a load for people and for machines (what ``meshctl validate`` prints)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mesh_config.diagnostics import Diagnostic
from mesh_config.loader import LoadResult

__all__ = ["format_text", "summary", "to_json"]


def format_text(diagnostics: Iterable[Diagnostic]) -> str:
    """One line per diagnostic, ``FILE:LINE:COL: error: Kind namespace/name: field.path: message``.

    The lines end with a newline; no diagnostics give an empty string.
    """
    return "".join(f"{diagnostic.format()}\n" for diagnostic in diagnostics)


def summary(result: LoadResult) -> str:
    """One line that counts what a load found: ``3 objects valid, 1 invalid, 2 skipped: 1 error, 0 warnings``."""
    invalid = sum(1 for document in result.documents if not document.ok)
    errors, warnings = len(result.errors), len(result.warnings)
    return (
        f"{_count(len(result.resources), 'object')} valid, {invalid} invalid, {len(result.skipped)} skipped: "
        f"{_count(errors, 'error')}, {_count(warnings, 'warning')}"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def to_json(result: LoadResult) -> dict[str, Any]:
    """The result as a JSON-ready dict: validity, counts, every diagnostic, and the objects accepted.

    ::

        {"valid": false,
         "counts": {"errors": 1, "warnings": 0, "accepted": 3, "invalid": 1, "skipped": 2},
         "diagnostics": [{"severity": "error", "file": "vs.yaml", "line": 7, "column": 9, "kind": ...,
                          "namespace": ..., "name": ..., "field": "spec.http[0].route", "message": ...}],
         "accepted": [{"apiVersion": ..., "kind": ..., "namespace": ..., "name": ..., "file": ...}],
         "skipped": [{"file": "app.yaml", "kind": "Deployment"}]}
    """
    sources = [(document.resource, document.source) for document in result.documents if document.resource is not None]
    if len(sources) != len(result.resources):  # a LoadResult made by hand, without its documents
        sources = [(resource, "") for resource in result.resources]
    accepted = [
        {
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "namespace": resource.namespace,
            "name": resource.name,
            "file": source,
        }
        for resource, source in sources
        if resource is not None
    ]
    return {
        "valid": result.ok,
        "counts": {
            "errors": len(result.errors),
            "warnings": len(result.warnings),
            "accepted": len(result.resources),
            "invalid": sum(1 for document in result.documents if not document.ok),
            "skipped": len(result.skipped),
        },
        "diagnostics": [diagnostic.to_json() for diagnostic in result.diagnostics],
        "accepted": accepted,
        "skipped": [{"file": source, "kind": kind} for source, kind in result.skipped],
    }
