"""JWT key sources (private): the ``jwksUri`` URL and inline ``jwks`` key sets of a RequestAuthentication.

``parse_url`` follows Go's ``net/url`` (which both the CRD's CEL ``url()`` and Istio's ``ParseJwksURI``
use) closely enough to accept and refuse the same URLs. ``jwks_problems`` follows what Istio's JWK parser
(lestrrat-go/jwx ``jwk.Parse``) accepts: a key set ``{"keys": [...]}`` or a single key, each key of a known
``kty`` with its required members in base64url.
"""

from __future__ import annotations

import json
import re
from typing import Any, final

import attrs

__all__ = ["HttpUrl", "jwks_problems", "parse_url"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$&'()*+,;=:[]<>\"%")
_HEX = frozenset("0123456789abcdefABCDEF")
_BASE64 = re.compile(r"[A-Za-z0-9\-_+/]*=*\Z")


@final
@attrs.frozen
class HttpUrl:
    """The parts of a URL that matter for fetching a JWKS: scheme (lower case), host and port."""

    scheme: str
    host: str
    port: int | None


def parse_url(text: str) -> HttpUrl:
    """Parse a URL as Go's ``url.Parse`` does.

    Raises:
        ValueError: the text is not a URL Go would parse; the message says why.
    """
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise ValueError("it holds a control character")
    rest = text.partition("#")[0]
    if rest.startswith(":"):
        raise ValueError("it has no scheme")
    match = _SCHEME.match(rest)
    scheme = ""
    if match:
        scheme = match.group()[:-1].lower()
        rest = rest[match.end() :]
    rest = rest.partition("?")[0]
    if not rest.startswith("//"):
        return HttpUrl(scheme, "", None)
    authority = rest[2:].partition("/")[0]
    host_port = authority.rpartition("@")[2]
    host, port = _split_host_port(host_port)
    return HttpUrl(scheme, host, port)


def _split_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("its IPv6 host has no closing ']'")
        host, port_text = text[1:end], text[end + 1 :]
        if port_text and not port_text.startswith(":"):
            raise ValueError(f"{port_text!r} follows the IPv6 host")
    else:
        colon = text.rfind(":")
        host, port_text = (text, "") if colon < 0 else (text[:colon], text[colon:])
        _check_host_chars(host)
    digits = port_text[1:]
    if digits and not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"its port {digits!r} is not a number")
    return host, int(digits) if digits else None


def _check_host_chars(host: str) -> None:
    for index, ch in enumerate(host):
        if ch == "%" and not (len(host) > index + 2 and host[index + 1] in _HEX and host[index + 2] in _HEX):
            raise ValueError(f"its host {host!r} has a bad %-escape")
        if ord(ch) < 0x80 and ch not in _HOST_CHARS:
            raise ValueError(f"its host {host!r} holds the character {ch!r}")


# Members a key of each type must have, and the members that make it a private key.
_REQUIRED = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x"), "oct": ("k",)}
_PRIVATE = {"RSA": ("d", "p", "q", "dp", "dq", "qi"), "EC": ("d",), "OKP": ("d",), "oct": ()}
_CURVES = {"EC": ("P-256", "P-384", "P-521"), "OKP": ("Ed25519", "X25519")}
_STRING_MEMBERS = ("kid", "alg", "use", "x5u", "x5t", "x5t#S256")


def jwks_problems(text: str) -> tuple[list[str], list[str]]:
    """Check an inline JSON Web Key Set; returns (errors, warnings)."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        return [f"jwks is not valid JSON: {error}"], []
    if not isinstance(data, dict):
        return ['jwks must be a JSON object: a key set {"keys": [...]} or a single key'], []
    if "keys" not in data:
        return _key_problems(data, "jwks")
    keys = data["keys"]
    if not isinstance(keys, list):
        return ['jwks "keys" must be a list of keys'], []
    if not keys:
        return [], ["jwks has no keys, so no token can be verified with it"]
    errors: list[str] = []
    warnings: list[str] = []
    for index, key in enumerate(keys):
        found_errors, found_warnings = _key_problems(key, f"jwks key {index}")
        errors += found_errors
        warnings += found_warnings
    return errors, warnings


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _key_problems(key: object, where: str) -> tuple[list[str], list[str]]:
    if not isinstance(key, dict):
        return [f"{where} must be a JSON object"], []
    kty = key.get("kty")
    if not isinstance(kty, str) or not kty:
        return [f'{where} has no "kty" (key type)'], []
    if kty not in _REQUIRED:
        return [f'{where} has key type "kty": {kty!r}; supported: RSA, EC, OKP, oct'], []
    errors: list[str] = []
    for member in _REQUIRED[kty]:
        value = key.get(member)
        if not isinstance(value, str) or not value:
            errors.append(f'{where} ({kty}) needs the member "{member}"')
        elif member != "crv" and not _is_base64(value):
            errors.append(f'{where}: "{member}" is not base64url: {value[:40]!r}')
    curve = key.get("crv")
    if kty in _CURVES and isinstance(curve, str) and curve and curve not in _CURVES[kty]:
        errors.append(f'{where} has curve "crv": {curve!r}; supported: {", ".join(_CURVES[kty])}')
    for member in _STRING_MEMBERS:
        if member in key and not isinstance(key[member], str):
            errors.append(f'{where}: "{member}" must be a string')
    for member in ("key_ops", "x5c"):
        value = key.get(member)
        if value is not None and not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            errors.append(f'{where}: "{member}" must be a list of strings')
    private = [member for member in _PRIVATE[kty] if member in key]
    warnings = []
    if private:
        names = ", ".join(f'"{member}"' for member in private)
        warnings.append(f"{where} holds private key material ({names}); a JWKS should publish public keys only")
    return errors, warnings


def _is_base64(value: str) -> bool:
    return bool(_BASE64.match(value)) and len(value.rstrip("=")) % 4 != 1
