"""Small text helpers shared by the modules of mesh_ca (private)."""

from __future__ import annotations

import reprlib
from datetime import timedelta

_MAX_SHOWN = 80

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxstring = 10 * _MAX_SHOWN
_repr.maxother = 10 * _MAX_SHOWN
_repr.maxlong = _MAX_SHOWN


def describe(value: object) -> str:
    """Return a short, printable quotation of ``value`` for an error message."""
    try:
        text = _repr.repr(value)
    except (RecursionError, ValueError):
        return f"a {type(value).__name__} too large or deep to show"
    if len(text) <= _MAX_SHOWN:
        return text
    half = _MAX_SHOWN // 2
    size = f"{len(value)} characters" if isinstance(value, str | bytes) else f"{type(value).__name__}"
    return f"{text[:half]}...{text[-half:]} ({size})"


def duration(value: timedelta) -> str:
    """Render a duration the way a person writes it: ``90 days``, ``24h``, ``2min``, ``1.5s``."""
    seconds = value.total_seconds()
    if seconds and seconds % 86400 == 0:
        days = int(seconds // 86400)
        return f"{days} day" if days == 1 else f"{days} days"
    if seconds and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)}min"
    return f"{seconds:g}s"
