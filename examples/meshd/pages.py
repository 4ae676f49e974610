"""The contents of meshd's debug pages, built from the parts it wires (no key material, ever)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import attrs
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mesh_config import ConfigStore, Diagnostic, DirectoryConfigStore, all_kinds, to_dict
from mesh_xds import StreamStatus, XdsMetrics
from mesh_xds.generate import XdsController
from meshd.debug import Page

__all__ = ["config_dump", "metrics_page", "push_status", "redact", "sync_status"]

REDACTED: Final = "[redacted]"
_KEY_MARKER: Final = "PRIVATE KEY-----"


def redact(value: Any) -> Any:
    """``value`` with every string that holds a PEM private key replaced by ``[redacted]``."""
    if isinstance(value, str):
        return REDACTED if _KEY_MARKER in value else value
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def config_dump(
    store: ConfigStore,
    *,
    diagnostics: Iterable[tuple[str, Sequence[Diagnostic]]] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The accepted config objects (as Kubernetes JSON, with the file each comes from) and the current problems.

    Args:
        store: the config store.
        diagnostics: ``(source, diagnostics)`` pairs: the config directory's, the registry file's, ...
        extra: more top-level entries.
    """
    resources = []
    directory = store if isinstance(store, DirectoryConfigStore) else None
    for kind in sorted({spec.kind for spec in all_kinds()}):
        for resource in store.list(kind):
            item = to_dict(resource)
            if directory is not None:
                item["source"] = directory.source_of(resource.kind, resource.namespace, resource.name)
            resources.append(item)
    problems = {source: [item.to_json() for item in found] for source, found in diagnostics}
    dump: dict[str, Any] = redact({"resources": resources, "diagnostics": problems, **(extra or {})})
    return dump


def sync_status(statuses: Iterable[StreamStatus]) -> list[dict[str, Any]]:
    """Per connected proxy and type: what was sent, ACKed and NACKed (with the error), and when."""
    return [status.to_json() for status in sorted(statuses, key=lambda status: (status.node.id, status.stream_id))]


def push_status(controller: XdsController) -> dict[str, Any]:
    """What the controller has pushed, and the changes still waiting."""
    return {**attrs.asdict(controller.stats), "pending_changes": len(controller.pending)}


def metrics_page(metrics: XdsMetrics) -> Page:
    """The Prometheus text exposition of the xDS metrics."""
    return Page(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
