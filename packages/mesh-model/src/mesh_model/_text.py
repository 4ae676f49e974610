"""Small text helpers shared by the modules of mesh_model (private)."""

from __future__ import annotations

import reprlib

_MAX_SHOWN = 80

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxstring = 10 * _MAX_SHOWN
_repr.maxother = 10 * _MAX_SHOWN
_repr.maxlong = _MAX_SHOWN


def describe(value: object) -> str:
    """Return a short, printable quotation of ``value`` for an error message.

    Very long values are cut in the middle and their length is stated, so that an error about a
    10 MB host name stays readable; deeply nested values are abbreviated rather than walked.
    """
    try:
        text = _repr.repr(value)
    except (RecursionError, ValueError):
        return f"a {type(value).__name__} too large or deep to show"
    if len(text) <= _MAX_SHOWN:
        return text
    half = _MAX_SHOWN // 2
    size = f"{len(value)} characters" if isinstance(value, str | bytes) else f"{type(value).__name__}"
    return f"{text[:half]}...{text[-half:]} ({size})"
