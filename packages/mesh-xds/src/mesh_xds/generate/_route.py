"""A VirtualService's HTTP routes as Envoy routes, shared by sidecar and gateway RDS (private).

Follows Istio's ``BuildHTTPRoutesForVirtualService`` and ``translateRoute``: each match of each HTTP rule
becomes one Envoy route (a rule without matches becomes one catch-all route), rules whose match names
another port, other source labels or namespace, or other gateways are left out, and nothing follows a
catch-all route.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, final

import attrs
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import metadata_pb2, regex_pb2, value_pb2
from google.protobuf import wrappers_pb2

from mesh_config.index import ResolvedVirtualService, resolve_gateway_name
from mesh_config.meta import Resource
from mesh_config.networking.load_balancer import ConsistentHashLB
from mesh_config.networking.virtual_service import (
    Destination,
    Headers,
    HTTPDirectResponse,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRetry,
    HTTPRoute,
    RedirectPortSelection,
    StringMatch,
)
from mesh_model import ConfigKey, Hostname, InvalidHostError, Service, resolve_short_name
from mesh_xds.generate import _route_features as features
from mesh_xds.generate.context import GenerationContext, source_metadata
from mesh_xds.generate.names import outbound_cluster, parse_outbound_cluster

__all__ = [
    "MAX_DIRECT_RESPONSE_BODY",
    "RouteOptions",
    "build_metadata",
    "consistent_hash_for",
    "destination_cluster",
    "is_catch_all",
    "requested_names",
    "resolve_host",
    "virtual_service_routes",
]

MAX_DIRECT_RESPONSE_BODY: Final = 1024 * 1024
"""Istio raises Envoy's 4 KiB limit on direct response bodies to 1 MiB, the size its validation allows."""
_JWT_CLAIM_PREFIX: Final = "@request.auth.claims"
_JWT_FILTER: Final = "envoy.filters.http.jwt_authn"
_JWT_PAYLOAD: Final = "payload"
_REDIRECT_CODES: Final = {
    0: rc.RedirectAction.MOVED_PERMANENTLY,
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}


@final
@attrs.frozen
class RouteOptions:
    """What route translation needs to know of the proxy and the listener.

    Attributes:
        port: the listener (service) port the routes are for.
        gateways: the gateway names the routes are for: ``{"mesh"}`` for sidecars, ``{"ns/name"}`` for a
            gateway's server.
        labels: the proxy's workload labels (for ``sourceLabels``).
        namespace: the proxy's namespace (for ``sourceNamespace``).
        service_for: the service a destination host names, if any (for its default port).
        hash_for: the DestinationRule consistent hash for a destination, if any.
        resource_for: the config object of a key (to find the namespace of a delegate's routes).
        default_retry: the mesh's default retry policy (``None``: Istio's).
        grpc: the proxy is a proxyless gRPC client.
        tls: the listener terminates TLS (a redirect then defaults to https).
        resolve: resolves a destination host written in a namespace (:func:`resolve_host`).
    """

    port: int
    gateways: frozenset[str]
    labels: Mapping[str, str]
    namespace: str
    service_for: Callable[[Hostname], Service | None]
    hash_for: Callable[[Hostname, Destination], ConsistentHashLB | None] = lambda host, destination: None
    resource_for: Callable[[ConfigKey], Resource[Any] | None] = lambda key: None
    default_retry: HTTPRetry | None = None
    grpc: bool = False
    tls: bool = False
    resolve: Callable[[str, str], Hostname | None] = lambda text, namespace: resolve_host(text, namespace)


def requested_names(names: Iterable[str] | None, available: Iterable[str]) -> list[str]:
    """The route configuration names to build, sorted: ``names``, or every available one when ``None``.

    Raises:
        TypeError: ``names`` is a string, or holds something other than strings.
    """
    if names is None:
        return sorted(set(available))
    if isinstance(names, str | bytes):
        raise TypeError(f"names must be an iterable of route configuration names, not the string {names!r}")
    wanted = list(names)
    for name in wanted:
        if not isinstance(name, str):
            raise TypeError(f"route configuration names must be strings, not {type(name).__name__}: {name!r}")
    return sorted(set(wanted))


def resolve_host(text: str, namespace: str) -> Hostname | None:
    """A destination host as Istio resolves it: short names in ``namespace``; ``None`` when invalid."""
    try:
        return resolve_short_name(text, namespace)
    except InvalidHostError:
        return None


def build_metadata(sources: Iterable[ConfigKey]) -> Any | None:
    """An Envoy Metadata recording the config objects a resource came from, or ``None`` without any."""
    entries = source_metadata(sources)
    if not entries:
        return None
    metadata = base_pb2.Metadata()
    for key, value in entries.items():
        metadata.filter_metadata[key].update(value)
    return metadata


def destination_cluster(destination: Destination, host: Hostname | None, service: Service | None, port: int) -> str:
    """The cluster of a destination (``GetDestinationCluster``).

    Its port is the destination's, else the service's only port, else the listener's port.
    """
    number = port
    if destination.port is not None and destination.port.number:
        number = destination.port.number
    elif service is not None and len(service.ports) == 1:
        number = service.ports[0].number
    return outbound_cluster(number, host.value if host is not None else destination.host, destination.subset)


def consistent_hash_for(
    ctx: GenerationContext, service: Service | None, port: int | None, subset: str = ""
) -> ConsistentHashLB | None:
    """The DestinationRule consistent hash for calls to ``service``: subset and port level first."""
    if service is None:
        return None
    rule = ctx.push.destination_rule(ctx.workload, service).value
    if rule is None:
        return None
    policy = rule.spec.traffic_policy
    found: ConsistentHashLB | None = _hash_of(policy, port)
    for entry in rule.spec.subsets:
        if subset and entry.name == subset:
            found = _hash_of(entry.traffic_policy, port) or found
    return found


def _hash_of(policy: Any, port: int | None) -> ConsistentHashLB | None:
    if policy is None:
        return None
    found: ConsistentHashLB | None = policy.load_balancer.consistent_hash if policy.load_balancer else None
    for setting in policy.port_level_settings:
        if port is None or setting.port is None or setting.port.number != port:
            continue
        if setting.load_balancer is not None and setting.load_balancer.consistent_hash is not None:
            level: ConsistentHashLB = setting.load_balancer.consistent_hash
            return level
    return found


def is_catch_all(route: Any) -> bool:
    """True when an Envoy route matches every request (``/`` or ``.*``, with no other condition)."""
    match = route.match
    which = match.WhichOneof("path_specifier")
    if which == "prefix":
        every = match.prefix == "/"
    elif which == "path_separated_prefix":
        every = match.path_separated_prefix == "/"
    elif which == "safe_regex":
        every = match.safe_regex.regex == ".*"
    else:
        every = False
    return every and not match.headers and not match.query_parameters and not match.dynamic_metadata


def _route_namespaces(vs: ResolvedVirtualService, options: RouteOptions) -> list[str]:
    """The namespace each merged route was written in: the root's, or its delegate's."""
    own = {id(route) for route in vs.resource.spec.http}
    delegates = [options.resource_for(key) for key in vs.sources[1:]]
    out = []
    for route in vs.spec.http:
        namespace = vs.resource.namespace
        if id(route) not in own:
            bare = attrs.evolve(route, match=())
            for delegate in delegates:
                if delegate is not None and any(attrs.evolve(r, match=()) == bare for r in delegate.spec.http):
                    namespace = delegate.namespace
                    break
        out.append(namespace)
    return out


def virtual_service_routes(vs: ResolvedVirtualService, options: RouteOptions) -> list[Any]:
    """The Envoy routes of a VirtualService on one port for one proxy, in order; empty when none applies."""
    metadata = build_metadata(vs.sources)
    namespaces = _route_namespaces(vs, options) if len(vs.sources) > 1 else [vs.resource.namespace] * len(vs.spec.http)
    out: list[Any] = []
    for http, namespace in zip(vs.spec.http, namespaces, strict=True):
        translate = _Translator(vs, http, namespace, options, metadata)
        if not http.match:
            route = translate(None)
            if route is not None:
                out.append(route)
            break
        catch_all = False
        for match in http.match:
            route = translate(match)
            if route is None:
                continue
            out.append(route)
            if is_catch_all(route):
                catch_all = True
                break
        if catch_all:
            break
    return out


def _source_matches(match: HTTPMatchRequest, vs_namespace: str, options: RouteOptions) -> bool:
    """``sourceMatchHTTP``: the match's gateways, else its source labels and namespace, fit the proxy."""
    if match.gateways:
        return any(resolve_gateway_name(name, vs_namespace) in options.gateways for name in match.gateways)
    if any(options.labels.get(key) != value for key, value in match.source_labels.items()):
        return False
    return not match.source_namespace or match.source_namespace == options.namespace


@final
class _Translator:
    """Turns one HTTP rule, with one of its matches, into an Envoy route (``translateRoute``)."""

    def __init__(
        self, vs: ResolvedVirtualService, http: HTTPRoute, namespace: str, options: RouteOptions, metadata: Any
    ) -> None:
        self.vs = vs
        self.http = http
        self.namespace = namespace
        self.options = options
        self.metadata = metadata

    def __call__(self, match: HTTPMatchRequest | None) -> Any | None:
        http, options = self.http, self.options
        if match is not None:
            if match.port and match.port != options.port:
                return None
            if not _source_matches(match, self.vs.resource.namespace, options):
                return None
        name = http.name
        if match is not None and match.name:
            name = f"{name}.{match.name}"
        route = rc.Route(name=name, match=translate_match(match))
        if self.metadata is not None:
            route.metadata.CopyFrom(self.metadata)
        if match is not None and match.stat_prefix:
            route.stat_prefix = match.stat_prefix
        authority = ""
        if http.headers is not None:
            authority = _apply_headers(route, http.headers)
        if http.redirect is not None:
            if not _apply_redirect(route, http.redirect, options):
                return None
        elif http.direct_response is not None:
            _apply_direct_response(route, http.direct_response)
        elif any(target.destination is not None for target in http.route):
            self._apply_destinations(route, authority)
        else:
            return None
        route.decorator.operation = _operation(route, self.vs.resource.name, options.port)
        fault = features.fault_config(http.fault)
        if fault is not None:
            route.typed_per_filter_config[features.FAULT_FILTER].CopyFrom(features.pack(fault))
        if http.cors_policy is not None:
            route.typed_per_filter_config[features.CORS_FILTER].CopyFrom(
                features.pack(features.cors_config(http.cors_policy))
            )
        return route

    def _cluster(self, destination: Destination) -> tuple[str, Hostname | None]:
        host = self.options.resolve(destination.host, self.namespace)
        service = self.options.service_for(host) if host is not None else None
        return destination_cluster(destination, host, service, self.options.port), host

    def _apply_destinations(self, route: Any, authority: str) -> None:
        http, options = self.http, self.options
        action = route.route
        features.set_timeout(action, http.timeout, grpc=options.grpc)
        rewrite = http.rewrite
        if rewrite is not None:
            if rewrite.uri_regex_rewrite is not None:
                action.regex_rewrite.pattern.CopyFrom(regex_pb2.RegexMatcher(regex=rewrite.uri_regex_rewrite.match))
                action.regex_rewrite.substitution = rewrite.uri_regex_rewrite.rewrite
            elif rewrite.uri:
                action.prefix_rewrite = rewrite.uri
            if rewrite.authority:
                authority = rewrite.authority
        if authority:
            action.host_rewrite_literal = authority
        if http.mirror is not None:
            fraction = features.mirror_fraction(http)
            if fraction is not None:
                action.request_mirror_policies.append(self._mirror(http.mirror, fraction))
        for mirror in http.mirrors:
            fraction = features.mirror_policy_fraction(mirror)
            if fraction is not None and mirror.destination is not None:
                action.request_mirror_policies.append(self._mirror(mirror.destination, fraction))
        consistent_hash = False
        destinations = [d for d in http.route if d.destination is not None]
        if len(destinations) == 1:
            target = destinations[0]
            assert target.destination is not None  # filtered above
            cluster, host = self._cluster(target.destination)
            action.cluster = cluster
            if target.headers is not None:
                extra = _apply_headers(route, target.headers)
                if extra and not action.host_rewrite_literal:
                    action.host_rewrite_literal = extra
            consistent_hash = self._add_hash(action, host, target.destination)
        else:
            weighted = [d for d in destinations if d.weight] or destinations
            for target in weighted:
                assert target.destination is not None  # filtered above
                cluster, host = self._cluster(target.destination)
                entry = action.weighted_clusters.clusters.add(
                    name=cluster, weight=wrappers_pb2.UInt32Value(value=target.weight or 1)
                )
                if target.headers is not None:
                    extra = _apply_headers(entry, target.headers)
                    if extra:
                        entry.host_rewrite_literal = extra
                self._add_hash(action, host, target.destination)
        retries = http.retries if http.retries is not None else options.default_retry
        policy = features.retry_policy(retries, consistent_hash=consistent_hash)
        if policy is not None:
            action.retry_policy.CopyFrom(policy)

    def _mirror(self, destination: Destination, fraction: Any) -> Any:
        cluster, _ = self._cluster(destination)
        return rc.RouteAction.RequestMirrorPolicy(
            cluster=cluster, runtime_fraction=fraction, trace_sampled=wrappers_pb2.BoolValue(value=False)
        )

    def _add_hash(self, action: Any, host: Hostname | None, destination: Destination) -> bool:
        if host is None:
            return False
        policy = features.hash_policy(self.options.hash_for(host, destination))
        if policy is None:
            return False
        action.hash_policy.append(policy)
        return True


def translate_match(match: HTTPMatchRequest | None) -> Any:
    """Envoy's RouteMatch for an Istio match (``TranslateRouteMatch``); ``None`` matches every path."""
    out = rc.RouteMatch(prefix="/")
    if match is None:
        return out
    headers: list[Any] = []
    for name, value in match.headers.items():
        claim = _jwt_claim_matcher(name, value)
        if claim is not None:
            out.dynamic_metadata.append(claim)
        else:
            headers.append(_header_matcher(name, value))
    for name, value in match.without_headers.items():
        claim = _jwt_claim_matcher(name, value)
        if claim is not None:
            claim.invert = True
            out.dynamic_metadata.append(claim)
            continue
        matcher = _header_matcher(name, value)
        matcher.invert_match = True
        if not features.is_present_match(value):
            matcher.treat_missing_header_as_empty = True
        headers.append(matcher)
    headers.sort(key=lambda matcher: matcher.name)
    uri = match.uri
    if uri is not None:
        if uri.exact is not None:
            out.path = uri.exact
        elif uri.prefix is not None:
            out.prefix = uri.prefix
        elif uri.regex is not None:
            out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=uri.regex))
    out.case_sensitive.CopyFrom(wrappers_pb2.BoolValue(value=not match.ignore_uri_case))
    for pseudo, pseudo_value in (
        (":method", match.method),
        (":authority", match.authority),
        (":scheme", match.scheme),
    ):
        if pseudo_value is not None:
            headers.append(_header_matcher(pseudo, pseudo_value))
    out.headers.extend(headers)
    for name in sorted(match.query_params):
        value = match.query_params[name]
        parameter = rc.QueryParameterMatcher(name=name)
        if features.is_present_match(value):
            parameter.present_match = True
        else:
            parameter.string_match.CopyFrom(features.string_matcher(value))
        out.query_parameters.append(parameter)
    return out


def _header_matcher(name: str, value: StringMatch | None) -> Any:
    if features.is_present_match(value):
        return rc.HeaderMatcher(name=name, present_match=True)
    return rc.HeaderMatcher(name=name, string_match=features.string_matcher(value))


def _routing_claims(name: str) -> list[str] | None:
    """The claim path of an ``@request.auth.claims.a.b`` or ``@request.auth.claims[a][b]`` header, else None."""
    if not name.lower().startswith(_JWT_CLAIM_PREFIX):
        return None
    rest = name[len(_JWT_CLAIM_PREFIX) :]
    if rest.startswith(".") and len(rest) > 1:
        claims = rest[1:].split(".")
    elif rest.startswith("[") and rest.endswith("]") and len(rest) > 2:
        claims = rest[1:-1].split("][")
    else:
        return None
    return claims if all(claims) else None


def _jwt_claim_matcher(name: str, value: StringMatch | None) -> Any | None:
    """A dynamic metadata matcher on the JWT filter's payload, for routing on JWT claims (gateways only)."""
    claims = _routing_claims(name)
    if claims is None:
        return None
    matcher = metadata_pb2.MetadataMatcher(
        filter=_JWT_FILTER,
        path=[metadata_pb2.MetadataMatcher.PathSegment(key=key) for key in (_JWT_PAYLOAD, *claims)],
    )
    string = None if features.is_present_match(value) else features.string_matcher(value)
    if string is None:
        matcher.value.present_match = True
        return matcher
    one = value_pb2.ValueMatcher(string_match=string)
    listed = value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=one))
    matcher.value.or_match.value_matchers.extend([listed, one])
    return matcher


def _header_options(values: Mapping[str, str], *, append: bool) -> tuple[list[Any], str]:
    """HeaderValueOptions for ``set`` (overwrite) or ``add`` (append), sorted; and any authority given."""
    authority = ""
    out = []
    action = (
        base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
        if append
        else base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    )
    for key in sorted(values):
        if key.lower() in (":authority", "host"):
            authority = values[key]
        if key.startswith(":") or key.lower() == "host":
            continue
        out.append(
            base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, value=values[key]), append_action=action)
        )
    return out, authority


def _removable(names: Sequence[str]) -> list[str]:
    return [name for name in names if not name.startswith(":") and name.lower() != "host"]


def _apply_headers(target: Any, headers: Headers) -> str:
    """Add header operations to a route or weighted cluster; returns the ``:authority`` to rewrite, if any."""
    authority = ""
    if headers.request is not None:
        overwrite, set_authority = _header_options(headers.request.set, append=False)
        appended, add_authority = _header_options(headers.request.add, append=True)
        target.request_headers_to_add.extend(overwrite + appended)
        target.request_headers_to_remove.extend(_removable(headers.request.remove))
        authority = set_authority or add_authority
    if headers.response is not None:
        overwrite, _ = _header_options(headers.response.set, append=False)
        appended, _ = _header_options(headers.response.add, append=True)
        target.response_headers_to_add.extend(overwrite + appended)
        target.response_headers_to_remove.extend(_removable(headers.response.remove))
    return authority


def _apply_redirect(route: Any, redirect: HTTPRedirect, options: RouteOptions) -> bool:
    """Make the route a redirect (``ApplyRedirect``); False when the redirect code is not supported."""
    code = _REDIRECT_CODES.get(redirect.redirect_code)
    if code is None:
        return False
    action = route.redirect
    action.response_code = code
    if redirect.authority:
        action.host_redirect = redirect.authority
    if redirect.uri:
        action.path_redirect = redirect.uri
    elif redirect.prefix_rewrite:
        action.prefix_rewrite = redirect.prefix_rewrite
    if redirect.scheme:
        action.scheme_redirect = redirect.scheme
    if redirect.port is not None or redirect.derive_port is not None:
        port = redirect.port or 0
        if redirect.derive_port is RedirectPortSelection.FROM_REQUEST_PORT:
            port = options.port
        scheme = redirect.scheme or ("https" if options.tls else "http")
        if (port, scheme) not in ((80, "http"), (443, "https")):
            action.port_redirect = port
    # A redirect action must exist even when it changes nothing explicit.
    route.redirect.SetInParent()
    return True


def _apply_direct_response(route: Any, response: HTTPDirectResponse) -> None:
    action = route.direct_response
    action.status = response.status
    body = response.body
    if body is None:
        return
    if body.string is not None:
        action.body.inline_string = body.string
    elif body.bytes is not None:
        try:
            action.body.inline_bytes = base64.b64decode(body.bytes, validate=True)
        except (binascii.Error, ValueError):
            action.body.inline_bytes = body.bytes.encode()


def _operation(route: Any, vs_name: str, port: int) -> str:
    """The tracing operation of a route (``GetRouteOperation``): ``host:port/path`` or ``vs:port/path``."""
    match = route.match
    which = match.WhichOneof("path_specifier")
    path = "/*"
    if which == "prefix":
        path = match.prefix + "*"
    elif which == "path":
        path = match.path
    elif which == "safe_regex":
        path = match.safe_regex.regex
    if route.WhichOneof("action") == "route" and route.route.WhichOneof("cluster_specifier") == "cluster":
        parsed = parse_outbound_cluster(route.route.cluster)
        if parsed is not None:
            number, _, host = parsed
            return f"{host}:{number}{path}"
    return f"{vs_name}:{port}{path}"
