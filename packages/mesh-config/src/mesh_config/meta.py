"""The Kubernetes envelope of every config object: apiVersion, kind, metadata, spec and status."""

from __future__ import annotations

from typing import Any, Generic, TypeVar, final

import attrs

from mesh_config.types import FrozenDict, Int64, JsonValue, integer, mapping, repeated, string
from mesh_model import ConfigKey

__all__ = ["ObjectMeta", "Resource"]

SpecT = TypeVar("SpecT")


@final
@attrs.frozen
class ObjectMeta:
    """Kubernetes object metadata; the fields Istio config uses, and the rest of ObjectMeta accepted as is."""

    __mesh_allow_null__ = True

    name: str = string()
    namespace: str = string()
    labels: FrozenDict[str, str] = mapping()
    annotations: FrozenDict[str, str] = mapping()
    resource_version: str = string()
    generation: Int64 = integer()
    creation_timestamp: str = string()
    uid: str = string()
    generate_name: str = string()
    deletion_timestamp: str = string()
    deletion_grace_period_seconds: Int64 = integer()
    owner_references: tuple[JsonValue, ...] = repeated()
    finalizers: tuple[str, ...] = repeated()
    managed_fields: tuple[JsonValue, ...] = repeated()
    self_link: str = string()


@final
@attrs.frozen
class Resource(Generic[SpecT]):
    """One config object: its envelope and its typed spec.

    Attributes:
        api_version: as written, e.g. ``"networking.istio.io/v1beta1"``.
        kind: e.g. ``"VirtualService"``.
        metadata: name, namespace, labels, annotations, resourceVersion, ...
        spec: the typed spec (``VirtualService``, ``DestinationRule``, ...).
        status: the object's status as written, if any (never validated).
    """

    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: SpecT
    status: Any = None

    @property
    def group(self) -> str:
        """The API group (``networking.istio.io``)."""
        group, _, _ = self.api_version.rpartition("/")
        return group

    @property
    def version(self) -> str:
        """The API version (``v1``)."""
        return self.api_version.rpartition("/")[2]

    @property
    def name(self) -> str:
        """``metadata.name``."""
        return self.metadata.name

    @property
    def namespace(self) -> str:
        """``metadata.namespace``."""
        return self.metadata.namespace

    @property
    def key(self) -> ConfigKey:
        """The object's ConfigKey (kind, namespace, name)."""
        return ConfigKey(self.kind, self.metadata.namespace, self.metadata.name)

    def with_metadata(self, **changes: Any) -> Resource[SpecT]:
        """A copy with metadata fields replaced (``resource.with_metadata(resource_version="7")``)."""
        return attrs.evolve(self, metadata=attrs.evolve(self.metadata, **changes))
