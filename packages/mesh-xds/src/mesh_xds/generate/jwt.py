"""RequestAuthentication -> Envoy's ``jwt_authn`` HTTP filter, as Istio builds it.

Every JWT rule of the RequestAuthentications that apply to a workload becomes one provider ``origins-<i>``
(rules sorted by issuer). A request carrying an invalid token, or one no provider accepts, is refused; a
request without a token is let through without a request identity, unless a rule says ``presence:
REQUIRED``. Enforcement is the job of an AuthorizationPolicy on ``requestPrincipals`` (``<iss>/<sub>``) or
``request.auth.claims[...]``, which read the verified payload the filter stores under ``payload``.

Where the key set comes from:

* ``jwks`` (inline): given to Envoy as it is;
* ``jwksUri``: Envoy fetches it itself, through the outbound cluster of the URI's host and port
  (``outbound|443||keys.example.com``), which a ServiceEntry (and a DestinationRule for TLS) must provide;
* neither (OpenID discovery from the issuer): nothing is fetched at generation time, so the rule gets a key
  set no token can be signed with: tokens of that issuer are refused (fail closed, never a default key).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from envoy.config.core.v3 import http_uri_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import duration_pb2, empty_pb2

from mesh_config.meta import Resource
from mesh_config.security import JwtPresence, JwtRule, RequestAuthentication
from mesh_xds.generate._rbac_match import JWT_FILTER, JWT_PAYLOAD
from mesh_xds.generate.names import outbound_cluster

__all__ = ["JWT_FILTER", "UNUSABLE_JWKS", "build_jwt_filter", "jwks_cluster", "jwt_rules"]

_log = logging.getLogger(__name__)

UNUSABLE_JWKS: Final = (
    '{"keys":[{"kty":"RSA","alg":"RS256","use":"sig","kid":"mesh-unresolved-jwks","e":"AQAB","n":"'
    "tVla4Mm5TZufCGKlNLNsGs9eFp1rDV6BbQH6WsdO1KDGrdnKE3vIoidCw5IdzuO9TQF7iYcIKm03qiitoNAHRSJioK4lynDdO5gQgcjm0PGk"
    "rpr3Upji8R2zKZvSLMWa13QYqxXKGpO1jaxZlra9fSPF-d4i0rZL_ib7UpTX6xWzXtrNk5JrUY8r4Vun3y9kDXSxKFi0lQqXn60S562nURM"
    "erME0WyDhEgSz0FuDEKChUtrq8jpuKDcP_ZvKwg95gF5oLRAgqT8k5vKYb-6xd6AS8-SsFclXco2JgVcbUcGt6MkcvbHHejfeae4fgMsjrt0"
    'aJoyxfuqml1lLjIT89Q"}]}'
)
"""The key set of a rule whose keys cannot be known: an RSA public key whose private key was never kept."""

_DEFAULT_TIMEOUT_SECONDS: Final = 5
_CACHE_SECONDS: Final = 300
_SPACE_DELIMITED: Final = ("permission", "scope")


def jwt_rules(policies: Iterable[Resource[RequestAuthentication]]) -> list[JwtRule]:
    """Every JWT rule of the policies, sorted by issuer (stable), as the filter's providers are numbered."""
    rules = [rule for policy in policies for rule in policy.spec.jwt_rules]
    return sorted(rules, key=lambda rule: rule.issuer)


def jwks_cluster(uri: str) -> str:
    """The outbound cluster Envoy fetches a ``jwksUri`` through: ``outbound|<port>||<host>``.

    Raises:
        ValueError: the URI has no host, or a port out of range.
    """
    parts = urlsplit(uri)
    if not parts.hostname:
        raise ValueError(f"jwksUri {uri!r} has no host")
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    return outbound_cluster(port, parts.hostname)


def _duration(nanos: int) -> Any:
    value = duration_pb2.Duration()
    value.FromNanoseconds(nanos)
    return value


def _provider(rule: JwtRule) -> Any:
    provider = jwt_pb2.JwtProvider(
        issuer=rule.issuer,
        audiences=list(rule.audiences),
        forward=rule.forward_original_token,
        forward_payload_header=rule.output_payload_to_header,
        payload_in_metadata=JWT_PAYLOAD,
        from_headers=[jwt_pb2.JwtHeader(name=h.name, value_prefix=h.prefix) for h in rule.from_headers],
        from_params=list(rule.from_params),
        from_cookies=list(rule.from_cookies),
        claim_to_headers=[
            jwt_pb2.JwtClaimToHeader(header_name=c.header, claim_name=c.claim) for c in rule.output_claim_to_headers
        ],
    )
    claims = sorted({*rule.space_delimited_claims, *_SPACE_DELIMITED})
    provider.normalize_payload_in_metadata.space_delimited_claims.extend(claims)
    timeout = rule.timeout.nanos if rule.timeout is not None else _DEFAULT_TIMEOUT_SECONDS * 1_000_000_000
    if rule.jwks:
        provider.local_jwks.inline_string = rule.jwks
    elif rule.jwks_uri:
        try:
            cluster = jwks_cluster(rule.jwks_uri)
        except ValueError as error:
            _log.warning("JWT issuer %r: %s; its tokens are refused", rule.issuer, error)
            provider.local_jwks.inline_string = UNUSABLE_JWKS
        else:
            provider.remote_jwks.CopyFrom(
                jwt_pb2.RemoteJwks(
                    http_uri=http_uri_pb2.HttpUri(uri=rule.jwks_uri, cluster=cluster, timeout=_duration(timeout)),
                    cache_duration=duration_pb2.Duration(seconds=_CACHE_SECONDS),
                )
            )
    else:
        _log.warning(
            "JWT issuer %r has neither jwks nor jwksUri and OpenID discovery is not done; its tokens are refused",
            rule.issuer,
        )
        provider.local_jwks.inline_string = UNUSABLE_JWKS
    return provider


def _named(name: str) -> Any:
    return jwt_pb2.JwtRequirement(provider_name=name)


def _any(requirements: Sequence[Any]) -> Any:
    return jwt_pb2.JwtRequirement(requires_any=jwt_pb2.JwtRequirementOrList(requirements=requirements))


def _all(requirements: Sequence[Any]) -> Any:
    return jwt_pb2.JwtRequirement(requires_all=jwt_pb2.JwtRequirementAndList(requirements=requirements))


def _requirement(names: Sequence[str], required: Sequence[str]) -> Any:
    """Optional providers: a token, if any, must be valid for one of them; required ones must all be met."""
    optional = [name for name in names if name not in required]
    parts = [_named(name) for name in required]
    if optional:
        allow_missing = jwt_pb2.JwtRequirement(allow_missing=empty_pb2.Empty())
        inner = [_any([_named(name), allow_missing]) for name in optional]
        parts.append(inner[0] if len(inner) == 1 else _any([*map(_named, optional), _all(inner)]))
    return parts[0] if len(parts) == 1 else _all(parts)


def build_jwt_filter(policies: Iterable[Resource[RequestAuthentication]]) -> Any | None:
    """The ``envoy.filters.http.jwt_authn`` HttpFilter of a workload's RequestAuthentications.

    Args:
        policies: the RequestAuthentications that apply to the workload.

    Returns:
        an ``HttpFilter``, or ``None`` when they hold no JWT rule.
    """
    rules = jwt_rules(policies)
    if not rules:
        return None
    config = jwt_pb2.JwtAuthentication(bypass_cors_preflight=True)
    names = []
    required = []
    for index, rule in enumerate(rules):
        name = f"origins-{index}"
        names.append(name)
        if rule.presence is JwtPresence.REQUIRED:
            required.append(name)
        config.providers[name].CopyFrom(_provider(rule))
    config.rules.append(
        jwt_pb2.RequirementRule(
            match=route_components_pb2.RouteMatch(prefix="/"), requires=_requirement(names, required)
        )
    )
    http_filter = hcm_pb2.HttpFilter(name=JWT_FILTER)
    http_filter.typed_config.Pack(config)
    return http_filter
