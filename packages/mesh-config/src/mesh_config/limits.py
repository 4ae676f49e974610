"""Bounds on the input the loader accepts, so that hostile YAML fails fast instead of exhausting memory."""

from __future__ import annotations

from typing import final

import attrs

__all__ = ["LoadLimits"]


@final
@attrs.frozen(kw_only=True)
class LoadLimits:
    """How much input one load may take.

    Attributes:
        max_bytes: the largest file or text accepted (Kubernetes itself refuses requests over 3 MiB).
        max_depth: the deepest nesting of lists and maps.
        max_nodes: the most values one file may expand to, counting every expansion of a YAML alias (this
            is what stops "billion laughs" alias bombs).
        max_documents: the most documents in one file.
    """

    max_bytes: int = 8 * 1024 * 1024
    max_depth: int = 64
    max_nodes: int = 1_000_000
    max_documents: int = 10_000
