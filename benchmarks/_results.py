"""The figures of the benchmarks: merged into ``benchmarks/results.json`` and shown in ``docs/performance.md``.

``results.json`` maps a kebab-case figure name to its value and unit::

    {"xds-convergence-1000-clusters-100-clients-sotw-median": {"value": 412.5, "unit": "ms"}}

Each benchmark merges its own figures into the file, keeping those of the others, and replaces its own
section of ``docs/performance.md``: the lines between ``<!-- results:NAME -->`` and
``<!-- end results:NAME -->``.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Final, TypedDict

ROOT: Final = Path(__file__).resolve().parents[1]
RESULTS: Final = ROOT / "benchmarks" / "results.json"
REPORT: Final = ROOT / "docs" / "performance.md"

_NAME: Final = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


class Figure(TypedDict):
    """One measured figure."""

    value: float
    unit: str


class ResultsError(Exception):
    """A figure, the results file or the report cannot be used as it is."""


def figure(value: float, unit: str) -> Figure:
    """A figure, its value rounded to what the measurement can tell (three decimals).

    Raises:
        ResultsError: the value is not a finite number, or the unit is empty.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ResultsError(f"a figure's value must be a finite number, not {value!r}")
    if not unit:
        raise ResultsError("a figure needs a unit")
    rounded = round(float(value), 3)
    return {"value": int(rounded) if rounded.is_integer() else rounded, "unit": unit}


def _write(path: Path, text: str) -> None:
    """Replace a file at once (readers see the old text or the new, never half of it), keeping its mode."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False, suffix=".tmp") as out:
        out.write(text)
    os.chmod(out.name, mode)
    os.replace(out.name, path)


def _read(path: Path) -> dict[str, Figure]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ResultsError(f"{path} cannot be read as JSON: {error}") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path} must hold a JSON object of figures, not {type(data).__name__}")
    return data


def merge(figures: Mapping[str, Figure], path: Path = RESULTS) -> dict[str, Figure]:
    """Merge ``figures`` into the results file (a figure of the same name is replaced); return the whole.

    Raises:
        ResultsError: a name is not kebab-case, or the file exists and is not a JSON object.
    """
    for name in figures:
        if not _NAME.fullmatch(name):
            raise ResultsError(f"figure names are kebab-case (like xds-push-bytes), not {name!r}")
    merged = _read(path)
    merged.update(figures)
    ordered = {name: merged[name] for name in sorted(merged)}
    _write(path, json.dumps(ordered, indent=2) + "\n")
    return ordered


def replace_section(name: str, markdown: str, path: Path = REPORT) -> None:
    """Replace the section ``name`` of the report with ``markdown``.

    Raises:
        ResultsError: the report has no such section (its two marker lines are missing).
    """
    start, end = f"<!-- results:{name} -->", f"<!-- end results:{name} -->"
    text = path.read_text(encoding="utf-8")
    before, found, rest = text.partition(start + "\n")
    _, found_end, after = rest.partition(end)
    if not found or not found_end:
        raise ResultsError(f"{path} has no section {name!r}: add the lines {start!r} and {end!r} to it")
    _write(path, f"{before}{start}\n{markdown.rstrip()}\n{end}{after}")
