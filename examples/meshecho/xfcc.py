"""The ``x-forwarded-client-cert`` header, in which Envoy tells an app who called it over mTLS."""

from __future__ import annotations

import dataclasses
from typing import final


@final
@dataclasses.dataclass(frozen=True)
class ForwardedClientCert:
    """One element of the header: one hop's view of the client certificate it saw.

    Attributes:
        by: the identity of the proxy's own certificate (``By=``), ``spiffe://...`` in a mesh.
        uri: the URI SAN of the client's certificate (``URI=``): the caller's SPIFFE identity.
        hash: the SHA-256 of the client's certificate, hex-encoded (``Hash=``).
        subject: the subject of the client's certificate (``Subject=``); empty for SPIFFE certificates.
        dns: the DNS SANs of the client's certificate (``DNS=``, which may repeat).
    """

    by: str | None = None
    uri: str | None = None
    hash: str | None = None
    subject: str | None = None
    dns: tuple[str, ...] = ()


def parse_xfcc(header: str) -> tuple[ForwardedClientCert, ...]:
    r"""Parse an ``x-forwarded-client-cert`` value, the earliest hop first (Envoy appends its own element last).

    The format is Envoy's: elements separated by ``,``, ``Key=value`` pairs separated by ``;``, values that hold
    ``,``, ``;`` or ``=`` in double quotes with ``\"`` for a quote. Keys are case-insensitive; keys other than
    ``By``, ``URI``, ``Hash``, ``Subject`` and ``DNS`` (such as ``Cert`` and ``Chain``) are skipped. An empty
    header has no elements.

    Raises:
        ValueError: the header is not in that format; the message says where.
    """
    elements = []
    for element in _split(header, ","):
        if not element.strip():
            continue
        fields: dict[str, str] = {}
        dns: list[str] = []
        for pair in _split(element, ";"):
            key, equals, raw = pair.strip().partition("=")
            if not equals or not key:
                raise ValueError(f"x-forwarded-client-cert: expected Key=value, got {pair.strip()!r}")
            value = _unquote(raw)
            if key.lower() == "dns":
                dns.append(value)
            elif key.lower() in {"by", "uri", "hash", "subject"}:
                fields[key.lower()] = value
        elements.append(ForwardedClientCert(**fields, dns=tuple(dns)))
    return tuple(elements)


def _split(text: str, separator: str) -> list[str]:
    parts, start, quoted, escaped = [], 0, False, False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(text[start:index])
            start = index + 1
    if quoted:
        raise ValueError(f"x-forwarded-client-cert: unterminated quote in {text.strip()!r}")
    parts.append(text[start:])
    return parts


def _unquote(value: str) -> str:
    if not value.startswith('"'):
        return value
    if len(value) < 2 or not value.endswith('"'):
        raise ValueError(f"x-forwarded-client-cert: text after the closing quote in {value!r}")
    return value[1:-1].replace('\\"', '"')
