"""RequestAuthentication (``security.istio.io``): which JWTs a workload accepts, and where it finds them.

A request that carries an invalid token is rejected; one without a token is accepted without a request
identity (pair the policy with an AuthorizationPolicy on ``requestPrincipals`` to require one).
"""

from __future__ import annotations

import enum
import re
from typing import final

import attrs

from mesh_config.common import PolicyTargetReference, WorkloadSelector
from mesh_config.kinds import KindSpec, register_kind
from mesh_config.rules import check_duration
from mesh_config.security._jwt import jwks_problems, parse_url
from mesh_config.security._policy import check_targets, empty_items
from mesh_config.types import Duration, boolean, enum_value, optional, repeated, string
from mesh_config.validation import ValidationContext

__all__ = [
    "REQUEST_AUTHENTICATION",
    "ClaimToHeader",
    "JwtHeader",
    "JwtPresence",
    "JwtRule",
    "RequestAuthentication",
    "validate_request_authentication",
]

MAX_JWT_RULES = 4096
MAX_JWKS_URI_LENGTH = 2048
MAX_SPACE_DELIMITED_CLAIMS = 64
_STRICT_HEADER = re.compile(r"[-_A-Za-z0-9]+\Z")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_URL_SCHEME = "url must have scheme http:// or https://"


class JwtPresence(enum.Enum):
    """``JWTRule.presence``: whether a request must carry a token this rule can validate."""

    OPTIONAL = "OPTIONAL"
    """A request without a token is accepted (without a request identity)."""
    REQUIRED = "REQUIRED"
    """A request without a token is rejected."""


@final
@attrs.frozen
class JwtHeader:
    """``JWTHeader``: a request header that carries the token.

    Attributes:
        name: the header name, e.g. ``x-goog-iap-jwt-assertion``.
        prefix: stripped before the token is decoded, e.g. ``"Bearer "``.
    """

    name: str = string(required=True)
    prefix: str = string()


@final
@attrs.frozen
class ClaimToHeader:
    """``ClaimToHeader``: copy a claim of a verified token to a request header.

    Attributes:
        header: the header to set (letters, digits, ``-`` and ``_``).
        claim: the claim to copy; nested claims are not supported.
    """

    header: str = string(required=True)
    claim: str = string(required=True)


@final
@attrs.frozen
class JwtRule:
    """``JWTRule``: one token issuer a workload accepts.

    Attributes:
        issuer: the ``iss`` of accepted tokens (with ``jwks_uri``, it may be left empty).
        audiences: accepted ``aud`` values; empty accepts the service's own hostnames.
        jwks_uri: where to fetch the JSON Web Key Set; without it and ``jwks``, the issuer's OpenID discovery
            document is used. YAML may spell it ``jwksUri`` or (protobuf's field name) ``jwks_uri``.
        jwks_uri_alias: ``jwks_uri`` as written under its protobuf name; moved into ``jwks_uri`` on
            construction, so it stays empty unless both spellings are given.
        jwks: an inline JSON Web Key Set.
        from_headers: headers that carry the token; the default is ``Authorization: Bearer <token>``.
        from_params: query parameters that carry the token; the default is ``access_token``.
        output_payload_to_header: a header that receives the verified payload (base64url JSON).
        from_cookies: cookies that carry the token.
        forward_original_token: keep the token in the request sent to the workload.
        output_claim_to_headers: claims copied to request headers.
        timeout: how long istiod waits when fetching the JWKS itself.
        space_delimited_claims: claims whose string value is a space-separated list (``scope`` and ``permission``
            always are).
        presence: whether a request must carry a token for this issuer.
    """

    issuer: str = string()
    audiences: tuple[str, ...] = repeated()
    jwks_uri: str = string()
    jwks_uri_alias: str = string(json="jwks_uri")
    jwks: str = string()
    from_headers: tuple[JwtHeader, ...] = repeated()
    from_params: tuple[str, ...] = repeated()
    output_payload_to_header: str = string()
    from_cookies: tuple[str, ...] = repeated()
    forward_original_token: bool = boolean()
    output_claim_to_headers: tuple[ClaimToHeader, ...] = repeated()
    timeout: Duration | None = optional()
    space_delimited_claims: tuple[str, ...] = repeated()
    presence: JwtPresence = enum_value(JwtPresence.OPTIONAL)

    def __attrs_post_init__(self) -> None:
        if self.jwks_uri_alias and not self.jwks_uri:
            # One protobuf field, two JSON spellings: keep it in one place (frozen, hence object.__setattr__).
            object.__setattr__(self, "jwks_uri", self.jwks_uri_alias)
            object.__setattr__(self, "jwks_uri_alias", "")


@final
@attrs.frozen
class RequestAuthentication:
    """The spec of a RequestAuthentication.

    Attributes:
        selector: the workloads it applies to; none (with no targetRef) means the whole namespace, or the
            whole mesh in the root namespace.
        target_ref: a Gateway, GatewayClass, Service or ServiceEntry to attach to (deprecated: use
            ``target_refs``).
        target_refs: the Gateways, GatewayClasses, Services or ServiceEntries to attach to.
        jwt_rules: the accepted issuers.
    """

    selector: WorkloadSelector | None = optional()
    target_ref: PolicyTargetReference | None = optional()
    target_refs: tuple[PolicyTargetReference, ...] = repeated()
    jwt_rules: tuple[JwtRule, ...] = repeated()


def validate_request_authentication(spec: RequestAuthentication, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's webhook rules for RequestAuthentication."""
    check_targets(ctx, spec.selector, spec.target_ref, spec.target_refs)
    if len(spec.jwt_rules) > MAX_JWT_RULES:
        ctx.max_items(MAX_JWT_RULES, "jwtRules")
    for index, rule in enumerate(spec.jwt_rules):
        _check_jwt_rule(ctx.at("jwtRules", index), rule)


def _check_jwt_rule(ctx: ValidationContext, rule: JwtRule) -> None:
    if ctx.has("issuer") and not rule.issuer:
        ctx.min_length(1, "issuer")
    uri_fields = [name for name in ("jwksUri", "jwks_uri") if ctx.has(name)]
    if len(uri_fields) + ctx.has("jwks") > 1:
        ctx.rule("only one of jwks or jwksUri can be set")
    for name in uri_fields:
        written = ctx.raw(name)
        _check_jwks_uri(ctx, written if isinstance(written, str) else "", name)
    if not rule.issuer and not rule.jwks_uri and not rule.jwks_uri_alias:
        ctx.error("issuer or jwksUri must be set")
    if rule.jwks:
        errors, warnings = jwks_problems(rule.jwks)
        for message in errors:
            ctx.error(message, "jwks")
        for message in warnings:
            ctx.warning(message, "jwks")
    empty_items(ctx, rule.audiences, "audiences")
    empty_items(ctx, rule.from_params, "fromParams")
    empty_items(ctx, rule.from_cookies, "fromCookies")
    empty_items(ctx, rule.space_delimited_claims, "spaceDelimitedClaims")
    if len(rule.space_delimited_claims) > MAX_SPACE_DELIMITED_CLAIMS:
        ctx.max_items(MAX_SPACE_DELIMITED_CLAIMS, "spaceDelimitedClaims")
    for index, header in enumerate(rule.from_headers):
        if not header.name:
            ctx.min_length(1, "fromHeaders", index, "name")
        else:
            _check_header_name(ctx, header.name, "fromHeaders", index, "name")
    if rule.output_payload_to_header:
        _check_header_name(ctx, rule.output_payload_to_header, "outputPayloadToHeader")
    for index, claim in enumerate(rule.output_claim_to_headers):
        here = ctx.at("outputClaimToHeaders", index)
        if not claim.claim:
            here.min_length(1, "claim")
        if not claim.header:
            here.min_length(1, "header")
        elif not _STRICT_HEADER.match(claim.header):
            here.pattern("^[-_A-Za-z0-9]+$", "header")
    _check_timeout(ctx, rule.timeout)


def _check_jwks_uri(ctx: ValidationContext, uri: str, name: str) -> None:
    if not uri:
        ctx.min_length(1, name)
        return
    if len(uri) > MAX_JWKS_URI_LENGTH:
        ctx.max_length(MAX_JWKS_URI_LENGTH, name)
    try:
        url = parse_url(uri)
    except ValueError:
        ctx.rule(_URL_SCHEME, name, json_type="string")
        return
    if url.scheme not in ("http", "https"):
        ctx.rule(_URL_SCHEME, name, json_type="string")
    elif not url.host:
        ctx.error(f"{name} {uri!r} has no host to fetch the key set from", name)
    elif url.port is not None and not 1 <= url.port <= 65535:
        ctx.error(f"{name} {uri!r}: port {url.port} must be in the range 1..65535", name)


def _check_header_name(ctx: ValidationContext, name: str, *segments: str | int) -> None:
    if any(ch in name for ch in "\x00\r\n"):
        ctx.error(f"header name {name!r} may not contain NUL, CR or LF", *segments)
    elif not _TOKEN.match(name):
        ctx.warning(f"{name!r} is not a valid HTTP header name, so no request can carry it", *segments)


def _check_timeout(ctx: ValidationContext, timeout: Duration | None) -> None:
    if timeout is None:
        return
    if timeout.nanos < 1_000_000:
        ctx.rule("must be a valid duration greater than 1ms", "timeout", json_type="string")
    else:
        check_duration(ctx, timeout, "timeout")


REQUEST_AUTHENTICATION = register_kind(
    KindSpec(
        kind="RequestAuthentication",
        group="security.istio.io",
        versions=("v1", "v1beta1"),
        spec_type=RequestAuthentication,
        validate=validate_request_authentication,
        plural="requestauthentications",
    )
)
