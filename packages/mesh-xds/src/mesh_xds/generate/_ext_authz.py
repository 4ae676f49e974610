"""CUSTOM AuthorizationPolicies -> an RBAC filter in shadow mode and Envoy's ext_authz (private).

As Istio does, the RBAC filter evaluates the CUSTOM policies' rules without enforcing them: a request that
matches one is tagged with the matching policy's name (prefix ``istio-ext-authz``) in the filter's dynamic
metadata, and the ext_authz filter, enabled by that metadata only, asks the MeshConfig extension provider
(``envoyExtAuthzHttp`` or ``envoyExtAuthzGrpc``) for a decision.

A workload can use one provider. When its CUSTOM policies name several, or a provider that is not declared,
not an authorizer, or whose service is unknown, the requests those policies match are denied instead (fail
closed), and a warning says why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2, http_uri_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2 as http_authz_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as network_authz_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.type.matcher.v3 import string_pb2, value_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import duration_pb2

from mesh_config.meta import Resource
from mesh_config.security import AuthorizationAction, AuthorizationPolicy
from mesh_xds.generate import _rbac_match as m
from mesh_xds.generate.context import GenerationContext
from mesh_xds.generate.names import outbound_cluster
from mesh_xds.generate.rbac import HTTP_RBAC_FILTER, NETWORK_RBAC_FILTER, build_rbac, trust_domains

__all__ = ["custom_http_filters", "custom_network_filters"]

_log = logging.getLogger(__name__)

_MATCH_PREFIX: Final = "istio-ext-authz"
_STAT_PREFIX: Final = "istio_ext_authz_"
_BAD_SUFFIX: Final = "-deny-due-to-bad-CUSTOM-action"
_DEFAULT_TIMEOUT_SECONDS: Final = 600
_HTTP_AUTHZ: Final = "envoy.filters.http.ext_authz"
_NETWORK_AUTHZ: Final = "envoy.filters.network.ext_authz"


class _ProviderError(ValueError):
    pass


def _custom(policies: Sequence[Resource[AuthorizationPolicy]]) -> list[Resource[AuthorizationPolicy]]:
    return [policy for policy in policies if policy.spec.action is AuthorizationAction.CUSTOM]


def _enabled_by(rbac_filter: str) -> Any:
    return m.metadata_matcher(
        rbac_filter,
        [_STAT_PREFIX + "shadow_effective_policy_id"],
        value_pb2.ValueMatcher(string_match=string_pb2.StringMatcher(prefix=_MATCH_PREFIX)),
    )


def _cluster(ctx: GenerationContext, service: str, port: int) -> tuple[str, str]:
    if not 1 <= port <= 65535:
        raise _ProviderError(f"port must be in 1..65535, not {port}")
    namespace, slash, host = service.rpartition("/")
    if not host:
        raise _ProviderError("service must not be empty")
    for candidate in ctx.push.services.services:
        if candidate.hostname.value == host and (not slash or candidate.namespace == namespace):
            if candidate.hostname.is_wildcard:
                continue
            return host, outbound_cluster(port, host)
    raise _ProviderError(f"service {service!r} is not in the registry")


def _status(text: str) -> Any:
    if not text:
        return None
    if not text.isdigit() or int(text) not in http_status_pb2.StatusCode.values():
        raise _ProviderError(f"statusOnError {text!r} is not an HTTP status code Envoy knows")
    return http_status_pb2.HttpStatus(code=int(text))


def _timeout(duration: Any) -> Any:
    value = duration_pb2.Duration()
    value.FromNanoseconds(duration.nanos if duration is not None else _DEFAULT_TIMEOUT_SECONDS * 1_000_000_000)
    return value


def _headers(names: Sequence[str]) -> Any:
    return string_pb2.ListStringMatcher(patterns=[m.string_matcher(name, ignore_case=True) for name in names])


def _provider(ctx: GenerationContext, name: str) -> tuple[Any, Any | None]:
    """(HTTP ext_authz config, network ext_authz config or None) for a provider name."""
    found = [p for p in ctx.mesh.extension_providers if p.name == name]
    if not found:
        raise _ProviderError(f"extension provider {name!r} is not declared in MeshConfig")
    provider = found[0]
    if provider.envoy_ext_authz_http is not None:
        http = provider.envoy_ext_authz_http
        host, cluster = _cluster(ctx, http.service, http.port)
        if http.path_prefix and not http.path_prefix.startswith("/"):
            raise _ProviderError(f"pathPrefix must begin with '/', not {http.path_prefix!r}")
        service = http_authz_pb2.HttpService(
            server_uri=http_uri_pb2.HttpUri(uri=f"http://{host}", cluster=cluster, timeout=_timeout(http.timeout)),
            path_prefix=http.path_prefix,
        )
        extra = sorted(http.include_additional_headers_in_check.items())
        if extra:
            service.authorization_request.headers_to_add.extend(
                base_pb2.HeaderValue(key=key, value=value) for key, value in extra
            )
        if http.headers_to_upstream_on_allow:
            service.authorization_response.allowed_upstream_headers.CopyFrom(
                _headers(http.headers_to_upstream_on_allow)
            )
        if http.headers_to_downstream_on_deny:
            service.authorization_response.allowed_client_headers.CopyFrom(_headers(http.headers_to_downstream_on_deny))
        if http.headers_to_downstream_on_allow:
            service.authorization_response.allowed_client_headers_on_success.CopyFrom(
                _headers(http.headers_to_downstream_on_allow)
            )
        config = http_authz_pb2.ExtAuthz(
            http_service=service, failure_mode_allow=http.fail_open, transport_api_version=config_source_pb2.V3
        )
        included = [*http.include_request_headers_in_check, *http.include_headers_in_check]
        if included:
            config.allowed_headers.CopyFrom(_headers(included))
        _body(config, http.include_request_body_in_check)
        status = _status(http.status_on_error)
        if status is not None:
            config.status_on_error.CopyFrom(status)
        return config, None
    if provider.envoy_ext_authz_grpc is not None:
        grpc = provider.envoy_ext_authz_grpc
        _, cluster = _cluster(ctx, grpc.service, grpc.port)
        service = grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                cluster_name=cluster, authority=cluster.replace("|", "_.")
            ),
            timeout=_timeout(grpc.timeout),
        )
        config = http_authz_pb2.ExtAuthz(
            grpc_service=service, failure_mode_allow=grpc.fail_open, transport_api_version=config_source_pb2.V3
        )
        _body(config, grpc.include_request_body_in_check)
        status = _status(grpc.status_on_error)
        if status is not None:
            config.status_on_error.CopyFrom(status)
        network = network_authz_pb2.ExtAuthz(
            stat_prefix="tcp.",
            grpc_service=service,
            failure_mode_allow=grpc.fail_open,
            transport_api_version=config_source_pb2.V3,
        )
        return config, network
    raise _ProviderError(f"extension provider {name!r} is not an envoyExtAuthzHttp or envoyExtAuthzGrpc provider")


def _body(config: Any, body: Any) -> None:
    if body is None:
        return
    config.with_request_body.CopyFrom(
        http_authz_pb2.BufferSettings(
            max_request_bytes=body.max_request_bytes,
            allow_partial_message=body.allow_partial_message,
            pack_as_bytes=body.pack_as_bytes,
        )
    )


def _resolve(ctx: GenerationContext, custom: Sequence[Resource[AuthorizationPolicy]]) -> tuple[Any, Any | None]:
    names = sorted({policy.spec.provider.name for policy in custom if policy.spec.provider is not None})
    if len(names) != 1:
        raise _ProviderError(f"a workload's CUSTOM policies must name one provider, not {names}")
    return _provider(ctx, names[0])


def _rules(ctx: GenerationContext, custom: Sequence[Resource[AuthorizationPolicy]], *, for_tcp: bool) -> Any:
    """Every CUSTOM rule as one DENY rule set (a dry-run annotation does not apply to CUSTOM)."""
    built = build_rbac(
        custom, rbac_pb2.RBAC.DENY, for_tcp=for_tcp, trust_domains=trust_domains(ctx.mesh), name_prefix=""
    )
    merged = rbac_pb2.RBAC(action=rbac_pb2.RBAC.DENY)
    for part in built or ():
        if part is not None:
            merged.policies.MergeFrom(part.policies)
    return merged


def _prefixed(rules: Any, *, prefix: str = "", suffix: str = "") -> Any:
    renamed = rbac_pb2.RBAC(action=rules.action)
    for name in sorted(rules.policies):
        renamed.policies[prefix + name + suffix].CopyFrom(rules.policies[name])
    return renamed


def _packed(filter_class: Any, name: str, config: Any) -> Any:
    built = filter_class(name=name)
    built.typed_config.Pack(config)
    return built


def custom_http_filters(ctx: GenerationContext, policies: Sequence[Resource[AuthorizationPolicy]]) -> list[Any]:
    """The HTTP filters of a workload's CUSTOM policies: shadow RBAC then ext_authz (or a DENY RBAC filter)."""
    custom = _custom(policies)
    if not custom:
        return []
    rules = _rules(ctx, custom, for_tcp=False)
    try:
        authz, _ = _resolve(ctx, custom)
    except _ProviderError as error:
        _log.warning("CUSTOM authorization of %s denies what it matches: %s", ctx.proxy.id, error)
        deny = http_rbac_pb2.RBAC(rules=_prefixed(rules, suffix=_BAD_SUFFIX))
        return [_packed(hcm_pb2.HttpFilter, HTTP_RBAC_FILTER, deny)]
    authz.filter_enabled_metadata.CopyFrom(_enabled_by(HTTP_RBAC_FILTER))
    shadow = http_rbac_pb2.RBAC(
        shadow_rules=_prefixed(rules, prefix=f"{_MATCH_PREFIX}-"), shadow_rules_stat_prefix=_STAT_PREFIX
    )
    return [_packed(hcm_pb2.HttpFilter, HTTP_RBAC_FILTER, shadow), _packed(hcm_pb2.HttpFilter, _HTTP_AUTHZ, authz)]


def custom_network_filters(ctx: GenerationContext, policies: Sequence[Resource[AuthorizationPolicy]]) -> list[Any]:
    """The network filters of a workload's CUSTOM policies (only gRPC providers can authorize TCP)."""
    custom = _custom(policies)
    if not custom:
        return []
    rules = _rules(ctx, custom, for_tcp=True)
    try:
        _, authz = _resolve(ctx, custom)
    except _ProviderError as error:
        _log.warning("CUSTOM authorization of %s denies what it matches: %s", ctx.proxy.id, error)
        deny = network_rbac_pb2.RBAC(rules=_prefixed(rules, suffix=_BAD_SUFFIX), stat_prefix="tcp.")
        return [_packed(listener_components_pb2.Filter, NETWORK_RBAC_FILTER, deny)]
    if authz is None:
        return []
    authz.filter_enabled_metadata.CopyFrom(_enabled_by(NETWORK_RBAC_FILTER))
    shadow = network_rbac_pb2.RBAC(
        shadow_rules=_prefixed(rules, prefix=f"{_MATCH_PREFIX}-"),
        shadow_rules_stat_prefix=_STAT_PREFIX,
        stat_prefix="tcp.",
    )
    return [
        _packed(listener_components_pb2.Filter, NETWORK_RBAC_FILTER, shadow),
        _packed(listener_components_pb2.Filter, _NETWORK_AUTHZ, authz),
    ]
