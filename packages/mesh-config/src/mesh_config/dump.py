"""Writing config objects back out as JSON-ready data or YAML."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from mesh_config._structure import thaw, unstructure
from mesh_config.meta import Resource

__all__ = ["to_dict", "to_yaml"]

_LINE_BREAKS = frozenset("\r\x85\u2028\u2029")
"""Characters YAML folds in plain and single-quoted scalars: strings holding one are written double-quoted."""


try:
    _BaseDumper: type[Any] = yaml.CSafeDumper
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _BaseDumper = yaml.SafeDumper


class _Dumper(_BaseDumper):  # type: ignore[misc]
    """PyYAML's safe dumper, with strings that survive the round trip whatever characters they hold."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = '"' if not _LINE_BREAKS.isdisjoint(data) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def to_dict(resource: Resource[Any]) -> dict[str, Any]:
    """The object as Kubernetes-style JSON-ready data (camelCase, unset fields left out)."""
    out: dict[str, Any] = {"apiVersion": resource.api_version, "kind": resource.kind}
    out["metadata"] = unstructure(resource.metadata)
    out["spec"] = unstructure(resource.spec)
    if resource.status is not None:
        out["status"] = thaw(resource.status)
    return out


def to_yaml(resources: Resource[Any] | Iterable[Resource[Any]]) -> str:
    """One or more objects as multi-document YAML that loads back to equal objects."""
    items = [resources] if isinstance(resources, Resource) else list(resources)
    return yaml.dump_all([to_dict(item) for item in items], Dumper=_Dumper, sort_keys=False, allow_unicode=True)
