"""What every generator reads: one proxy, the push it is served from, and where its listeners bind.

Without iptables, sidecars run in Istio's ``captureMode: NONE`` style on loopback, and a workload has three
addresses (docs/architecture.md): the one other sidecars reach (its endpoint address, where its inbound
listeners bind), the one its application listens on (the inbound clusters' endpoint, like a Sidecar
ingress ``defaultEndpoint``), and the one of its outbound listeners, which the application calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, final

import attrs

from mesh_config import MeshConfig, PushContext, default_mesh_config
from mesh_model import ConfigKey, NodeType, Proxy, ServiceRegistry

__all__ = ["GenerationContext", "SidecarAddresses", "config_path", "source_metadata"]

_GROUPS: Mapping[str, str] = {
    "VirtualService": "networking.istio.io/v1",
    "DestinationRule": "networking.istio.io/v1",
    "Gateway": "networking.istio.io/v1",
    "ServiceEntry": "networking.istio.io/v1",
    "WorkloadEntry": "networking.istio.io/v1",
    "WorkloadGroup": "networking.istio.io/v1",
    "Sidecar": "networking.istio.io/v1",
    "EnvoyFilter": "networking.istio.io/v1alpha3",
    "PeerAuthentication": "security.istio.io/v1",
    "AuthorizationPolicy": "security.istio.io/v1",
    "RequestAuthentication": "security.istio.io/v1",
}


@final
@attrs.frozen
class SidecarAddresses:
    """Where a sidecar's listeners bind, and where its application listens.

    Attributes:
        inbound: the address other proxies reach this workload on (its endpoint address).
        application: the address the application listens on (the inbound clusters' endpoint).
        outbound: the address of the outbound listeners that the application calls.
    """

    inbound: str
    application: str
    outbound: str


@final
@attrs.frozen
class _Workload:
    namespace: str
    labels: Mapping[str, str]


@final
@attrs.frozen
class GenerationContext:
    """The inputs of one proxy's generation.

    Attributes:
        proxy: the proxy, parsed from its node id and metadata.
        push: the config indexes of this push.
        registry: where services and their endpoints come from.
        mesh: the mesh-wide settings.
        addresses: where a sidecar's listeners bind; by default all three are the proxy's first address.
    """

    proxy: Proxy
    push: PushContext
    registry: ServiceRegistry
    mesh: MeshConfig = attrs.field(factory=default_mesh_config)
    addresses: SidecarAddresses | None = None

    @property
    def namespace(self) -> str:
        """The proxy's namespace (from its metadata, else from its DNS domain)."""
        return self.proxy.metadata.namespace or self.proxy.dns_domain.partition(".")[0]

    @property
    def labels(self) -> Mapping[str, str]:
        """The proxy's workload labels."""
        return self.proxy.metadata.labels

    @property
    def workload(self) -> _Workload:
        """The proxy as the indexes see a workload (namespace and labels)."""
        return _Workload(self.namespace, self.labels)

    @property
    def is_gateway(self) -> bool:
        """True for a router (gateway) proxy."""
        return self.proxy.type is NodeType.ROUTER

    @property
    def is_grpc(self) -> bool:
        """True for a proxyless gRPC client (node metadata ``GENERATOR=grpc``)."""
        return self.proxy.metadata.generator == "grpc"

    @property
    def sidecar_addresses(self) -> SidecarAddresses:
        """The addresses, with the proxy's first IP address for any not given."""
        if self.addresses is not None:
            return self.addresses
        first = self.proxy.ip_addresses[0] if self.proxy.ip_addresses else "127.0.0.1"
        return SidecarAddresses(inbound=first, application=first, outbound=first)


def config_path(key: ConfigKey) -> str:
    """Istio's path of a config object in resource metadata.

    For example ``/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews``.
    """
    group = _GROUPS.get(str(key.kind), "")
    kind = re.sub(r"(?<!^)(?=[A-Z])", "-", str(key.kind)).lower()
    prefix = f"/apis/{group}" if group else ""
    return f"{prefix}/namespaces/{key.namespace}/{kind}/{key.name}"


def source_metadata(sources: Iterable[ConfigKey]) -> dict[str, Any]:
    """The ``filter_metadata`` entry recording which config objects a resource came from, as Istio does.

    Istio writes ``{"istio": {"config": <path>}}``; when several objects fed a resource, ``config`` names the
    first and ``configs`` lists them all.
    """
    paths = sorted({config_path(key) for key in sources})
    if not paths:
        return {}
    entry: dict[str, Any] = {"config": paths[0]}
    if len(paths) > 1:
        entry["configs"] = paths
    return {"istio": entry}
