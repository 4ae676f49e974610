"""The harness's errors.

::

    HarnessError                  the mesh cannot do what was asked (the message names what and why)
    ├── TopologyError (ValueError)    a topology that cannot run: an unknown call target, a duplicate name, ...
    ├── ConfigRejectedError (ValueError)  config that does not validate, with its diagnostics
    └── StartError                a part did not start or get ready in time (with the tail of its log)
"""

from __future__ import annotations

__all__ = ["ConfigRejectedError", "HarnessError", "StartError", "TopologyError"]


class HarnessError(Exception):
    """The mesh cannot do what was asked; the message names what and why."""


class TopologyError(HarnessError, ValueError):
    """A topology that cannot run: a malformed name or port, an unknown call target, a duplicate service."""


class ConfigRejectedError(HarnessError, ValueError):
    """Config that does not validate (the message lists every problem with its line and field)."""


class StartError(HarnessError):
    """A part of the mesh did not start or get ready in time (the message has the tail of its log)."""
