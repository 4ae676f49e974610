"""Istio's ``ValidateMeshConfig`` (``pkg/config/validation/agent``), for a MeshConfig with defaults applied (private).

Extension provider problems are warnings: istiod only logs them ("can be ignored if the given extension
provider is not used").
"""

from __future__ import annotations

import ipaddress
import re

from mesh_config._mesh_messages import MeshConfig
from mesh_config._mesh_providers import ExtensionProvider, ProviderKind
from mesh_config._mesh_proxy import AuthenticationPolicy, MeshProxyConfig, PrivateKeyProvider
from mesh_config.networking.load_balancer import validate_locality_lb_setting
from mesh_config.networking.traffic_policy import validate_client_tls
from mesh_config.rules import check_duration, check_port, check_wildcard_domain, is_dns_label
from mesh_config.types import Duration
from mesh_config.validation import ValidationContext

__all__ = ["VALID_ECDH_CURVES", "proxy_address_problem", "trust_domain_problem", "validate_mesh_config"]

VALID_ECDH_CURVES = frozenset({"P-224", "P-256", "P-384", "P-521", "X25519", "X25519Kyber768Draft00", "X25519MLKEM768"})
"""The ECDH curves Istio accepts in ``tlsDefaults.ecdhCurves`` (``pkg/config/security``)."""

# Istio's IsDNS1123Label accepts upper case; a Kubernetes namespace does not.
_LABEL = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?\Z")
_WILDCARD_LABEL = re.compile(r"(\*|(\*-?)?[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)\Z")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_HOUR = 3600 * 10**9
_STATUS_CODES = frozenset(
    {0, 100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308}
    | {400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422}
    | {423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511}
)


def validate_mesh_config(config: MeshConfig, ctx: ValidationContext, *, written: MeshConfig | None = None) -> None:
    """The rules of Istio's ``ValidateMeshConfig``, and a DNS-label check of ``rootNamespace``.

    Args:
        config: the mesh config to check, with defaults applied.
        ctx: the context, at the root of the mesh config.
        written: the mesh config as written, before defaults; when given, ``trustDomainAliases`` and
            ``extensionProviders`` (which the defaults reorder) are checked as written, so that paths
            point into the source.
    """
    source = written or config
    check_port(ctx, config.proxy_listen_port, "proxyListenPort")
    for field, port in (
        ("proxyInboundListenPort", config.proxy_inbound_listen_port),
        ("proxyHttpPort", config.proxy_http_port),
    ):
        if port:
            check_port(ctx, port, field)
    _check_connect_timeout(config.connect_timeout, ctx)
    timeout = config.protocol_detection_timeout
    if timeout is not None and timeout.nanos % 1_000_000:
        ctx.error(f"duration {timeout} must be a whole number of milliseconds (or 0s)", "protocolDetectionTimeout")
    if config.default_config is None:
        ctx.error("missing default config", "defaultConfig")
    else:
        _check_proxy_config(config.default_config, ctx.at("defaultConfig"))
    validate_locality_lb_setting(config.locality_lb_setting, ctx.at("localityLbSetting"), has_outlier=True)
    for index, settings in enumerate(config.service_settings):
        for host_index, host in enumerate(settings.hosts):
            check_wildcard_domain(ctx, host, "serviceSettings", index, "hosts", host_index)
    problem = trust_domain_problem(config.trust_domain)
    if problem:
        ctx.error(problem, "trustDomain")
    for index, alias in enumerate(source.trust_domain_aliases):
        problem = trust_domain_problem(alias)
        if problem:
            ctx.error(problem, "trustDomainAliases", index)
    root = config.root_namespace
    if root and (len(root) > 63 or not _NAMESPACE.match(root)):
        ctx.error(f"rootNamespace {config.root_namespace!r} must be a lower-case DNS label", "rootNamespace")
    _check_providers(source.extension_providers, ctx)
    if config.mesh_mtls is not None and config.mesh_mtls.ecdh_curves:
        ctx.error("mesh TLS does not support ECDH curves configuration", "meshMTLS", "ecdhCurves")
    if config.tls_defaults is not None:
        _check_curves(config.tls_defaults.ecdh_curves, ctx.at("tlsDefaults", "ecdhCurves"))


def _check_connect_timeout(timeout: Duration | None, ctx: ValidationContext) -> None:
    if timeout is None:
        ctx.error("duration must be at least 1ms", "connectTimeout")
        return
    marker = len(ctx.findings)
    check_duration(ctx, timeout, "connectTimeout")
    if len(ctx.findings) == marker and timeout.nanos > _HOUR:
        ctx.error(f"connect timeout {timeout} must be between 1ms and 1h", "connectTimeout")


def _check_proxy_config(proxy: MeshProxyConfig, ctx: ValidationContext) -> None:
    if not proxy.config_path:
        ctx.error("config path must be set", "configPath")
    if not proxy.binary_path:
        ctx.error("binary path must be set", "binaryPath")
    if not proxy.service_cluster and not ctx.has("tracingServiceName"):
        ctx.error("service cluster must be specified (serviceCluster or tracingServiceName)", "serviceCluster")
    drain = proxy.drain_duration
    if drain is None or drain.nanos < 1_000_000 or drain.nanos % 1_000_000:
        check_duration(ctx, drain or Duration(0), "drainDuration")
    elif drain.nanos % 10**9:
        ctx.error(f"drain time {drain} only supports durations to seconds precision", "drainDuration")
    if not proxy.discovery_address:
        ctx.error("discovery address must be set to the proxy discovery service", "discoveryAddress")
    else:
        _check_address(proxy.discovery_address, ctx, "discoveryAddress")
    _check_tracing(proxy, ctx)
    for field, address in (
        ("statsdUdpAddress", proxy.statsd_udp_address),
        ("envoyMetricsServiceAddress", proxy.envoy_metrics_service_address),
    ):
        if address:
            _check_address(address, ctx, field)
    if proxy.envoy_metrics_service_address:
        ctx.warning("envoyMetricsServiceAddress is deprecated; use envoyMetricsService", "envoyMetricsServiceAddress")
    for field, service in (
        ("envoyMetricsService", proxy.envoy_metrics_service),
        ("envoyAccessLogService", proxy.envoy_access_log_service),
    ):
        if service is not None and service.address:
            _check_address(service.address, ctx, field, "address")
    check_port(ctx, proxy.proxy_admin_port, "proxyAdminPort")
    check_port(ctx, proxy.status_port, "statusPort")
    if proxy.control_plane_auth_policy is AuthenticationPolicy.INHERIT:
        ctx.error("unrecognized control plane auth policy 'INHERIT': use NONE or MUTUAL_TLS", "controlPlaneAuthPolicy")
    if proxy.private_key_provider is not None:
        _check_private_key_provider(proxy.private_key_provider, ctx.at("privateKeyProvider"))


def _check_tracing(proxy: MeshProxyConfig, ctx: ValidationContext) -> None:
    tracing = proxy.tracing
    if tracing is None:
        return
    here = ctx.at("tracing")
    if tracing.lightstep is not None:
        if not tracing.lightstep.address:
            here.error("lightstep address is required", "lightstep", "address")
        else:
            _check_address(tracing.lightstep.address, here, "lightstep", "address")
        if not tracing.lightstep.access_token:
            here.error("lightstep access token is required", "lightstep", "accessToken")
    for field, tracer in (("zipkin", tracing.zipkin), ("datadog", tracing.datadog)):
        if tracer is not None:
            _check_address(tracer.address.replace("$(HOST_IP)", "127.0.0.1", 1), here, field, "address")
    validate_client_tls(tracing.tls_settings, here.at("tlsSettings"))


def _check_private_key_provider(provider: PrivateKeyProvider, ctx: ValidationContext) -> None:
    chosen = [(name, value) for name, value in (("cryptomb", provider.cryptomb), ("qat", provider.qat)) if value]
    if not chosen:
        ctx.error("private key provider configuration is required (cryptomb or qat)")
    for name, value in chosen:
        if value.poll_delay is None:
            ctx.error("pollDelay is required", name, "pollDelay")
        elif value.poll_delay.nanos == 0:
            ctx.error("pollDelay must be non zero", name, "pollDelay")


def _check_address(address: str, ctx: ValidationContext, *segments: str | int) -> None:
    problem = proxy_address_problem(address)
    if problem:
        ctx.error(problem, *segments)


def proxy_address_problem(address: str) -> str | None:
    """Istio's ``ValidateProxyAddress``: ``host:port`` with an FQDN or IP host and a valid port."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0 or not address[end + 1 :].startswith(":"):
            return f"address {address!r} is not host:port"
        host, port = address[1:end], address[end + 2 :]
    else:
        host, colon, port = address.rpartition(":")
        if not colon:
            return f"address {address!r} is missing a port"
        if ":" in host:
            return f"address {address!r} has too many colons (bracket an IPv6 address: [::1]:80)"
    if not port.isdigit() or not port.isascii():
        return f"port {port!r} of address {address!r} is not a number"
    if not 1 <= int(port) <= 65535:
        return f"port number {int(port)} of address {address!r} must be in the range 1..65535"
    if fqdn_problem(host) and not _is_ip(host):
        return f"{host!r} of address {address!r} is not a valid hostname or an IP address"
    return None


def fqdn_problem(name: str) -> str | None:
    """Istio's ``ValidateFQDN`` (DNS-1123 labels, a non-numeric top-level label)."""
    if not name or len(name) > 255:
        return f"domain name {name!r} must be 1 to 255 characters long"
    labels = name.split(".")
    if labels[-1].isdigit():
        return f"domain name {name!r} invalid (top level domain {labels[-1]!r} cannot be all-numeric)"
    for index, label in enumerate(labels):
        if index == len(labels) - 1 and not label:
            break
        if len(label) > 63 or not _LABEL.match(label):
            return f"domain name {name!r} invalid (label {label!r} invalid)"
    return None


def trust_domain_problem(domain: str) -> str | None:
    """Istio's ``ValidateTrustDomain``: DNS-1123 labels (Istio accepts upper case), an optional trailing dot."""
    if not domain:
        return "empty trust domain name not allowed"
    labels = domain.split(".")
    for index, label in enumerate(labels):
        if index == len(labels) - 1 and not label and index:
            break
        if len(label) > 63 or not _LABEL.match(label):
            return f"trust domain name {domain!r} invalid"
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _check_curves(curves: tuple[str, ...], ctx: ValidationContext) -> None:
    unknown = sorted({curve for curve in curves if curve not in VALID_ECDH_CURVES})
    duplicates = sorted({curve for curve in curves if curve in VALID_ECDH_CURVES and curves.count(curve) > 1})
    if unknown:
        ctx.warning(f"detected unrecognized ECDH curves: {unknown}")
    if duplicates:
        ctx.warning(f"detected duplicate ECDH curves: {duplicates}")


def _check_providers(providers: tuple[ExtensionProvider, ...], ctx: ValidationContext) -> None:
    seen: set[str] = set()
    for index, provider in enumerate(providers):
        here = ctx.at("extensionProviders", index)
        if not provider.name:
            here.warning("invalid extension provider: empty extension provider name", "name")
        elif provider.name in seen:
            here.warning(f"invalid extension provider {provider.name}: duplicate extension provider name", "name")
        seen.add(provider.name)
        for segments, problem in _provider_problems(provider):
            here.warning(f"invalid extension provider {provider.name}: {problem}", *segments)


def _provider_problems(provider: ExtensionProvider) -> list[tuple[tuple[str, ...], str]]:
    kind = provider.kind
    if kind is ProviderKind.NONE:
        return [((), "no provider is set (envoyExtAuthzHttp, zipkin, prometheus, ...)")]
    field = kind.value
    body = getattr(provider, _attribute(kind))
    problems: list[tuple[tuple[str, ...], str]] = []
    if hasattr(body, "service") and hasattr(body, "port"):
        if not 1 <= body.port <= 65535:
            problems.append(((field, "port"), f"port number {body.port} must be in the range 1..65535"))
        service_problem = provider_service_problem(body.service)
        if service_problem:
            problems.append(((field, "service"), service_problem))
    status = getattr(body, "status_on_error", "")
    if status and not (status.lstrip("-").isdigit() and int(status) in _STATUS_CODES):
        problems.append(((field, "statusOnError"), f"unsupported statusOnError value {status!r}"))
    prefix = getattr(body, "path_prefix", "")
    if prefix and not prefix.startswith("/"):
        problems.append(((field, "pathPrefix"), f"pathPrefix should begin with `/` but found {prefix!r}"))
    if kind is ProviderKind.LIGHTSTEP and not body.access_token:
        problems.append(((field, "accessToken"), "access token is required"))
    if kind is ProviderKind.OPENTELEMETRY and body.grpc is not None and body.http is not None:
        problems.append(((field,), "OpenTelemetryTracingProvider cannot specify both grpc and http"))
    return problems


def _attribute(kind: ProviderKind) -> str:
    return re.sub(r"([A-Z])", lambda match: "_" + match.group(1).lower(), kind.value)


def provider_service_problem(service: str) -> str | None:
    """Istio's ``validateExtensionProviderService``: ``[namespace/]hostname``."""
    if not service:
        return "service must not be empty"
    namespace, slash, host = service.partition("/")
    if not slash:
        if fqdn_problem(service) and not _is_ip(service):
            return f"invalid service fmt {service!r}: not a fully qualified host name or an IP address"
        return None
    if not namespace or not host:
        return f"service {service!r}: namespace and host name cannot be empty"
    if namespace not in ("*", ".", "~") and not is_dns_label(namespace):
        return f"service {service!r}: invalid namespace value {namespace!r}"
    if host != "*" and "." not in host:
        return f"service {service!r}: short names (non FQDN) are not allowed"
    first, _, rest = host.partition(".")
    if not _WILDCARD_LABEL.match(first) or (rest and fqdn_problem(rest)):
        return f"service {service!r}: host {host!r} is not a valid domain name"
    if "*" in host and host != "*" and not host.startswith("*."):
        return f"service {service!r}: partial wildcard {host!r} not allowed"
    return None
