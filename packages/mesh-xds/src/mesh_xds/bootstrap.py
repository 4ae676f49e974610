"""Bootstrap configs: what an Envoy or a proxyless gRPC client reads before it first talks to the control plane.

Envoy sidecars and gateways get a bootstrap shaped like Istio's (``envoy_bootstrap.json``): the node id
``<type>~<ip>~<name>.<namespace>~<namespace>.svc.cluster.local`` with Istio's node metadata, ADS (SotW or Delta)
for listeners and clusters through the static cluster ``xds-grpc``, the static cluster ``sds-grpc`` to a Unix
socket for workload certificates, the admin interface on loopback, a readiness listener (15021,
``/healthz/ready``) and a Prometheus listener (15090, ``/stats/prometheus``, routed to the admin interface
through the cluster ``prometheus_stats``). Every address is an option, so that each simulated workload can
have its own loopback address and keep the well-known ports.

Proxyless gRPC clients get the JSON that ``GRPC_XDS_BOOTSTRAP`` points at, as Istio's agent writes it.

Example::

    from mesh_xds.bootstrap import DiscoveryAddress, EnvoyBootstrapOptions, NodeIdentity, envoy_bootstrap

    node = NodeIdentity(ip="127.0.10.1", name="reviews-v1-0", namespace="default", labels={"app": "reviews"})
    options = EnvoyBootstrapOptions(
        node=node, discovery=DiscoveryAddress(host="127.0.0.1", port=15010), admin_address="127.0.10.1"
    )
    config = envoy_bootstrap(options)  # a dict ready for json.dump, or write_bootstrap(config, path)
"""

from __future__ import annotations

import enum
import ipaddress
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, final

import attrs

from mesh_model import InterceptionMode, Labels, Locality, NodeType, Proxy, Workload
from mesh_xds import _bootstrap_parts as parts
from mesh_xds._bootstrap_parts import (
    MAX_UNIX_PATH,
    InvalidBootstrapError,
    check_ip,
    check_json_map,
    check_path,
    check_port,
    check_seconds,
    check_text,
    describe,
    to_labels,
    to_locality,
    to_tuple,
)

__all__ = [
    "ADMIN_PORT",
    "DEFAULT_ISTIO_VERSION",
    "GRPC_SERVER_LISTENER_TEMPLATE",
    "PROMETHEUS_CLUSTER",
    "PROMETHEUS_PORT",
    "READINESS_LISTENER",
    "READINESS_PORT",
    "SDS_CLUSTER",
    "STATS_LISTENER",
    "XDS_CLUSTER",
    "ApiType",
    "DiscoveryAddress",
    "EnvoyBootstrapOptions",
    "GrpcBootstrapOptions",
    "InvalidBootstrapError",
    "NodeIdentity",
    "TlsFiles",
    "envoy_bootstrap",
    "grpc_bootstrap",
    "write_bootstrap",
]

ADMIN_PORT = 15000
"""Envoy's admin port in Istio (``proxyAdminPort``)."""
READINESS_PORT = 15021
"""Istio's readiness port (``ENVOY_STATUS_PORT``), answering ``/healthz/ready``."""
PROMETHEUS_PORT = 15090
"""Istio's Prometheus port (``ENVOY_PROMETHEUS_PORT``), answering ``/stats/prometheus``."""
XDS_CLUSTER = "xds-grpc"
"""The static cluster that reaches the control plane."""
SDS_CLUSTER = "sds-grpc"
"""The static cluster that reaches the workload's SDS server; SDS configs in generated resources name it."""
PROMETHEUS_CLUSTER = "prometheus_stats"
"""The static cluster that reaches Envoy's own admin interface for ``/stats/prometheus``."""
READINESS_LISTENER = "readiness"
"""The name of the static readiness listener."""
STATS_LISTENER = "prometheus"
"""The name of the static Prometheus listener."""
GRPC_SERVER_LISTENER_TEMPLATE = "xds.istio.io/grpc/lds/inbound/%s"
"""Istio's name template for the listener of a proxyless gRPC server (``%s`` is its ``ip:port``)."""
DEFAULT_ISTIO_VERSION = "1.32.0"
"""The ``ISTIO_VERSION`` a bootstrap claims unless told otherwise: the Istio release mesh follows."""

_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


class ApiType(enum.Enum):
    """The ADS protocol Envoy speaks to the control plane (``ads_config.api_type``)."""

    GRPC = "GRPC"
    """State of the world: every response carries the whole set of a type."""
    DELTA_GRPC = "DELTA_GRPC"
    """Incremental (Delta) xDS, Istio's default since 1.22."""


@final
@attrs.frozen(kw_only=True)
class NodeIdentity:
    """Who the proxy or gRPC client is: its node id and Istio node metadata.

    The node id is ``<type>~<ip>~<name>.<namespace>~<dns_domain>``; :meth:`mesh_model.Proxy.parse` reads back
    what this class writes.

    Attributes:
        ip: the workload's address: the node id's IP and the first of ``INSTANCE_IPS``.
        name: the workload instance (pod) name, ``NAME`` in the metadata.
        namespace: ``NAMESPACE``, a DNS-1123 label.
        labels: ``LABELS``, the workload's labels.
        service_account: ``SERVICE_ACCOUNT``.
        cluster_id: ``CLUSTER_ID`` (Istio's default cluster is ``Kubernetes``).
        mesh_id: ``MESH_ID``.
        network: ``NETWORK``, left out when empty.
        workload_name: ``WORKLOAD_NAME`` (the deployment), left out when empty.
        interception_mode: ``INTERCEPTION_MODE``; ``NONE`` for mesh's loopback style without iptables.
        istio_version: ``ISTIO_VERSION``.
        locality: the node's locality, as a Locality or a ``region/zone/subzone`` string.
        extra_ips: more addresses for ``INSTANCE_IPS``.
        dns_domain: the fourth part of the node id; ``<namespace>.svc.cluster.local`` by default.
        extra_metadata: more metadata fields (JSON values); they override the fields above.
    """

    ip: str
    name: str
    namespace: str = "default"
    labels: Labels = attrs.field(factory=Labels, converter=to_labels)
    service_account: str = "default"
    cluster_id: str = "Kubernetes"
    mesh_id: str = "cluster.local"
    network: str = ""
    workload_name: str = ""
    interception_mode: InterceptionMode = InterceptionMode.NONE
    istio_version: str = DEFAULT_ISTIO_VERSION
    locality: Locality = attrs.field(factory=Locality, converter=to_locality)
    extra_ips: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    dns_domain: str = attrs.field(
        default=attrs.Factory(lambda self: f"{self.namespace}.svc.cluster.local", takes_self=True)
    )
    extra_metadata: Mapping[str, object] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        check_ip("node ip", self.ip)
        for extra in self.extra_ips:
            check_ip("node extra_ips entry", extra)
        check_text("node name", self.name, forbidden="~")
        check_text("node namespace", self.namespace)
        if not _NAMESPACE.match(self.namespace):
            raise InvalidBootstrapError(
                f"node namespace {describe(self.namespace)} must be at most 63 lower-case letters, digits or '-'"
            )
        for what in ("service_account", "cluster_id", "mesh_id", "network", "workload_name", "istio_version"):
            check_text(f"node {what}", getattr(self, what), allow_empty=what != "istio_version")
        check_text("node dns_domain", self.dns_domain, forbidden="~")
        if not isinstance(self.interception_mode, InterceptionMode):
            mode = describe(self.interception_mode)
            raise InvalidBootstrapError(f"node interception_mode {mode} is not an InterceptionMode")
        check_json_map("node extra_metadata", self.extra_metadata)

    @classmethod
    def from_proxy(cls, proxy: Proxy, **changes: Any) -> NodeIdentity:
        """The identity of a parsed :class:`mesh_model.Proxy` (with ``changes`` applied to the fields).

        The name is the node id's third part up to its first dot; the proxy's type is chosen by the options.
        """
        metadata = proxy.metadata
        name, _, _ = proxy.id.partition(".")
        version = ".".join(map(str, metadata.istio_version)) if metadata.istio_version else DEFAULT_ISTIO_VERSION
        fields: dict[str, Any] = {
            "ip": proxy.ip_addresses[0],
            "extra_ips": proxy.ip_addresses[1:],
            "name": name,
            "namespace": proxy.namespace or "default",
            "labels": metadata.labels,
            "service_account": metadata.service_account or "default",
            "cluster_id": metadata.cluster_id or "Kubernetes",
            "mesh_id": metadata.mesh_id or "cluster.local",
            "network": metadata.network,
            "workload_name": metadata.workload_name,
            "interception_mode": metadata.interception_mode,
            "istio_version": version,
            "locality": proxy.locality,
            "dns_domain": proxy.dns_domain,
        }
        return cls(**{**fields, **changes})

    @classmethod
    def from_workload(cls, workload: Workload, **changes: Any) -> NodeIdentity:
        """The identity of a :class:`mesh_model.Workload` on its first address (with ``changes`` applied).

        Raises:
            InvalidBootstrapError: the workload has no address, or its first address is not an IP.
        """
        if not workload.addresses:
            raise InvalidBootstrapError(f"workload {workload.key} has no address for a node id")
        fields: dict[str, Any] = {
            "ip": workload.addresses[0],
            "name": workload.name,
            "namespace": workload.namespace,
            "labels": workload.labels,
            "service_account": workload.service_account or "default",
            "cluster_id": workload.cluster_id or "Kubernetes",
            "network": workload.network,
            "locality": workload.locality,
        }
        return cls(**{**fields, **changes})

    def node_id(self, node_type: NodeType = NodeType.SIDECAR) -> str:
        """The node id ``<type>~<ip>~<name>.<namespace>~<dns_domain>``."""
        return f"{node_type.value}~{self.ip}~{self.name}.{self.namespace}~{self.dns_domain}"

    def metadata(self) -> dict[str, Any]:
        """The node metadata with Istio's keys, as JSON values."""
        ips = list(dict.fromkeys((self.ip, *self.extra_ips)))
        fields: dict[str, Any] = {
            "NAME": self.name,
            "NAMESPACE": self.namespace,
            "LABELS": dict(self.labels),
            "SERVICE_ACCOUNT": self.service_account,
            "CLUSTER_ID": self.cluster_id,
            "MESH_ID": self.mesh_id,
            "ISTIO_VERSION": self.istio_version,
            "INTERCEPTION_MODE": self.interception_mode.value,
            "INSTANCE_IPS": ",".join(ips),
        }
        if self.network:
            fields["NETWORK"] = self.network
        if self.workload_name:
            fields["WORKLOAD_NAME"] = self.workload_name
        fields.update(self.extra_metadata)
        return fields

    @property
    def locality_json(self) -> dict[str, str]:
        """The locality as Envoy's ``node.locality`` (empty levels left out)."""
        levels = {"region": self.locality.region, "zone": self.locality.zone, "sub_zone": self.locality.subzone}
        return {key: value for key, value in levels.items() if value}

    @property
    def service_cluster(self) -> str:
        """Envoy's ``node.cluster``, as Istio sets it: ``<app label or workload name>.<namespace>``."""
        app = self.labels.get("app") or self.labels.get("app.kubernetes.io/name") or self.workload_name
        return f"{app or self.name}.{self.namespace}"


@final
@attrs.frozen(kw_only=True)
class TlsFiles:
    """Files for TLS to the control plane (PEM); without a certificate and key, TLS is not mutual.

    Attributes:
        ca_certificate: the roots that sign the control plane's certificate.
        certificate_chain: the client certificate chain, for mutual TLS.
        private_key: the client private key, for mutual TLS.
        server_name: SNI and the name to expect (Envoy only); empty for none.
    """

    ca_certificate: str | os.PathLike[str]
    certificate_chain: str | os.PathLike[str] | None = None
    private_key: str | os.PathLike[str] | None = None
    server_name: str = ""

    def __attrs_post_init__(self) -> None:
        check_path("TLS ca_certificate", self.ca_certificate)
        if (self.certificate_chain is None) != (self.private_key is None):
            raise InvalidBootstrapError("TLS certificate_chain and private_key go together: give both or neither")
        if self.certificate_chain is not None:
            check_path("TLS certificate_chain", self.certificate_chain)
            check_path("TLS private_key", self.private_key)
        check_text("TLS server_name", self.server_name, allow_empty=True, forbidden=" /")


@final
@attrs.frozen(kw_only=True)
class DiscoveryAddress:
    """Where the control plane's ADS server listens (Istio's ``discoveryAddress``).

    Attributes:
        host: an IP address or a DNS name (Envoy resolves a name with STRICT_DNS, IPv4 first).
        port: its port.
        tls: TLS files, or ``None`` for plaintext (h2c).
    """

    host: str = "127.0.0.1"
    port: int = 15010
    tls: TlsFiles | None = None

    def __attrs_post_init__(self) -> None:
        check_text("discovery host", self.host, forbidden=" /[]")
        check_port("discovery port", self.port)
        if self.tls is not None and not isinstance(self.tls, TlsFiles):
            raise InvalidBootstrapError(f"discovery tls {describe(self.tls)} is not a TlsFiles")

    @property
    def is_ip(self) -> bool:
        """True when the host is an IP address rather than a name."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def target(self) -> str:
        """``host:port`` (IPv6 in brackets), as gRPC dials it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@final
@attrs.frozen(kw_only=True)
class EnvoyBootstrapOptions:
    """What an Envoy sidecar or gateway bootstrap contains.

    Attributes:
        node: who the proxy is.
        discovery: the control plane's ADS address.
        node_type: ``SIDECAR`` or ``ROUTER`` (a gateway).
        api_type: SotW (``GRPC``) or Delta (``DELTA_GRPC``, Istio's default) ADS.
        sds_socket: the Unix socket of the workload's SDS server (cluster ``sds-grpc``); ``None`` leaves the
            cluster out, and secrets must then come over ADS.
        admin_address: the admin interface's address; loopback only, since the admin API can stop Envoy.
        admin_port: the admin port; 0 picks a free one (only without the Prometheus listener, which routes
            to the admin port).
        status_address: where the readiness and Prometheus listeners bind; ``None`` means ``admin_address``.
        readiness_port: the readiness listener's port (``/healthz/ready``); ``None`` leaves it out, 0 picks one.
        stats_port: the Prometheus listener's port (``/stats/prometheus``); ``None`` leaves it out.
        initial_fetch_timeout: seconds Envoy waits for its first clusters and listeners before it turns
            ready without them; 0 (Istio's choice) waits for the control plane for ever.
        stats_flush_interval: seconds between stats flushes; ``None`` keeps Envoy's 5 s.
        runtime: a static runtime layer (``layered_runtime``); an admin layer is always there.
        max_downstream_connections: the overload manager's limit on downstream connections.
    """

    node: NodeIdentity
    discovery: DiscoveryAddress = attrs.field(factory=DiscoveryAddress)
    node_type: NodeType = NodeType.SIDECAR
    api_type: ApiType = ApiType.DELTA_GRPC
    sds_socket: str | os.PathLike[str] | None = None
    admin_address: str = "127.0.0.1"
    admin_port: int = ADMIN_PORT
    status_address: str | None = None
    readiness_port: int | None = READINESS_PORT
    stats_port: int | None = PROMETHEUS_PORT
    initial_fetch_timeout: float = 0.0
    stats_flush_interval: float | None = None
    runtime: Mapping[str, object] = attrs.field(factory=dict)
    max_downstream_connections: int = 2**31 - 1

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.node, NodeIdentity):
            raise InvalidBootstrapError(f"node {describe(self.node)} is not a NodeIdentity")
        if not isinstance(self.discovery, DiscoveryAddress):
            raise InvalidBootstrapError(f"discovery {describe(self.discovery)} is not a DiscoveryAddress")
        if self.node_type not in (NodeType.SIDECAR, NodeType.ROUTER):
            raise InvalidBootstrapError(f"node_type {describe(self.node_type)} is not SIDECAR or ROUTER")
        if not isinstance(self.api_type, ApiType):
            raise InvalidBootstrapError(f"api_type {describe(self.api_type)} is not an ApiType")
        if self.sds_socket is not None:
            check_path("sds_socket", self.sds_socket, max_bytes=MAX_UNIX_PATH)
        check_ip("admin_address", self.admin_address, loopback=True)
        check_port("admin_port", self.admin_port, allow_zero=True)
        if self.status_address is not None:
            check_ip("status_address", self.status_address)
        for what in ("readiness_port", "stats_port"):
            if getattr(self, what) is not None:
                check_port(what, getattr(self, what), allow_zero=True)
        if self.stats_port is not None and self.admin_port == 0:
            raise InvalidBootstrapError("admin_port 0 cannot be combined with stats_port: it routes to the admin port")
        self._check_port_clashes()
        check_seconds("initial_fetch_timeout", self.initial_fetch_timeout, allow_zero=True)
        if self.stats_flush_interval is not None:
            check_seconds("stats_flush_interval", self.stats_flush_interval, allow_zero=False)
        check_json_map("runtime", self.runtime)
        limit = self.max_downstream_connections
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidBootstrapError(f"max_downstream_connections {describe(limit)} is not a positive integer")

    def _check_port_clashes(self) -> None:
        status = self.status_address or self.admin_address
        bound = [
            ("admin_port", self.admin_address, self.admin_port),
            ("readiness_port", status, self.readiness_port),
            ("stats_port", status, self.stats_port),
        ]
        for index, (what, address, port) in enumerate(bound):
            for other, other_address, other_port in bound[:index]:
                pair = (address, other_address)
                overlap = address == other_address or "0.0.0.0" in pair or "::" in pair
                if port and port == other_port and overlap:
                    raise InvalidBootstrapError(f"{what} {port} on {address} clashes with {other} on {other_address}")

    @property
    def listener_address(self) -> str:
        """The address the readiness and Prometheus listeners bind."""
        return self.status_address or self.admin_address


@final
@attrs.frozen(kw_only=True)
class GrpcBootstrapOptions:
    """What a proxyless gRPC client's xDS bootstrap contains (``GRPC_XDS_BOOTSTRAP``).

    Attributes:
        node: who the client is; its metadata gets ``GENERATOR=grpc``.
        discovery: the control plane's ADS address (gRPC speaks SotW ADS only); with TLS files, the channel
            credentials are ``tls`` (gRFC A65), else ``insecure``.
        certificate_dir: a directory with ``cert-chain.pem``, ``key.pem`` and ``root-cert.pem`` for the
            ``file_watcher`` certificate provider named ``default`` (xDS mTLS), as Istio's agent writes it.
        server_features: the ``server_features`` of the xDS server entry.
        server_listener_template: the name template of the listener a gRPC xDS server asks for.
    """

    node: NodeIdentity
    discovery: DiscoveryAddress = attrs.field(factory=DiscoveryAddress)
    certificate_dir: str | os.PathLike[str] | None = None
    server_features: tuple[str, ...] = attrs.field(default=("xds_v3",), converter=to_tuple)
    server_listener_template: str = GRPC_SERVER_LISTENER_TEMPLATE

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.node, NodeIdentity):
            raise InvalidBootstrapError(f"node {describe(self.node)} is not a NodeIdentity")
        if not isinstance(self.discovery, DiscoveryAddress):
            raise InvalidBootstrapError(f"discovery {describe(self.discovery)} is not a DiscoveryAddress")
        if self.discovery.tls is not None and self.discovery.tls.server_name:
            raise InvalidBootstrapError(
                f"discovery tls server_name {describe(self.discovery.tls.server_name)}: gRPC's bootstrap has no "
                "place for it; the server's certificate must match the host"
            )
        if self.certificate_dir is not None:
            check_path("certificate_dir", self.certificate_dir)
        for feature in self.server_features:
            check_text("server feature", feature)
        check_text("server_listener_template", self.server_listener_template)


def envoy_bootstrap(options: EnvoyBootstrapOptions) -> dict[str, Any]:
    """Build the bootstrap of an Envoy sidecar or gateway, as a dict ready for ``json.dump``.

    Raises:
        InvalidBootstrapError: ``options`` is not an EnvoyBootstrapOptions.
    """
    if not isinstance(options, EnvoyBootstrapOptions):
        raise InvalidBootstrapError(f"options {describe(options)} is not an EnvoyBootstrapOptions")
    node, discovery = options.node, options.discovery
    metadata = node.metadata()
    if options.readiness_port:
        metadata.setdefault("ENVOY_STATUS_PORT", options.readiness_port)
    if options.stats_port:
        metadata.setdefault("ENVOY_PROMETHEUS_PORT", options.stats_port)
    envoy_node = {"id": node.node_id(options.node_type), "cluster": node.service_cluster, "metadata": metadata}
    if node.locality_json:
        envoy_node["locality"] = node.locality_json
    transport = None
    if (tls := discovery.tls) is not None:
        chain = None if tls.certificate_chain is None else os.fspath(tls.certificate_chain)
        key = None if tls.private_key is None else os.fspath(tls.private_key)
        transport = parts.tls_socket(os.fspath(tls.ca_certificate), chain, key, tls.server_name)
    clusters = [
        parts.xds_cluster(XDS_CLUSTER, discovery.host, discovery.port, is_ip=discovery.is_ip, transport=transport)
    ]
    if options.sds_socket is not None:
        pipe = {"pipe": {"path": os.fspath(options.sds_socket)}}
        clusters.append(parts.static_cluster(SDS_CLUSTER, pipe, http2=True, connect_timeout="1s"))
    listeners = []
    if options.stats_port is not None:
        admin = parts.socket_address(options.admin_address, options.admin_port)
        clusters.append(parts.static_cluster(PROMETHEUS_CLUSTER, admin, http2=False, connect_timeout="0.250s"))
        listeners.append(
            parts.stats_listener(STATS_LISTENER, options.listener_address, options.stats_port, PROMETHEUS_CLUSTER)
        )
    if options.readiness_port is not None:
        listeners.append(parts.readiness_listener(READINESS_LISTENER, options.listener_address, options.readiness_port))
    layers: list[dict[str, Any]] = []
    if options.runtime:
        layers.append({"name": "global config", "static_layer": dict(options.runtime)})
    layers.append({"name": "admin", "admin_layer": {}})
    subscription = {"ads": {}, "initial_fetch_timeout": parts.duration(options.initial_fetch_timeout)}
    config: dict[str, Any] = {
        "node": envoy_node,
        "admin": parts.admin(options.admin_address, options.admin_port),
        "layered_runtime": {"layers": layers},
        "dynamic_resources": {
            "lds_config": {**subscription, "resource_api_version": "V3"},
            "cds_config": {**subscription, "resource_api_version": "V3"},
            "ads_config": {
                "api_type": options.api_type.value,
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
            },
        },
        "static_resources": {"clusters": clusters, "listeners": listeners},
        "stats_config": parts.stats_config(),
        "overload_manager": parts.overload_manager(options.max_downstream_connections),
    }
    if options.stats_flush_interval is not None:
        config["stats_flush_interval"] = parts.duration(options.stats_flush_interval)
    return config


def grpc_bootstrap(options: GrpcBootstrapOptions) -> dict[str, Any]:
    """Build the xDS bootstrap of a proxyless gRPC client, as a dict ready for ``json.dump``.

    Raises:
        InvalidBootstrapError: ``options`` is not a GrpcBootstrapOptions.
    """
    if not isinstance(options, GrpcBootstrapOptions):
        raise InvalidBootstrapError(f"options {describe(options)} is not a GrpcBootstrapOptions")
    tls = options.discovery.tls
    if tls is None:
        credentials: dict[str, Any] = {"type": "insecure"}
    else:
        files = {"ca_certificate_file": os.fspath(tls.ca_certificate)}
        if tls.certificate_chain is not None and tls.private_key is not None:
            files["certificate_file"] = os.fspath(tls.certificate_chain)
            files["private_key_file"] = os.fspath(tls.private_key)
        credentials = {"type": "tls", "config": files}
    node = options.node
    metadata = {**node.metadata(), "GENERATOR": "grpc"}
    grpc_node: dict[str, Any] = {"id": node.node_id(NodeType.SIDECAR), "metadata": metadata}
    if node.locality_json:
        grpc_node["locality"] = node.locality_json
    config: dict[str, Any] = {
        "xds_servers": [
            {
                "server_uri": options.discovery.target,
                "channel_creds": [credentials],
                "server_features": list(options.server_features),
            }
        ],
        "node": grpc_node,
        "server_listener_resource_name_template": options.server_listener_template,
    }
    if options.certificate_dir is not None:
        directory = Path(options.certificate_dir)
        config["certificate_providers"] = {
            "default": {
                "plugin_name": "file_watcher",
                "config": {
                    "certificate_file": str(directory / "cert-chain.pem"),
                    "private_key_file": str(directory / "key.pem"),
                    "ca_certificate_file": str(directory / "root-cert.pem"),
                    "refresh_interval": "900s",
                },
            }
        }
    return config


def write_bootstrap(config: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a bootstrap as JSON, atomically (a reader never sees half a file), and return its path.

    Raises:
        InvalidBootstrapError: ``config`` is not a JSON object, or ``path`` is not a usable path.
        OSError: the file cannot be written.
    """
    check_path("bootstrap path", path)
    if not isinstance(config, Mapping):
        raise InvalidBootstrapError(f"bootstrap {describe(config)} is not a JSON object")
    try:
        text = json.dumps(config, indent=2) + "\n"
    except (TypeError, ValueError) as error:
        raise InvalidBootstrapError(f"bootstrap is not JSON: {error}") from None
    target = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
