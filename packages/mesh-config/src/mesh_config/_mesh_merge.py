"""Applying a user's MeshConfig over Istio's defaults, as ``mesh.ApplyMeshConfig`` does (private).

The user's fields replace the defaults with protobuf merge semantics: a message given by the user is merged
into the default message field by field (setting one member of a oneof clears the others), a map gains the
user's entries, and lists and scalars are replaced. On top of that, Istio merges ``extensionProviders`` by
name (a user provider replaces the default of the same name, new ones are appended) and takes the union of
``trustDomainAliases``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import attrs

from mesh_config._mesh_messages import MeshConfig
from mesh_config._structure import fields_of
from mesh_config.types import FrozenDict

__all__ = ["apply_mesh_config", "merge_message"]

T = TypeVar("T")


def merge_message(default: T, user: T, raw: Mapping[str, Any]) -> T:
    """``default`` with the fields written in ``raw`` (the user's data for ``user``) merged in."""
    changes: dict[str, Any] = {}
    cleared_oneofs: set[str] = set()
    for info in fields_of(type(default)):
        written = raw.get(info.json)
        if written is None:
            continue
        if info.oneof is not None:
            cleared_oneofs.add(info.oneof)
        mine = getattr(user, info.name)
        theirs = getattr(default, info.name)
        if attrs.has(type(mine)) and attrs.has(type(theirs)) and isinstance(written, Mapping):
            changes[info.name] = merge_message(theirs, mine, written)
        elif isinstance(mine, FrozenDict) and isinstance(theirs, FrozenDict):
            changes[info.name] = FrozenDict({**theirs, **mine})
        else:
            changes[info.name] = mine
    for info in fields_of(type(default)):
        if info.oneof in cleared_oneofs and info.name not in changes:
            changes[info.name] = info.default
    return attrs.evolve(default, **changes)  # type: ignore[misc]


def apply_mesh_config(default: MeshConfig, user: MeshConfig, raw: Mapping[str, Any]) -> MeshConfig:
    """The user's MeshConfig applied over ``default`` (Istio's ``ApplyMeshConfig``)."""
    merged = merge_message(default, user, raw)
    providers = list(default.extension_providers)
    for provider in user.extension_providers:
        for index, existing in enumerate(providers):
            if existing.name == provider.name:
                providers[index] = provider
                break
        else:
            providers.append(provider)
    aliases = tuple(sorted(set(default.trust_domain_aliases) | set(user.trust_domain_aliases)))
    return attrs.evolve(merged, extension_providers=tuple(providers), trust_domain_aliases=aliases)
