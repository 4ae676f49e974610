"""Errors raised by mesh_config.

One root for everything the package raises::

    ConfigError
     +-- InvalidConfigError (also a ValueError): config that does not validate; carries its diagnostics
     +-- LoadError: input that cannot be read at all (a missing file, a directory loop)
     +-- StoreError: a config store refused an operation
          +-- NotFoundError       no object with that key
          +-- AlreadyExistsError  create() of a key that exists
          +-- ConflictError       update() with a stale resourceVersion

Validation problems are normally returned as :class:`~mesh_config.Diagnostic` values (every problem of a
document at once); :class:`InvalidConfigError` wraps them where an API must raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mesh_config.diagnostics import Diagnostic

__all__ = [
    "AlreadyExistsError",
    "ConfigError",
    "ConflictError",
    "InvalidConfigError",
    "LoadError",
    "NotFoundError",
    "StoreError",
]


class ConfigError(Exception):
    """The root of every error raised by mesh_config."""


class InvalidConfigError(ConfigError, ValueError):
    """Config that does not validate.

    Attributes:
        diagnostics: every problem found, errors and warnings, each with its source and field path.
    """

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        errors = [d for d in self.diagnostics if d.is_error]
        lines = [d.format() for d in errors] or ["invalid config"]
        super().__init__("\n".join(lines))


class LoadError(ConfigError):
    """Input that cannot be read at all."""


class StoreError(ConfigError):
    """A config store refused an operation."""


class NotFoundError(StoreError, KeyError):
    """No object with that key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class AlreadyExistsError(StoreError):
    """create() of a key that already exists."""


class ConflictError(StoreError):
    """update() or delete() with a resourceVersion that is no longer current."""
