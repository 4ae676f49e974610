"""Small text helpers shared by the modules of mesh_model (private)."""

from __future__ import annotations

_MAX_SHOWN = 80


def describe(value: object) -> str:
    """Return a short, printable quotation of ``value`` for an error message.

    Very long values are cut in the middle and their length is stated, so that an error about a
    10 MB host name stays readable.
    """
    text = repr(value)
    if len(text) <= _MAX_SHOWN:
        return text
    half = _MAX_SHOWN // 2
    size = len(value) if isinstance(value, str | bytes) else len(text)
    return f"{text[:half]}...{text[-half:]} ({size} characters)"
