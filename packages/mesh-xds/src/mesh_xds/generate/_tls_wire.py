"""Istio mTLS contexts written as protobuf wire bytes around a template (private).

The Istio mTLS context of an outbound cluster is the same for every cluster but for its SAN matchers and its
SNI. :class:`SanContext` keeps a serialized ``UpstreamTlsContext`` template cut where the SAN matchers go,
and writes a context for a list of names by putting their matchers there and the nesting lengths in front:
the bytes ``SerializeToString(deterministic=True)`` gives for the template with the matchers added.

Field numbers, from ``envoy.extensions.transport_sockets.tls.v3``: ``UpstreamTlsContext``:
common_tls_context 1, sni 2. ``CommonTlsContext``: combined_validation_context 8.
``CombinedCertificateValidationContext``: default_validation_context 1. ``CertificateValidationContext``:
match_typed_subject_alt_names 15. ``SubjectAltNameMatcher``: san_type 1, matcher 2. ``StringMatcher``:
exact 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, final

from mesh_xds import _wire

__all__ = ["SanContext"]

_COMMON: Final = 1
_COMBINED: Final = 8
_DEFAULT: Final = 1
_SANS: Final = 15
_LAST: Final = 2**29


def _cut(payload: bytes, number: int) -> tuple[bytes, bytes, bytes]:
    """A message's fields before field ``number``, that field's payload (empty if absent), the fields after it.

    Raises:
        ValueError: the field is repeated.
    """
    fields = _wire.split_fields(payload)
    found = [value for field, _, value in fields if field == number]
    if len(found) > 1:
        raise ValueError(f"field {number} is repeated in a context template")
    before = b"".join(whole for field, whole, _ in fields if field < number)
    after = b"".join(whole for field, whole, _ in fields if field > number)
    return before, found[0] if found else b"", after


@final
class SanContext:
    """Writes serialized UpstreamTlsContexts that are a template with exact SAN matchers added.

    Args:
        template: the context: a common TLS context whose combined validation context has a default
            validation context without SAN matchers, and no other field than the common TLS context.
        san_type: the ``SubjectAltNameMatcher.san_type`` of a name.

    Raises:
        ValueError: the template is not of that form.
    """

    __slots__ = ("_combined_after", "_common_after", "_common_before", "_default_after", "_default_before", "_type")

    def __init__(self, template: Any, san_type: Callable[[str], int]) -> None:
        fields = _wire.split_fields(template.SerializeToString(deterministic=True))
        if [number for number, _, _ in fields] != [_COMMON]:
            raise ValueError("an Istio mTLS context template holds a common TLS context and nothing else")
        self._common_before, combined, self._common_after = _cut(fields[0][2], _COMBINED)
        combined_before, default, self._combined_after = _cut(combined, _DEFAULT)
        if combined_before:
            raise ValueError("the default validation context is the first field of the combined one")
        self._default_before, sans, self._default_after = _cut(default, _SANS)
        if sans:
            raise ValueError("an Istio mTLS context template has no SAN matchers")
        self._type = san_type

    def context(self, sans: Sequence[str]) -> bytes:
        """The serialized context whose default validation context matches exactly these names, in order."""
        san_type = self._type
        matchers = []
        for name in sans:
            exact = name.encode()
            matcher = _wire.header(1, len(exact)) + exact  # StringMatcher.exact
            kind = san_type(name)
            body = b"".join((b"\x08" + _wire.varint(kind) if kind else b"", _wire.header(2, len(matcher)), matcher))
            matchers.append(_wire.header(_SANS, len(body)) + body)
        default = b"".join((self._default_before, *matchers, self._default_after))
        combined = b"".join((_wire.header(_DEFAULT, len(default)), default, self._combined_after))
        common = b"".join((self._common_before, _wire.header(_COMBINED, len(combined)), combined, self._common_after))
        return _wire.header(_COMMON, len(common)) + common
