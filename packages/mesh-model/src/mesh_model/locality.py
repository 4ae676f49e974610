"""Localities (``region/zone/subzone``) and Istio's locality matching.

A locality places a workload: ``us-east1/us-east1-b/rack7``. Istio's locality load balancing refers to
localities with patterns in which any level may be ``*`` and trailing levels may be left out
(``us-east1/*``, ``us-east1``), and prefers endpoints that share more levels with the client.
"""

from __future__ import annotations

from typing import final

import attrs

from mesh_model._text import describe
from mesh_model.errors import InvalidLocalityError

__all__ = ["Locality"]

_MAX_LENGTH = 1024


def _check_level(text: str, level: str) -> None:
    if "/" in level or any(ch.isspace() for ch in level) or not level.isprintable():
        raise InvalidLocalityError(
            f"locality {describe(text)}: level {describe(level)} may not contain '/', white space or control characters"
        )


@final
@attrs.frozen
class Locality:
    """Where a workload runs. Every level may be empty; a lower level needs the ones above it.

    Attributes:
        region: e.g. ``"us-east1"``.
        zone: e.g. ``"us-east1-b"``.
        subzone: e.g. ``"rack7"``.
    """

    region: str = ""
    zone: str = ""
    subzone: str = ""

    def __attrs_post_init__(self) -> None:
        levels = (self.region, self.zone, self.subzone)
        for level in levels:
            if not isinstance(level, str):
                raise InvalidLocalityError(f"locality levels must be strings, not {type(level).__name__}")
        text = str(self)
        for level in levels:
            _check_level(text, level)
        if len(text) > _MAX_LENGTH:
            raise InvalidLocalityError(f"locality {describe(text)} is longer than {_MAX_LENGTH} characters")
        if (self.subzone and not self.zone) or (self.zone and not self.region):
            raise InvalidLocalityError(f"locality {describe(text)}: a lower level needs every level above it")

    @classmethod
    def parse(cls, text: str) -> Locality:
        """Parse ``region/zone/subzone``; missing trailing levels are empty, ``""`` is the unknown locality.

        Raises:
            InvalidLocalityError: more than three levels, an empty level before a set one, or bad characters.
        """
        if not isinstance(text, str):
            raise InvalidLocalityError(f"locality must be a string, not {type(text).__name__}")
        if len(text) > _MAX_LENGTH:
            raise InvalidLocalityError(f"locality {describe(text)} is longer than {_MAX_LENGTH} characters")
        if not text:
            return cls()
        parts = text.split("/")
        if len(parts) > 3:
            raise InvalidLocalityError(
                f"locality {describe(text)} has {len(parts)} levels; expected region/zone/subzone"
            )
        for part in parts:
            _check_level(text, part)
        region, zone, subzone = (*parts, "", "")[:3]
        if (subzone and not zone) or (zone and not region):
            raise InvalidLocalityError(f"locality {describe(text)}: a lower level needs every level above it")
        return cls(region, zone, subzone)

    def __str__(self) -> str:
        return "/".join(level for level in (self.region, self.zone, self.subzone) if level)

    @property
    def is_empty(self) -> bool:
        """True for the unknown locality."""
        return not self.region

    def matches(self, pattern: str) -> bool:
        """True when this locality fits a pattern such as ``us-east1/*`` or ``us-east1/us-east1-b``.

        Each level of the pattern must equal this locality's level or be ``*``; levels the pattern leaves
        out match anything. This is Istio's ``LocalityMatch``, used by ``distribute`` and ``failover``.
        """
        parts = (*pattern.split("/"), "", "")[:3]
        region, zone, subzone = parts
        if region != "*" and region != self.region:
            return False
        if zone not in ("", "*") and zone != self.zone:
            return False
        return subzone in ("", "*") or subzone == self.subzone

    def shared_levels(self, other: Locality) -> int:
        """How many levels, from the region down, the two localities share (0 to 3).

        Istio's locality failover gives priority 0 to endpoints that share all three levels with the
        client, then 1 for the same zone, 2 for the same region, and 3 to the rest: the priority is
        ``3 - shared_levels``.
        """
        shared = 0
        for mine, theirs in (
            (self.region, other.region),
            (self.zone, other.zone),
            (self.subzone, other.subzone),
        ):
            if not mine or mine != theirs:
                break
            shared += 1
        return shared
