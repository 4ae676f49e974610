"""VirtualServices by gateway and host, with delegates resolved and Istio's conflict rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, final

import attrs

from mesh_config.index._common import Sourced, oldest_first
from mesh_config.index._delegate import merge_routes
from mesh_config.meta import Resource
from mesh_model import ConfigKey, Hostname, InvalidHostError, most_specific_match, resolve_short_name

__all__ = ["MESH_GATEWAY", "ResolvedVirtualService", "VirtualServiceIndex", "resolve_gateway_name"]

MESH_GATEWAY = "mesh"
"""The reserved gateway name for the mesh's sidecars."""

_KIND = "VirtualService"


def resolve_gateway_name(name: str, namespace: str) -> str:
    """A VirtualService's gateway reference as ``namespace/name`` (``mesh`` stays ``mesh``).

    A bare ``name`` is in the VirtualService's namespace; the legacy ``name.namespace`` (and its
    ``.svc.cluster.local`` forms) is accepted too.
    """
    if name == MESH_GATEWAY or "/" in name:
        return name
    if "." in name:
        gateway, _, rest = name.partition(".")
        return f"{rest.split('.', 1)[0]}/{gateway}"
    return f"{namespace}/{name}"


@final
@attrs.frozen
class ResolvedVirtualService:
    """A root VirtualService ready for route generation.

    Attributes:
        resource: the VirtualService as written.
        hosts: its hosts, resolved (short names become FQDNs in its namespace).
        gateways: its gateways as ``namespace/name`` or ``mesh`` (``mesh`` when none is given).
        spec: its spec with delegated routes merged in (``http`` holds no ``delegate`` route any more).
        sources: the root VirtualService and every delegate it pulled in.
    """

    resource: Resource[Any]
    hosts: tuple[Hostname, ...]
    gateways: tuple[str, ...]
    spec: Any
    sources: tuple[ConfigKey, ...]

    @property
    def key(self) -> ConfigKey:
        """The root VirtualService's key."""
        return self.resource.key


def _exported_to(resource: Resource[Any], namespace: str) -> bool:
    export_to = tuple(resource.spec.export_to) or ("*",)
    return any(e == "*" or e == namespace or (e == "." and namespace == resource.namespace) for e in export_to)


@final
class VirtualServiceIndex:
    """Answers "which VirtualServices apply to this gateway (or the mesh) and host".

    Delegate VirtualServices (no hosts) are merged into the routes that name them; a delegate is used only
    by roots it is exported to, and never on its own. For the mesh, when several VirtualServices claim the
    same host, the oldest wins that host (Istio's rule) and the conflict is recorded; for a gateway, their
    routes are merged in age order.
    """

    def __init__(self, resources: Iterable[Resource[Any]]) -> None:
        ordered = oldest_first(r for r in resources if r.kind == _KIND)
        delegates = {(r.namespace, r.name): r for r in ordered if not r.spec.hosts}
        self._roots: list[ResolvedVirtualService] = []
        for resource in ordered:
            if not resource.spec.hosts:
                continue
            resolved = _resolve(resource, delegates)
            if resolved is not None:
                self._roots.append(resolved)

    @property
    def virtual_services(self) -> tuple[ResolvedVirtualService, ...]:
        """Every root VirtualService, oldest first."""
        return tuple(self._roots)

    def for_gateway(self, gateway: str, namespace: str | None = None) -> tuple[ResolvedVirtualService, ...]:
        """The VirtualServices bound to ``gateway`` (``mesh`` or ``ns/name``), oldest first.

        With ``namespace``, only those exported to it (for sidecars: the client's namespace).
        """
        return tuple(
            vs
            for vs in self._roots
            if gateway in vs.gateways and (namespace is None or _exported_to(vs.resource, namespace))
        )

    def for_host(
        self, host: Hostname, *, gateway: str = MESH_GATEWAY, namespace: str | None = None
    ) -> Sourced[tuple[ResolvedVirtualService, ...]]:
        """The VirtualServices whose hosts cover ``host`` most specifically, on ``gateway``.

        For the mesh this is at most one (the oldest); for a gateway every one with that host, oldest first.
        """
        candidates = self.for_gateway(gateway, namespace)
        best = most_specific_match(host, [h for vs in candidates for h in vs.hosts])
        if best is None:
            return Sourced(())
        chosen = tuple(vs for vs in candidates if best in vs.hosts)
        if gateway == MESH_GATEWAY:
            chosen = chosen[:1]
        return Sourced(chosen, tuple(key for vs in chosen for key in vs.sources))

    def mesh_conflicts(self) -> list[tuple[Hostname, ConfigKey, ConfigKey]]:
        """(host, winner, loser) for each host that several mesh VirtualServices claim."""
        owners: dict[Hostname, ConfigKey] = {}
        found = []
        for vs in self._roots:
            if MESH_GATEWAY not in vs.gateways:
                continue
            for host in vs.hosts:
                owner = owners.setdefault(host, vs.key)
                if owner != vs.key:
                    found.append((host, owner, vs.key))
        return found


def _resolve(resource: Resource[Any], delegates: dict[tuple[str, str], Resource[Any]]) -> ResolvedVirtualService | None:
    hosts = []
    for text in resource.spec.hosts:
        try:
            hosts.append(resolve_short_name(text, resource.namespace))
        except InvalidHostError:
            continue
    gateways = tuple(resolve_gateway_name(g, resource.namespace) for g in resource.spec.gateways) or (MESH_GATEWAY,)
    sources = [resource.key]
    routes: list[Any] = []
    for route in resource.spec.http:
        delegate_ref = route.delegate
        if delegate_ref is None:
            routes.append(route)
            continue
        target = delegates.get((delegate_ref.namespace or resource.namespace, delegate_ref.name))
        if target is None or not _exported_to(target, resource.namespace):
            continue
        sources.append(target.key)
        routes.extend(merge_routes(route, target.spec.http))
    spec = attrs.evolve(resource.spec, http=tuple(routes))
    return ResolvedVirtualService(resource, tuple(hosts), gateways, spec, tuple(sources))
