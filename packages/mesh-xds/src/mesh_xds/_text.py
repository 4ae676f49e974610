"""Small text helpers for error and log messages (private)."""

from __future__ import annotations

import reprlib
from collections.abc import Iterable

_MAX_SHOWN = 80

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxstring = 10 * _MAX_SHOWN
_repr.maxother = 10 * _MAX_SHOWN


def describe(value: object) -> str:
    """Return a short, printable quotation of ``value`` for an error or log message.

    Very long values are cut in the middle and their length is stated.
    """
    try:
        text = _repr.repr(value)
    except (RecursionError, ValueError):
        return f"a {type(value).__name__} too large or deep to show"
    if len(text) <= _MAX_SHOWN:
        return text
    half = _MAX_SHOWN // 2
    size = f"{len(value)} characters" if isinstance(value, str | bytes) else type(value).__name__
    return f"{text[:half]}...{text[-half:]} ({size})"


def describe_names(names: Iterable[str], limit: int = 5) -> str:
    """Quote the first few of some names (sorted) and say how many more there are."""
    items = sorted(names)
    shown = ", ".join(describe(name) for name in items[:limit])
    more = len(items) - limit
    return f"{shown} and {more} more" if more > 0 else shown
