"""security.istio.io kinds, with every message of their APIs.

PeerAuthentication, AuthorizationPolicy and RequestAuthentication.
"""

from mesh_config.security.authorization_policy import (
    AUTHORIZATION_POLICY,
    AuthorizationAction,
    AuthorizationCondition,
    AuthorizationOperation,
    AuthorizationPolicy,
    AuthorizationProvider,
    AuthorizationRule,
    AuthorizationSource,
    RuleFrom,
    RuleTo,
    validate_authorization_policy,
)
from mesh_config.security.peer_authentication import (
    PEER_AUTHENTICATION,
    MutualTls,
    MutualTlsMode,
    PeerAuthentication,
    validate_peer_authentication,
)
from mesh_config.security.request_authentication import (
    REQUEST_AUTHENTICATION,
    ClaimToHeader,
    JwtHeader,
    JwtPresence,
    JwtRule,
    RequestAuthentication,
    validate_request_authentication,
)

__all__ = [
    "AUTHORIZATION_POLICY",
    "PEER_AUTHENTICATION",
    "REQUEST_AUTHENTICATION",
    "AuthorizationAction",
    "AuthorizationCondition",
    "AuthorizationOperation",
    "AuthorizationPolicy",
    "AuthorizationProvider",
    "AuthorizationRule",
    "AuthorizationSource",
    "ClaimToHeader",
    "JwtHeader",
    "JwtPresence",
    "JwtRule",
    "MutualTls",
    "MutualTlsMode",
    "PeerAuthentication",
    "RequestAuthentication",
    "RuleFrom",
    "RuleTo",
    "validate_authorization_policy",
    "validate_peer_authentication",
    "validate_request_authentication",
]
