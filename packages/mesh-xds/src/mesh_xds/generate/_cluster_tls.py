"""Upstream TLS of outbound clusters: Istio mutual TLS, SIMPLE and MUTUAL origination, auto mTLS (ISTIO.md 2.8).

* ``ISTIO_MUTUAL`` (from a DestinationRule, or chosen by auto mTLS) presents the workload certificate (SDS
  ``default``) and checks the server against the mesh roots (SDS ``ROOTCA``) and the service accounts of the
  service, both from the bootstrap cluster ``sds-grpc``; the SNI is ``outbound_.<port>_.<subset>_.<host>``
  and the ALPN Istio's in-mesh protocols.
* Auto mTLS (no TLS in the DestinationRule, a mesh-internal service whose server side does not disable
  mTLS) puts that context behind ``transport_socket_matches``: endpoints whose metadata says
  ``tlsMode: istio`` get mTLS, the others plain text.
* ``SIMPLE`` and ``MUTUAL`` read certificates from files through SDS (``file-cert:``/``file-root:``
  names), or from a ``credentialName`` served by the control plane over ADS.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Final, final

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2, proxy_protocol_pb2
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import duration_pb2

from mesh_config.networking.traffic_policy import ClientTLSMode, ClientTLSSettings, ProxyProtocolVersion
from mesh_model import SPIFFE_SCHEME
from mesh_xds import _wire
from mesh_xds.generate import names
from mesh_xds.generate._tls_wire import SanContext
from mesh_xds.resource import Reference, references

__all__ = [
    "ALPN_H2",
    "ALPN_IN_MESH",
    "ALPN_IN_MESH_H2",
    "IstioMutualContexts",
    "apply_proxy_protocol",
    "apply_upstream_tls",
    "expand_trust_domains",
    "istio_mtls_sockets",
    "sds_secret_config",
]

_log = logging.getLogger("mesh_xds.generate")

ALPN_IN_MESH: Final = ("istio-peer-exchange", "istio")
"""ALPN of in-mesh mutual TLS (with Istio's metadata exchange)."""
ALPN_IN_MESH_H2: Final = ("istio-peer-exchange", "istio", "h2")
"""ALPN of in-mesh mutual TLS to an HTTP/2 cluster."""
ALPN_H2: Final = ("h2",)
"""ALPN of TLS origination to an HTTP/2 cluster."""

_TLS_SOCKET = "envoy.transport_sockets.tls"
_RAW_BUFFER_SOCKET = "envoy.transport_sockets.raw_buffer"
_PROXY_PROTOCOL_SOCKET = "envoy.transport_sockets.upstream_proxy_protocol"
_TLS_MODE_KEY = "tlsMode"
_UPSTREAM_TLS_CONTEXT: Final = "type.googleapis.com/" + tls_pb2.UpstreamTlsContext.DESCRIPTOR.full_name
_CONFIGMAP = "configmap://"


def _sds_source() -> Any:
    grpc = grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=names.SDS_CLUSTER)
    )
    return config_source_pb2.ConfigSource(
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=config_source_pb2.ApiConfigSource.GRPC,
            transport_api_version=config_source_pb2.V3,
            grpc_services=[grpc],
            set_node_on_first_message_only=True,
        ),
        initial_fetch_timeout=duration_pb2.Duration(),
        resource_api_version=config_source_pb2.V3,
    )


_SDS_SOURCE: Final = _sds_source()
"""The config source of every SDS secret from the workload's SDS server: built once, copied (never changed)."""


def sds_secret_config(name: str) -> Any:
    """An SDS secret fetched from the workload's SDS server through the bootstrap cluster ``sds-grpc``."""
    config = secret_pb2.SdsSecretConfig(name=name)
    config.sds_config.CopyFrom(_SDS_SOURCE)
    return config


def _credential_secret_config(name: str) -> Any:
    """An SDS secret of a ``credentialName``, served by the control plane over ADS."""
    source = config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )
    return secret_pb2.SdsSecretConfig(name=name, sds_config=source)


def expand_trust_domains(identities: Iterable[str], trust_domain: str, aliases: Sequence[str]) -> list[str]:
    """SPIFFE ids of the trust domain or its aliases, repeated in every one of them; sorted and unique."""
    domains = [trust_domain, *aliases] if aliases else []
    out = set()
    for identity in identities:
        out.add(identity)
        if not domains or not identity.startswith(SPIFFE_SCHEME):
            continue
        domain, slash, path = identity[len(SPIFFE_SCHEME) :].partition("/")
        if slash and domain in domains:
            out.update(f"{SPIFFE_SCHEME}{other}/{path}" for other in domains)
    return sorted(out)


def _san_type(name: str) -> Any:
    if name.startswith(SPIFFE_SCHEME) or "://" in name:
        return common_pb2.SubjectAltNameMatcher.URI
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return common_pb2.SubjectAltNameMatcher.EMAIL if "@" in name else common_pb2.SubjectAltNameMatcher.DNS
    return common_pb2.SubjectAltNameMatcher.IP_ADDRESS


def _san_matchers(context: Any, names_: Iterable[str]) -> None:
    """Exact SAN matchers, typed by the form of each name (SPIFFE ids are URIs); none accepts any name."""
    context.SetInParent()
    for name in names_:
        context.match_typed_subject_alt_names.add(
            san_type=_san_type(name), matcher=string_pb2.StringMatcher(exact=name)
        )


def _common_context(tls_defaults: Any) -> Any:
    params = common_pb2.TlsParameters(
        tls_minimum_protocol_version=common_pb2.TlsParameters.TLSv1_2,
        tls_maximum_protocol_version=common_pb2.TlsParameters.TLSv1_3,
    )
    if tls_defaults is not None:
        params.ecdh_curves.extend(tls_defaults.ecdh_curves)
        params.cipher_suites.extend(tls_defaults.cipher_suites)
    return tls_pb2.CommonTlsContext(tls_params=params)


def _istio_mutual_template(*, http2: bool) -> Any:
    """Istio mTLS to a cluster, but its SNI and SAN matchers."""
    common = _common_context(None)
    common.tls_certificate_sds_secret_configs.append(sds_secret_config(names.SDS_DEFAULT))
    common.alpn_protocols.extend(ALPN_IN_MESH_H2 if http2 else ALPN_IN_MESH)
    combined = common.combined_validation_context
    combined.default_validation_context.SetInParent()
    combined.validation_context_sds_secret_config.CopyFrom(sds_secret_config(names.SDS_ROOT))
    return tls_pb2.UpstreamTlsContext(common_tls_context=common)


# Built once and never changed: most of every cluster's Istio mTLS context is the same.
_ISTIO_MUTUAL: Final = {http2: SanContext(_istio_mutual_template(http2=http2), _san_type) for http2 in (False, True)}


@final
class IstioMutualContexts:
    """The Istio mTLS contexts of one proxy's clusters, whose common part the clusters of a service share.

    A context is its common TLS context (field 1), serialized once per SAN list and protocol, then its SNI
    (field 2). What a cluster's sockets refer to (the SDS secrets of the context's template: SANs and SNI refer
    to nothing) is worked out once per protocol and socket layout.
    """

    def __init__(self) -> None:
        self._common: dict[tuple[tuple[str, ...], bool], bytes] = {}
        self._references: dict[tuple[bool, bool], frozenset[Reference]] = {}

    def context(self, sni: str, sans: Sequence[str], *, http2: bool) -> bytes:
        """A serialized UpstreamTlsContext of Istio mTLS."""
        key = (tuple(sans), http2)
        common = self._common.get(key)
        if common is None:
            common = self._common[key] = _ISTIO_MUTUAL[http2].context(key[0])
        return common + _wire.text(2, sni)

    def references(self, sockets: tuple[bytes, bytes], *, http2: bool) -> frozenset[Reference]:
        """What a cluster's Istio mTLS sockets (see :func:`istio_mtls_sockets`) refer to: their secrets."""
        key = (http2, bool(sockets[1]))
        found = self._references.get(key)
        if found is None:
            found = self._references[key] = references(cluster_pb2.Cluster.FromString(b"".join(sockets)))
        return found


def _originate(
    tls: ClientTLSSettings, *, http2: bool, sans: Sequence[str], options: Any, tls_defaults: Any
) -> Any | None:
    """SIMPLE or MUTUAL origination, or None when it cannot be built (MUTUAL without a certificate)."""
    mutual = tls.mode is ClientTLSMode.MUTUAL
    context = tls_pb2.UpstreamTlsContext(common_tls_context=_common_context(tls_defaults), sni=tls.sni)
    common = context.common_tls_context
    skip_verify = bool(tls.insecure_skip_verify)
    if not tls.sni:
        options.upstream_http_protocol_options.auto_sni = True
        if not sans and not skip_verify:
            options.upstream_http_protocol_options.auto_san_validation = True
    if tls.credential_name:
        if mutual:
            common.tls_certificate_sds_secret_configs.append(
                _credential_secret_config(names.credential_secret(tls.credential_name))
            )
        combined = common.combined_validation_context
        _san_matchers(combined.default_validation_context, sans)
        combined.validation_context_sds_secret_config.CopyFrom(
            _credential_secret_config(names.credential_ca_secret(tls.credential_name))
        )
    else:
        if mutual:
            if not tls.client_certificate or not tls.private_key:
                return None
            secret = names.file_cert_secret(tls.client_certificate, tls.private_key)
            common.tls_certificate_sds_secret_configs.append(sds_secret_config(secret))
        if skip_verify:
            common.validation_context.SetInParent()
        else:
            combined = common.combined_validation_context
            _san_matchers(combined.default_validation_context, sans)
            if tls.ca_crl:
                combined.default_validation_context.crl.filename = tls.ca_crl
            root = names.file_root_secret(tls.ca_certificates or "system")
            combined.validation_context_sds_secret_config.CopyFrom(sds_secret_config(root))
    if http2:
        common.alpn_protocols.extend(ALPN_H2)
    return context


def _socket(name: str, config: Any) -> Any:
    socket = base_pb2.TransportSocket(name=name)
    socket.typed_config.Pack(config)
    return socket


def _raw_buffer() -> Any:
    socket = base_pb2.TransportSocket()
    socket.CopyFrom(_RAW_BUFFER)
    return socket


_RAW_BUFFER: Final = _socket(_RAW_BUFFER_SOCKET, raw_buffer_pb2.RawBuffer())
"""The raw buffer transport socket: built once and copied (never changed)."""


def _plain_text_match() -> bytes:
    cluster = cluster_pb2.Cluster()
    disabled = cluster.transport_socket_matches.add(name="tlsMode-disabled")
    disabled.match.SetInParent()
    disabled.transport_socket.CopyFrom(_RAW_BUFFER)
    data: bytes = cluster.SerializeToString(deterministic=True)
    return data


def _istio_match_head() -> bytes:
    match = cluster_pb2.Cluster.TransportSocketMatch(name="tlsMode-istio")
    match.match.fields[_TLS_MODE_KEY].string_value = "istio"
    data: bytes = match.SerializeToString(deterministic=True)
    return data


_PLAIN_TEXT_MATCH: Final = _plain_text_match()
"""Cluster.transport_socket_matches (43) of auto mTLS's plain text: ``tlsMode-disabled``, a raw buffer."""
_ISTIO_MATCH_HEAD: Final = _istio_match_head()
"""TransportSocketMatch ``tlsMode-istio``'s name (1) and match (2): its transport_socket (3) follows."""
_TLS_SOCKET_NAME: Final = _wire.text(1, _TLS_SOCKET)
"""TransportSocket.name (1) of TLS: its typed_config (3) follows."""
_UPSTREAM_TYPE_URL: Final = _wire.text(1, _UPSTREAM_TLS_CONTEXT)
"""Any.type_url (1) of an UpstreamTlsContext: its value (2) follows."""
_NO_SOCKETS: Final = (b"", b"")


def istio_mtls_sockets(
    cluster_type: int,
    *,
    tls: ClientTLSSettings | None,
    sni: str,
    service_accounts: Sequence[str],
    auto_mtls: bool,
    http2: bool,
    mesh: Any,
    made: IstioMutualContexts,
) -> tuple[bytes, bytes]:
    """The transport sockets of a cluster that does not originate TLS itself, as Istio sets them.

    That is a cluster whose TLS mode is unset (auto mTLS), ISTIO_MUTUAL or DISABLE (see :func:`apply_upstream_tls`).

    Returns:
        The serialized Cluster fields transport_socket (24) and transport_socket_matches (43), each possibly
        empty (both are without Istio mTLS).

    Raises:
        ValueError: ``tls`` originates TLS (SIMPLE or MUTUAL).
    """
    aliases = tuple(mesh.trust_domain_aliases)
    trust_domain = mesh.trust_domain or "cluster.local"
    if tls is None:
        if not auto_mtls:
            return _NO_SOCKETS
        sans = expand_trust_domains(service_accounts, trust_domain, aliases)
        context = made.context(sni, sans, http2=http2)
        detected = True
    elif tls.mode is ClientTLSMode.ISTIO_MUTUAL:
        sans = list(tls.subject_alt_names) or expand_trust_domains(service_accounts, trust_domain, aliases)
        context = made.context(tls.sni or sni, sans, http2=http2)
        detected = False
    elif tls.mode in (ClientTLSMode.SIMPLE, ClientTLSMode.MUTUAL):
        raise ValueError(f"{tls.mode} TLS is originated with the application's settings")
    else:
        return _NO_SOCKETS
    typed_config = _UPSTREAM_TYPE_URL + _wire.field(2, context)
    socket = _TLS_SOCKET_NAME + _wire.field(3, typed_config)
    if detected and cluster_type != cluster_pb2.Cluster.ORIGINAL_DST:
        istio = _ISTIO_MATCH_HEAD + _wire.field(3, socket)
        return b"", _wire.field(43, istio) + _PLAIN_TEXT_MATCH
    return _wire.field(24, socket), b""


def apply_upstream_tls(
    cluster: Any,
    options: Any,
    *,
    tls: ClientTLSSettings | None,
    sni: str,
    service_accounts: Sequence[str],
    auto_mtls: bool,
    http2: bool,
    sidecar: bool,
    selector_rule: bool,
    service_entry: bool,
    mesh: Any,
    made: IstioMutualContexts | None = None,
) -> None:
    """Set the cluster's transport socket (or auto-mTLS socket matches) as Istio does.

    Args:
        cluster: the Cluster to change.
        options: the cluster's HttpProtocolOptions (``auto_sni`` and ``auto_san_validation`` go there).
        tls: the DestinationRule's TLS settings for this cluster, if any.
        sni: Istio's mTLS SNI for the cluster.
        service_accounts: the identities the service's workloads may present.
        auto_mtls: auto mTLS applies when no TLS is set (mesh setting on, mesh-internal service, server side
            not DISABLE).
        http2: the cluster speaks HTTP/2 upstream.
        sidecar: the proxy is a sidecar (``credentialName`` then needs a rule with a workload selector).
        selector_rule: the DestinationRule has a workload selector.
        service_entry: the service comes from a ServiceEntry (its subjectAltNames verify SIMPLE/MUTUAL TLS).
        mesh: the MeshConfig (trust domain, aliases, TLS defaults).
        made: the Istio mTLS contexts made so far for the proxy, shared by its clusters (none by default).
    """
    if tls is None or tls.mode not in (ClientTLSMode.SIMPLE, ClientTLSMode.MUTUAL):
        sockets = istio_mtls_sockets(
            cluster.type,
            tls=tls,
            sni=sni,
            service_accounts=service_accounts,
            auto_mtls=auto_mtls,
            http2=http2,
            mesh=mesh,
            made=IstioMutualContexts() if made is None else made,
        )
        cluster.MergeFromString(b"".join(sockets))
        return
    privileged = tls.credential_name and not tls.credential_name.startswith(_CONFIGMAP)
    if privileged and sidecar and not selector_rule:
        _log.warning(
            "cluster %s: credentialName %r is ignored for sidecars unless the DestinationRule has a workloadSelector",
            cluster.name,
            tls.credential_name,
        )
        return
    sans = list(tls.subject_alt_names) or (list(service_accounts) if service_entry else [])
    originated = _originate(tls, http2=http2, sans=sans, options=options, tls_defaults=mesh.tls_defaults)
    if originated is None:
        _log.warning("cluster %s: MUTUAL TLS needs clientCertificate and privateKey; no TLS set", cluster.name)
        return
    cluster.transport_socket.CopyFrom(_socket(_TLS_SOCKET, originated))


def apply_proxy_protocol(cluster: Any, version: ProxyProtocolVersion) -> None:
    """Wrap the cluster's transport sockets (raw buffer when none) in a PROXY protocol header."""
    config_version = (
        proxy_protocol_pb2.ProxyProtocolConfig.V2
        if version is ProxyProtocolVersion.V2
        else proxy_protocol_pb2.ProxyProtocolConfig.V1
    )

    def wrap(inner: Any) -> Any:
        upstream = upstream_proxy_protocol_pb2.ProxyProtocolUpstreamTransport(
            config=proxy_protocol_pb2.ProxyProtocolConfig(version=config_version), transport_socket=inner
        )
        return _socket(_PROXY_PROTOCOL_SOCKET, upstream)

    if not cluster.HasField("transport_socket") and not cluster.transport_socket_matches:
        cluster.transport_socket.CopyFrom(wrap(_raw_buffer()))
        return
    if cluster.HasField("transport_socket"):
        cluster.transport_socket.CopyFrom(wrap(cluster.transport_socket))
    for match in cluster.transport_socket_matches:
        match.transport_socket.CopyFrom(wrap(match.transport_socket))
