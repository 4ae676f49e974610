"""What the result classes of the loaders share: their diagnostics, read as a verdict (private)."""

from __future__ import annotations

from typing import Self

from mesh_config.diagnostics import Diagnostic
from mesh_config.errors import InvalidConfigError


class Outcome:
    """A base for attrs result classes with a ``diagnostics`` field: ``ok``, ``errors``, ``warnings``."""

    __slots__ = ()

    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        """True when nothing is an error (warnings allowed)."""
        return not any(diagnostic.is_error for diagnostic in self.diagnostics)

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """The errors."""
        return tuple(diagnostic for diagnostic in self.diagnostics if diagnostic.is_error)

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        """The warnings."""
        return tuple(diagnostic for diagnostic in self.diagnostics if not diagnostic.is_error)

    def raise_for_errors(self) -> Self:
        """Raise :class:`~mesh_config.InvalidConfigError` if there is an error; return self otherwise."""
        if not self.ok:
            raise InvalidConfigError(self.diagnostics)
        return self
