"""Config keys and change sets: how a change to config or to a registry is named.

A :class:`ConfigKey` names one object (``VirtualService default/reviews``). A :class:`ChangeSet` is the set
of keys that changed since the last push; sets merge by union, as Istio merges push requests while it
debounces.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from typing import final

import attrs

from mesh_model._text import describe
from mesh_model.errors import InvalidValueError

__all__ = ["ChangeSet", "ConfigKey", "Kind"]


class Kind(enum.StrEnum):
    """The kinds of object whose changes the control plane tracks, with Istio's names.

    ``ConfigKey.kind`` takes any string, so that a user can track kinds of their own; these are the ones the
    mesh packages use.
    """

    VIRTUAL_SERVICE = "VirtualService"
    DESTINATION_RULE = "DestinationRule"
    GATEWAY = "Gateway"
    SERVICE_ENTRY = "ServiceEntry"
    WORKLOAD_ENTRY = "WorkloadEntry"
    WORKLOAD_GROUP = "WorkloadGroup"
    SIDECAR = "Sidecar"
    ENVOY_FILTER = "EnvoyFilter"
    PROXY_CONFIG = "ProxyConfig"
    PEER_AUTHENTICATION = "PeerAuthentication"
    AUTHORIZATION_POLICY = "AuthorizationPolicy"
    REQUEST_AUTHENTICATION = "RequestAuthentication"
    TELEMETRY = "Telemetry"
    WASM_PLUGIN = "WasmPlugin"
    TRAFFIC_EXTENSION = "TrafficExtension"
    MESH_CONFIG = "MeshConfig"
    SERVICE = "Service"
    """A service in a registry."""
    ENDPOINTS = "Endpoints"
    """The endpoints of a registry service (an endpoint-only change allows an EDS-only push)."""
    WORKLOAD = "Workload"
    """A workload in a registry."""
    SECRET = "Secret"
    """A credential served over SDS."""


@final
@attrs.frozen(order=True)
class ConfigKey:
    """Names one object: its kind, namespace and name.

    Attributes:
        kind: a :class:`Kind` value or a kind of the user's own.
        namespace: the object's namespace, empty for cluster-scoped objects.
        name: the object's name.
    """

    kind: str
    namespace: str
    name: str

    def __attrs_post_init__(self) -> None:
        for field, value in (("kind", self.kind), ("namespace", self.namespace), ("name", self.name)):
            if not isinstance(value, str):
                raise InvalidValueError(f"config key {field} must be a string, not {describe(value)}")

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


def _to_keys(value: Iterable[ConfigKey]) -> frozenset[ConfigKey]:
    keys = frozenset(value)
    for key in keys:
        if not isinstance(key, ConfigKey):
            raise InvalidValueError(f"a change set holds ConfigKey values, not {describe(key)}")
    return keys


@final
@attrs.frozen
class ChangeSet:
    """An immutable set of changed keys.

    Attributes:
        keys: the keys that changed.
    """

    keys: frozenset[ConfigKey] = attrs.field(factory=frozenset, converter=_to_keys)

    @classmethod
    def of(cls, *keys: ConfigKey) -> ChangeSet:
        """A change set of the given keys."""
        return cls(frozenset(keys))

    def __iter__(self) -> Iterator[ConfigKey]:
        return iter(sorted(self.keys))

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def __bool__(self) -> bool:
        return bool(self.keys)

    def __or__(self, other: object) -> ChangeSet:
        if not isinstance(other, ChangeSet):
            return NotImplemented
        return self.merge(other)

    def merge(self, other: ChangeSet | Iterable[ConfigKey]) -> ChangeSet:
        """The union of two change sets."""
        extra = other.keys if isinstance(other, ChangeSet) else _to_keys(other)
        return ChangeSet(self.keys | extra)

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds that changed."""
        return frozenset(key.kind for key in self.keys)

    def of_kind(self, *kinds: str) -> frozenset[ConfigKey]:
        """The changed keys of the given kinds."""
        wanted = set(kinds)
        return frozenset(key for key in self.keys if key.kind in wanted)

    def only(self, *kinds: str) -> bool:
        """True when the set is not empty and every change is of one of the given kinds.

        ``changes.only(Kind.ENDPOINTS)`` tells an endpoint-only change, which needs only an EDS push.
        """
        return bool(self.keys) and self.kinds <= set(kinds)
