"""Host names and host wildcards with Istio's matching rules.

A :class:`Hostname` is a fully qualified name (``reviews.default.svc.cluster.local``), an IP address, or a
wildcard: ``*`` alone, or ``*`` followed by a suffix (``*.example.com``). Names are normalised the way DNS
treats them: lower case, without a trailing dot.

Matching follows Istio's ``host.Name``:

* ``covers``: every name the other one stands for is also matched by this one
  (``*.example.com`` covers ``a.example.com``, ``a.b.example.com`` and ``*.b.example.com``, never
  ``example.com``);
* ``matches``: the two overlap, in either direction;
* :func:`most_specific_match` picks the rule for a host: an exact name first, then the longest wildcard.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import final

import attrs

from mesh_model._text import describe
from mesh_model.errors import InvalidHostError

__all__ = [
    "DEFAULT_DOMAIN_SUFFIX",
    "Hostname",
    "most_specific_first",
    "most_specific_match",
    "resolve_short_name",
]

DEFAULT_DOMAIN_SUFFIX = "cluster.local"
"""The DNS suffix of Kubernetes-style service names, as in Istio's default mesh."""

_MAX_LENGTH = 255
_MAX_LABEL = 63
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
# Istio accepts "*", "*.suffix" and a first label such as "*foo" or "*-foo".
_WILDCARD_LABEL = re.compile(r"\*(-?[a-z0-9]([-a-z0-9]*[a-z0-9])?)?\Z")


def _is_ip(text: str) -> bool:
    # An IPv6 zone ("fe80::1%eth0") may hold any character, white space included: it is no host.
    if "%" in text:
        return False
    # Most hosts are names: an IPv4 address is digits and dots, and an IPv6 one has a colon, so parsing (and its
    # exception, for names such as ``reviews-2``) is skipped.
    if ":" not in text and not text.replace(".", "").isdigit():
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _validate(text: str, original: str) -> None:
    """Check a lower-case host without a trailing dot; messages quote ``original``, what the user wrote."""
    if not text:
        raise InvalidHostError(f"host {describe(original)} is empty")
    if len(text) > _MAX_LENGTH:
        raise InvalidHostError(f"host {describe(original)} is longer than {_MAX_LENGTH} characters")
    if text == "*" or _is_ip(text):
        return
    _check_dns_name(text, original)


def _check_dns_name(text: str, original: str) -> None:
    labels = text.split(".")
    for index, label in enumerate(labels):
        if index == 0 and label.startswith("*"):
            if not _WILDCARD_LABEL.match(label) or len(label) > _MAX_LABEL:
                raise InvalidHostError(f"host {describe(original)}: malformed wildcard label {describe(label)}")
            continue
        if not label:
            raise InvalidHostError(f"host {describe(original)}: empty label (two dots, or a leading dot)")
        if "*" in label:
            raise InvalidHostError(
                f"host {describe(original)}: a wildcard may only stand at the start of the first label"
            )
        if len(label) > _MAX_LABEL:
            raise InvalidHostError(
                f"host {describe(original)}: label {describe(label)} is longer than {_MAX_LABEL} characters"
            )
        if not _LABEL.match(label):
            raise InvalidHostError(
                f"host {describe(original)}: label {describe(label)} must be lower-case letters, digits and "
                "'-', starting and ending with a letter or digit"
            )
    if len(labels) > 1 and labels[-1].isdigit():
        raise InvalidHostError(f"host {describe(original)}: the top-level domain may not be all digits")


@final
@attrs.frozen(order=False, repr=False, cache_hash=True)
class Hostname:
    """A host name, IP address or host wildcard, normalised and validated.

    Build one with :meth:`parse`; the constructor expects an already normalised value and validates it.

    Attributes:
        value: the normalised text, e.g. ``"reviews.default.svc.cluster.local"`` or ``"*.example.com"``.
    """

    value: str

    def __attrs_post_init__(self) -> None:
        text = self.value
        if not isinstance(text, str):
            raise InvalidHostError(f"host must be a string, not {type(text).__name__}")
        if text != text.lower() or text.endswith(".") or (_is_ip(text) and str(ipaddress.ip_address(text)) != text):
            raise InvalidHostError(f"host {describe(text)} is not normalised; use Hostname.parse")
        _validate(text, text)

    @classmethod
    def parse(cls, text: str) -> Hostname:
        """Parse a host name, IP address or wildcard, accepting upper case and one trailing dot.

        Raises:
            InvalidHostError: the text is empty, too long, or not a DNS name, IP or wildcard.
        """
        if not isinstance(text, str):
            raise InvalidHostError(f"host must be a string, not {type(text).__name__}")
        value = text.strip()
        if value != text:
            raise InvalidHostError(f"host {describe(text)} has leading or trailing white space")
        if value.endswith(".") and value != ".":
            value = value[:-1]
        if not value.isascii():
            raise InvalidHostError(f"host {describe(text)} has non-ASCII characters; use its punycode form")
        value = str(ipaddress.ip_address(value)) if _is_ip(value) else value.lower()
        _validate(value, text)
        return cls(value)

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"Hostname({self.value!r})"

    @property
    def is_wildcard(self) -> bool:
        """True for ``*`` and ``*<suffix>`` names."""
        return self.value.startswith("*")

    @property
    def is_ip(self) -> bool:
        """True when the host is an IPv4 or IPv6 address."""
        return _is_ip(self.value)

    @property
    def suffix(self) -> str:
        """What a wildcard requires a name to end with (``".example.com"`` for ``*.example.com``).

        For a plain name this is the whole name.
        """
        return self.value[1:] if self.is_wildcard else self.value

    def covers(self, other: Hostname) -> bool:
        """True when every name ``other`` stands for is matched by this host.

        ``*.example.com`` covers ``a.example.com`` and ``*.a.example.com`` but not ``example.com``; a plain
        name covers only itself; ``*`` covers everything.
        """
        if not self.is_wildcard:
            return self.value == other.value
        if other.is_wildcard and len(other.value) < len(self.value):
            return False
        return other.suffix.endswith(self.suffix)

    def matches(self, other: Hostname) -> bool:
        """True when the two hosts overlap: one of them covers the other."""
        return self.covers(other) or other.covers(self)

    def specificity(self) -> tuple[int, int, str]:
        """A sort key: plain names before wildcards, longer before shorter, then alphabetical.

        This is Istio's ``host.MoreSpecific`` order; ``sorted(hosts, key=Hostname.specificity)`` lists the
        most specific host first.
        """
        return (1 if self.is_wildcard else 0, -len(self.value), self.value)


def most_specific_first(hosts: Iterable[Hostname]) -> list[Hostname]:
    """Return ``hosts`` sorted most specific first (see :meth:`Hostname.specificity`)."""
    return sorted(hosts, key=Hostname.specificity)


def most_specific_match(host: Hostname, candidates: Iterable[Hostname]) -> Hostname | None:
    """Return the candidate that applies to ``host``: an exact name first, else the longest wildcard.

    A candidate applies when it covers ``host``. Returns ``None`` when none does.
    """
    best: Hostname | None = None
    for candidate in candidates:
        if not candidate.covers(host):
            continue
        if best is None or candidate.specificity() < best.specificity():
            best = candidate
    return best


def resolve_short_name(name: str, namespace: str, *, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX) -> Hostname:
    """Resolve a host as Istio does for names written in config.

    A name without a dot is a Kubernetes short name: ``reviews`` in namespace ``default`` becomes
    ``reviews.default.svc.cluster.local``. Names with a dot, IP addresses and ``*`` are kept as they are.

    Raises:
        InvalidHostError: the name, or the name it resolves to, is not a valid host.
    """
    parsed = Hostname.parse(name)
    # "reviews." is fully qualified too: its trailing dot is what makes it so.
    if parsed.value == "*" or parsed.is_ip or "." in name:
        return parsed
    if not namespace:
        raise InvalidHostError(f"short host {describe(name)} needs a namespace to resolve against")
    suffix = f".svc.{domain_suffix}" if domain_suffix else ""
    return Hostname.parse(f"{parsed.value}.{namespace}{suffix}")
