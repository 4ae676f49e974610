"""URL parsing as Go's ``net/url.ParseRequestURI`` does it, for WasmPlugin's ``url`` rule (private).

The CRD rule on ``url`` is CEL's ``isURL(self) ? url(self).getScheme() in [...] : isURL("http://" + self) &&
...``, and Kubernetes implements ``isURL`` with ``url.ParseRequestURI``. Python's ``urllib`` accepts far more
than Go does, so the parts of Go's parser that decide acceptance are mirrored here.
"""

from __future__ import annotations

_HEX = frozenset("0123456789abcdefABCDEF")
_USERINFO_EXTRA = frozenset("-._:~!$&'()*+,;=%@")
_HOST_ALLOWED = frozenset("!$&'()*+,;=:[]<>\"-_.~")


def url_problem(text: str) -> tuple[str, str | None]:
    """The scheme of ``text`` and why it is not a URL (``None`` when it is), as the CEL rule sees it.

    ``text`` is tried alone and then with ``http://`` in front, as the CRD rule does.
    """
    scheme, problem = parse_request_uri(text)
    if problem is None:
        return scheme, None
    scheme, second = parse_request_uri("http://" + text)
    if second is None:
        return scheme, None
    return "", problem


def parse_request_uri(raw: str) -> tuple[str, str | None]:
    """Go's ``url.ParseRequestURI``: the lower-cased scheme, and an error message or ``None``."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        return "", "invalid control character in URL"
    if not raw:
        return "", "empty url"
    if raw == "*":
        return "", None
    scheme, rest, problem = _split_scheme(raw)
    if problem:
        return "", problem
    # A query ends the path ("?" alone at the end is an empty, forced query).
    rest = rest.partition("?")[0]
    if not rest.startswith("/"):
        if scheme:
            return scheme, None  # an opaque URL such as "mailto:x"
        return "", "invalid URI for request"
    if scheme and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        problem = _authority_problem(authority)
        if problem:
            return scheme, problem
        rest = slash + path
    problem = _escape_problem(rest)
    return scheme, problem


def _split_scheme(raw: str) -> tuple[str, str, str | None]:
    for index, ch in enumerate(raw):
        if ch.isascii() and ch.isalpha():
            continue
        if ch.isascii() and (ch.isdigit() or ch in "+-."):
            if index == 0:
                return "", raw, None
            continue
        if ch == ":":
            if index == 0:
                return "", "", "missing protocol scheme"
            return raw[:index].lower(), raw[index + 1 :], None
        return "", raw, None
    return "", raw, None


def _authority_problem(authority: str) -> str | None:
    userinfo, at, host = authority.rpartition("@")
    if at:
        if not all((ch.isascii() and ch.isalnum()) or ch in _USERINFO_EXTRA for ch in userinfo):
            return "invalid userinfo"
        problem = _escape_problem(userinfo)
        if problem:
            return problem
    return _host_problem(host)


def _host_problem(host: str) -> str | None:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            return "missing ']' in host"
        if not _valid_optional_port(host[end + 1 :]):
            return f"invalid port {host[end + 1 :]!r} after host"
        return None
    colon = host.rfind(":")
    if colon >= 0 and not _valid_optional_port(host[colon:]):
        return f"invalid port {host[colon:]!r} after host"
    at = 0
    while at < len(host):
        ch = host[at]
        if ch == "%":
            if at + 2 >= len(host) or host[at + 1] not in _HEX or host[at + 2] not in _HEX:
                return f"invalid URL escape {host[at : at + 3]!r}"
            at += 3
            continue
        if ch.isascii() and not ch.isalnum() and ch not in _HOST_ALLOWED:
            return f"invalid character {ch!r} in host name"
        at += 1
    return None


def _valid_optional_port(port: str) -> bool:
    if not port:
        return True
    return port[0] == ":" and all(ch.isascii() and ch.isdigit() for ch in port[1:])


def _escape_problem(text: str) -> str | None:
    at = text.find("%")
    while at >= 0:
        if at + 2 >= len(text) or text[at + 1] not in _HEX or text[at + 2] not in _HEX:
            return f"invalid URL escape {text[at : at + 3]!r}"
        at = text.find("%", at + 3)
    return None
