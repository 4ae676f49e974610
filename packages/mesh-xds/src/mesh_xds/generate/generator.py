"""A proxy's whole config as one consistent :class:`~mesh_xds.Snapshot`, shared between proxies where it can be.

:class:`ProxyGenerator` chooses the builders for a proxy as istiod does (ISTIO.md 2.1: the ``GENERATOR``
metadata first, then the node type): proxyless gRPC clients (``GENERATOR=grpc``) get the gRPC resources,
routers (gateways) the gateway listeners and routes, sidecars the sidecar ones. It packs what they build
into a snapshot and checks that the snapshot holds the route configurations and load assignments its
listeners and clusters wait for over ADS (a snapshot that lacks one is refused: the generators went wrong).
Clusters that routes name but no service makes (a VirtualService destination nobody defines) and secrets
the control plane does not have are only warned about: as with Istio, those requests fail and the rest of
the config is served::

    generator = ProxyGenerator()
    snapshot = generator.generate(GenerationContext(proxy, push, registry, addresses=addresses))
    cache.set_snapshot(proxy.node_id, snapshot)

Generation is shared. Equal resources are one :class:`~mesh_xds.Resource` object (and so one set of bytes)
whichever proxy or push made them. Proxies of the same scope (the same push, namespace, labels, kind,
locality, DNS domain and Sidecar) share their outbound clusters, load assignments and routes, which are made
once for the first of them; only what is bound to a proxy's own addresses, its inbound clusters and its
listeners, is made for each proxy. A second sidecar of a scope therefore costs a fraction of the first.

The generator keeps what it shared for the latest push only: it is meant to be given each push in turn, as a
control plane does. A sidecar scope's clusters and load assignments are kept one push longer: the next push
uses them when it kept the indexes they are made from (services, Sidecars, DestinationRules and
PeerAuthentications, which :meth:`~mesh_config.PushContext.rebuild` keeps unless their kinds changed), as a
VirtualService change does; the registry must then be unchanged too, as a rebuild that is not told of a registry
change assumes. With ``previous``, a set whose resources are those of the previous snapshot is that snapshot's set.
It is safe to use from several threads.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from typing import Final, final

import attrs
from google.protobuf.message import Message

from mesh_model import NodeType
from mesh_xds._text import describe, describe_names
from mesh_xds.errors import InconsistentSnapshotError, XdsError
from mesh_xds.generate._local_clusters import inbound_clusters
from mesh_xds.generate._sharing import Interner, ScopeCache, ScopeKey, scope_key
from mesh_xds.generate.cds import shared_cluster_resources
from mesh_xds.generate.context import GenerationContext
from mesh_xds.generate.eds import load_assignment_resources
from mesh_xds.generate.gateway_lds import build_gateway_listeners
from mesh_xds.generate.grpc import build_grpc_resources
from mesh_xds.generate.lds import build_listeners
from mesh_xds.generate.names import SDS_CLUSTER, XDS_CLUSTER
from mesh_xds.generate.rds import route_resources
from mesh_xds.resource import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    Resource,
    type_url_of,
)
from mesh_xds.secret import SecretProvider, secret_resource
from mesh_xds.snapshot import MissingReference, ResourceSet, Snapshot

__all__ = [
    "STATIC_CLUSTERS",
    "GeneratorStats",
    "ProxyGenerator",
    "UnsupportedProxyError",
    "grpc_listener_aliases",
    "proxy_kind",
]

_log = logging.getLogger("mesh_xds.generate")

STATIC_CLUSTERS: Final = ("agent", "prometheus_stats", SDS_CLUSTER, XDS_CLUSTER)
"""The clusters of Istio's bootstrap: resources may refer to them without a snapshot holding them."""

_SIDECAR: Final = "sidecar"
_ROUTER: Final = "router"
_GRPC: Final = "grpc"
_REFRESHABLE: Final = frozenset({ENDPOINT_TYPE, SECRET_TYPE})
_GRPC_TYPES: Final = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)
_TOLERATED: Final = frozenset({CLUSTER_TYPE, SECRET_TYPE})
"""Missing resources a proxy is served without: a route or TCP proxy to an unknown cluster fails only its own
requests (a VirtualService naming a host or subset nobody defines, as in Istio); a TLS context waits for its
secret. Missing route configurations or load assignments would stall whole listeners and clusters."""
_MAX_WARNED: Final = 10_000
_SVC: Final = ".svc."


class UnsupportedProxyError(XdsError, ValueError):
    """A proxy of a kind no generator serves (ambient waypoints and ztunnels)."""


def proxy_kind(ctx: GenerationContext) -> str:
    """Which builders serve the proxy of ``ctx``: ``grpc``, ``router`` or ``sidecar`` (ISTIO.md 2.1).

    ``GENERATOR=grpc`` metadata wins; other generator names fall back to the node type, as in istiod.

    Raises:
        UnsupportedProxyError: the proxy is a waypoint or a ztunnel.
    """
    if ctx.is_grpc:
        return _GRPC
    if ctx.proxy.type is NodeType.ROUTER:
        return _ROUTER
    if ctx.proxy.type is NodeType.SIDECAR:
        return _SIDECAR
    raise UnsupportedProxyError(
        f"proxy {describe(ctx.proxy.id)} is a {ctx.proxy.type.value}; only sidecars, gateways (router) "
        "and proxyless gRPC clients (GENERATOR=grpc) are served"
    )


def grpc_listener_aliases(ctx: GenerationContext) -> list[str]:
    """The short names a gRPC client of ``ctx`` may dial the services it sees by, with their ports.

    A client asks for the listener named exactly as its target: besides ``<FQDN>:<port>``, a Kubernetes
    service ``reviews.default.svc.cluster.local`` may be dialled as ``reviews.default.svc:<port>``,
    ``reviews.default:<port>``, and from its own namespace as ``reviews:<port>``.
    """
    out: list[str] = []
    for service in ctx.push.visible_services(ctx.workload):
        host = service.hostname.value
        at = host.find(_SVC)
        if service.hostname.is_wildcard or at < 0:
            continue
        name, _, namespace = host[:at].rpartition(".")
        if not name or not namespace:
            continue
        short = [f"{name}.{namespace}.svc", f"{name}.{namespace}"]
        if namespace == ctx.namespace:
            short.append(name)
        out.extend(f"{alias}:{port.number}" for alias in short for port in service.ports if not port.protocol.is_udp)
    return out


@final
@attrs.frozen
class GeneratorStats:
    """What a :class:`ProxyGenerator` shares, for debug pages and tests.

    Attributes:
        scopes: the proxy scopes whose shared parts are kept.
        hits: shared parts found already made.
        misses: shared parts that had to be made.
        interned: the distinct resources held by live snapshots.
    """

    scopes: int
    hits: int
    misses: int
    interned: int


@final
@attrs.frozen
class _Shared:
    """The parts of a scope made once: clusters (not inbound), the names of their load assignments."""

    clusters: tuple[Resource, ...]
    eds_names: tuple[str, ...]


def _by_type(messages: Iterable[Message]) -> dict[str, list[Message]]:
    """Messages grouped by type URL."""
    grouped: dict[str, list[Message]] = {}
    for message in messages:
        grouped.setdefault(type_url_of(message), []).append(message)
    return grouped


@final
class ProxyGenerator:
    """Generates proxies' snapshots from their :class:`~mesh_xds.generate.GenerationContext` (see the module).

    Args:
        static_clusters: clusters the proxies' bootstrap defines; resources may refer to them.
        secrets: where the secrets the proxies fetch over ADS come from (gateway ``credentialName``); without
            one, or while it lacks a secret, a listener that needs it waits for it (and a warning says so).
            Its ``get_secret`` is called on the thread that generates.
        max_scopes: how many proxy scopes to keep shared parts for.
    """

    def __init__(
        self,
        *,
        static_clusters: Iterable[str] = STATIC_CLUSTERS,
        secrets: SecretProvider | None = None,
        max_scopes: int = 1024,
    ) -> None:
        if isinstance(static_clusters, str):
            raise ValueError(f"static_clusters is a collection of names, not the string {describe(static_clusters)}")
        if secrets is not None and not isinstance(secrets, SecretProvider):
            raise ValueError(f"secrets must be a SecretProvider, not {describe(secrets)}")
        if isinstance(max_scopes, bool) or not isinstance(max_scopes, int) or max_scopes < 1:
            raise ValueError(f"max_scopes must be a positive integer, not {describe(max_scopes)}")
        self._static_clusters = frozenset(static_clusters)
        self._secrets = secrets
        self._scopes = ScopeCache(max_scopes)
        self._interner = Interner()
        self._warned: set[tuple[str, str]] = set()  # what was warned about, by (type URL, name)

    @property
    def static_clusters(self) -> frozenset[str]:
        """The bootstrap clusters resources may refer to."""
        return self._static_clusters

    @property
    def stats(self) -> GeneratorStats:
        """What is shared now."""
        scopes = self._scopes
        return GeneratorStats(len(scopes), scopes.hits, scopes.misses, len(self._interner))

    def clear(self) -> None:
        """Forget the shared parts (for instance after changing a registry without a new push telling so)."""
        self._scopes.clear()

    def generate(self, ctx: GenerationContext, previous: Snapshot | None = None) -> Snapshot:
        """The snapshot of the proxy of ``ctx``: its clusters, load assignments, listeners, routes and secrets.

        Args:
            ctx: the proxy, its push, registry, mesh and addresses.
            previous: the proxy's last snapshot; its resource sets are kept where the content is unchanged,
                so that a server sees at once that nothing changed.

        Raises:
            UnsupportedProxyError: no generator serves this kind of proxy.
            InconsistentSnapshotError: listeners or clusters wait for route configurations or load assignments
                that were not generated (listed in the error's ``missing``); the snapshot must not be served.
        """
        kind = proxy_kind(ctx)
        key = scope_key(ctx, kind)
        sets = self._grpc(ctx, key) if kind == _GRPC else self._envoy(ctx, key, kind, previous)
        sets.append(self._secret_set(ctx, sets))
        return self._checked(ctx, _reuse(previous, sets))

    def refresh(self, ctx: GenerationContext, previous: Snapshot, types: Collection[str]) -> Snapshot:
        """``previous`` with the load assignments and (or) the secrets made again; the other sets are kept.

        This is the incremental push: when only endpoints changed, only EDS is regenerated (and pushed).

        Args:
            ctx: the proxy and the new push.
            previous: the proxy's current snapshot.
            types: :data:`~mesh_xds.ENDPOINT_TYPE` and (or) :data:`~mesh_xds.SECRET_TYPE`.

        Raises:
            ValueError: ``types`` names another type.
            UnsupportedProxyError: no generator serves this kind of proxy.
        """
        wanted = set(types)
        other = wanted - _REFRESHABLE
        if other:
            raise ValueError(f"only load assignments and secrets can be refreshed, not {describe_names(other)}")
        sets: list[ResourceSet] = []
        if ENDPOINT_TYPE in wanted:
            kind = proxy_kind(ctx)
            key = scope_key(ctx, kind)
            if kind == _GRPC:  # gRPC weighs localities its own way: take its whole generation's assignments
                sets.extend(s for s in self._grpc(ctx, key) if s.type_url == ENDPOINT_TYPE)
            else:
                sets.append(self._endpoints(ctx, key, previous.resources(ENDPOINT_TYPE).names))
        if SECRET_TYPE in wanted:
            sets.append(self._secret_set(ctx, [previous.resources(url) for url in previous.type_urls]))
        return _reuse(previous, sets, base=previous)

    # ---------------------------------------------------------------- sidecars and gateways

    def _envoy(self, ctx: GenerationContext, key: ScopeKey, kind: str, previous: Snapshot | None) -> list[ResourceSet]:
        inputs = _cluster_inputs(ctx) if kind == _SIDECAR else None
        shared = self._scopes.part(ctx, key, "cds", lambda: self._shared_clusters(ctx), depends_on=inputs)
        endpoints = self._endpoints(ctx, key, shared.eds_names, inputs)
        routes = self._scopes.part(
            ctx, key, "rds", lambda: ResourceSet(ROUTE_TYPE, self._interner.intern_all(route_resources(ctx)))
        )
        if kind == _SIDECAR:
            inbound = self._interner.pack(inbound_clusters(ctx))
            clusters = _set_of(previous, CLUSTER_TYPE, [*shared.clusters, *inbound])
            listeners = _set_of(previous, LISTENER_TYPE, self._interner.pack(build_listeners(ctx)))
        else:
            clusters = self._scopes.part(ctx, key, "cds-set", lambda: ResourceSet(CLUSTER_TYPE, shared.clusters))
            listeners = self._set(LISTENER_TYPE, build_gateway_listeners(ctx))
        return [clusters, endpoints, listeners, routes]

    def _shared_clusters(self, ctx: GenerationContext) -> _Shared:
        # A sidecar's inbound clusters point at its own application address: they are not shared.
        clusters, eds_names = shared_cluster_resources(ctx)
        return _Shared(tuple(self._interner.intern_all(clusters)), tuple(eds_names))

    def _endpoints(
        self, ctx: GenerationContext, key: ScopeKey, names: Sequence[str], inputs: tuple[object, ...] | None = None
    ) -> ResourceSet:
        wanted = tuple(names)
        return self._scopes.part(
            ctx,
            key,
            ("eds", wanted),
            lambda: ResourceSet(ENDPOINT_TYPE, self._interner.intern_all(load_assignment_resources(ctx, wanted))),
            depends_on=inputs,
        )

    # ---------------------------------------------------------------- proxyless gRPC

    def _grpc(self, ctx: GenerationContext, key: ScopeKey) -> list[ResourceSet]:
        """A gRPC client's resources: all of them shared by its scope (nothing is bound to its address)."""

        def make() -> tuple[ResourceSet, ...]:
            grouped = _by_type(build_grpc_resources(ctx, grpc_listener_aliases(ctx)))
            return tuple(self._set(type_url, grouped.get(type_url, ())) for type_url in _GRPC_TYPES)

        return list(self._scopes.part(ctx, key, "grpc", make))

    # ---------------------------------------------------------------- secrets and checks

    def _secret_set(self, ctx: GenerationContext, sets: Iterable[ResourceSet]) -> ResourceSet:
        """The secrets the resources fetch over ADS that the provider has (a gateway's credentials)."""
        wanted = sorted(
            frozenset().union(
                *(_ads_secrets(resource_set) for resource_set in sets if resource_set.type_url != SECRET_TYPE)
            )
        )
        found = []
        if self._secrets is not None:
            for name in wanted:
                try:
                    secret = self._secrets.get_secret(name)
                    if secret is not None:
                        found.append(self._interner.intern(secret_resource(name, secret)))
                except Exception:
                    _log.exception("secret %s for %s could not be read", describe(name), describe(ctx.proxy.id))
        return ResourceSet(SECRET_TYPE, found)

    def _set(self, type_url: str, messages: Iterable[Message]) -> ResourceSet:
        return ResourceSet(type_url, self._interner.pack(messages))

    def _checked(self, ctx: GenerationContext, snapshot: Snapshot) -> Snapshot:
        missing = snapshot.missing(static_clusters=self._static_clusters)
        blocking = tuple(item for item in missing if item.type_url not in _TOLERATED)
        self._warn(ctx, [item for item in missing if item.type_url in _TOLERATED])
        if blocking:
            shown = "; ".join(str(item) for item in blocking[:10])
            more = f"; and {len(blocking) - 10} more" if len(blocking) > 10 else ""
            raise InconsistentSnapshotError(
                f"the config of {describe(ctx.proxy.id)} lacks {len(blocking)} resource(s): {shown}{more}", blocking
            )
        return snapshot

    def _warn(self, ctx: GenerationContext, missing: Sequence[MissingReference]) -> None:
        """Say once per name what proxies wait for (a secret) or cannot reach (a cluster no service makes)."""
        for item in missing:
            marker = (item.type_url, item.name)
            if marker in self._warned:
                continue
            if len(self._warned) >= _MAX_WARNED:
                self._warned.clear()
            self._warned.add(marker)
            if item.type_url == SECRET_TYPE:
                _log.warning("%s waits for a secret the control plane does not have: %s", ctx.proxy.id, item)
            else:
                _log.warning("%s: no service makes %s; requests sent there fail (503)", ctx.proxy.id, item)


def _set_of(previous: Snapshot | None, type_url: str, resources: Sequence[Resource]) -> ResourceSet:
    """A set of ``resources``: the previous snapshot's set of the type when it holds these very objects.

    Resources are interned (equal content, same object while a snapshot holds it), so a proxy whose clusters or
    listeners did not change gets its set back, with what was worked out from it (digest, references, encoded
    body) instead of working it out again.
    """
    if previous is not None:
        old = previous.resources(type_url)
        if len(old) == len(resources) and all(old.get(resource.name) is resource for resource in resources):
            return old
    return ResourceSet(type_url, resources)


def _ads_secrets(resource_set: ResourceSet) -> frozenset[str]:
    """The secrets the resources of a set fetch over ADS, worked out once per set (sets are shared)."""

    def find() -> frozenset[str]:
        references = resource_set.references
        return frozenset(ref.name for ref in references if ref.type_url == SECRET_TYPE and ref.via_ads)

    return resource_set._memo(("ads-secrets",), find)


def _cluster_inputs(ctx: GenerationContext) -> tuple[object, ...]:
    """What a sidecar's outbound clusters and load assignments are made from, besides the registry and the mesh.

    The services (whose index a push rebuilds when the registry changes), the Sidecars, DestinationRules and
    PeerAuthentications. A push that keeps these indexes (a VirtualService change, say) keeps the clusters and
    load assignments of the push before it, as Istio's CDS and EDS caches do.
    """
    push = ctx.push
    return (push.services, push.sidecars, push.destination_rules, push.peer_authentications)


def _reuse(previous: Snapshot | None, sets: Iterable[ResourceSet], *, base: Snapshot | None = None) -> Snapshot:
    """A snapshot of ``sets`` (over ``base``), keeping ``previous``'s sets whose content is the same.

    When every set is kept, ``previous`` itself is returned: nothing changed.
    """
    kept: list[ResourceSet] = []
    unchanged = previous is not None
    for resource_set in sets:
        old = previous.resources(resource_set.type_url) if previous is not None else None
        same = old is not None and len(old) == len(resource_set) and old.digest == resource_set.digest
        kept.append(old if same and old is not None else resource_set)
        unchanged = unchanged and same
    types = {resource_set.type_url for resource_set in kept}
    if previous is not None and unchanged and (base is not None or set(previous.type_urls) <= types):
        return previous
    if base is not None:
        return base.replace(*kept)
    return Snapshot(kept)
