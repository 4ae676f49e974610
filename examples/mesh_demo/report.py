"""What the demo observed next to what the config asked for, as one table per step."""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TextIO, final

import attrs

__all__ = ["Check", "binomial_bounds", "counts", "print_table"]


@final
@attrs.frozen
class Check:
    """One observation and what the config asked for.

    Attributes:
        what: what was looked at (``reviews versions, 40 requests``).
        expected: what the config asks for.
        observed: what came back.
        ok: whether the observation matches.
    """

    what: str
    expected: str
    observed: str
    ok: bool


def counts(values: Iterable[object]) -> str:
    """``v1: 19, v3: 21`` (sorted; ``none`` for a missing value)."""
    found = Counter("none" if value is None else str(value) for value in values)
    return ", ".join(f"{key}: {count}" for key, count in sorted(found.items())) or "nothing"


def binomial_bounds(requests: int, share: float, *, sigmas: float = 4.0) -> tuple[int, int]:
    """The counts a ``share`` of ``requests`` falls within but once in tens of thousands of runs (``sigmas`` wide)."""
    mean = requests * share
    spread = sigmas * math.sqrt(requests * share * (1 - share))
    return max(0, math.ceil(mean - spread)), min(requests, math.floor(mean + spread))


def print_table(checks: Sequence[Check], out: TextIO = sys.stdout) -> None:
    """The checks as aligned columns: what, expected, observed, and ``ok`` or ``MISMATCH``."""
    rows = [("check", "expected", "observed", "")]
    rows += [(check.what, check.expected, check.observed, "ok" if check.ok else "MISMATCH") for check in checks]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("      " + "  ".join([*cells, row[3]]).rstrip(), file=out, flush=True)
