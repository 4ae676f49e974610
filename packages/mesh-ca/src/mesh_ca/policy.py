"""The signing policy: how long the certificates the CA issues live.

Istio's defaults: a workload certificate lives 24 hours unless the request asks otherwise
(``DEFAULT_WORKLOAD_CERT_TTL``), a request for more than 90 days is refused (``MAX_WORKLOAD_CERT_TTL``), and
``NotBefore`` is set two minutes in the past so that a peer whose clock is a little behind still accepts a
fresh certificate (``ClockSkewGracePeriod``).

Example::

    from datetime import timedelta
    from mesh_ca import CertificateAuthority, SigningPolicy

    policy = SigningPolicy(default_ttl=timedelta(hours=12), max_ttl=timedelta(days=7))
    authority = CertificateAuthority.self_signed(None, policy=policy)
"""

from __future__ import annotations

from datetime import timedelta
from typing import final

import attrs

from mesh_ca._text import describe, duration
from mesh_ca.errors import CaConfigError, TtlError

__all__ = ["SigningPolicy"]

_ONE_SECOND = timedelta(seconds=1)
_MAX_BACKDATE = timedelta(days=1)


def _positive_duration(instance: SigningPolicy, attribute: attrs.Attribute[timedelta], value: object) -> None:
    if not isinstance(value, timedelta):
        raise CaConfigError(f"signing policy {attribute.name} must be a timedelta, not {describe(value)}")
    if value < _ONE_SECOND:
        raise CaConfigError(f"signing policy {attribute.name} must be at least one second, not {duration(value)}")


def _backdate(instance: SigningPolicy, attribute: attrs.Attribute[timedelta], value: object) -> None:
    if not isinstance(value, timedelta):
        raise CaConfigError(f"signing policy backdate must be a timedelta, not {describe(value)}")
    if not timedelta(0) <= value <= _MAX_BACKDATE:
        raise CaConfigError(f"signing policy backdate must be between 0 and 1 day, not {duration(value)}")


@final
@attrs.frozen(kw_only=True)
class SigningPolicy:
    """How the CA sets the validity of the certificates it issues.

    Attributes:
        default_ttl: the lifetime of a certificate whose request names none (24 hours).
        max_ttl: the longest lifetime a request may ask for (90 days); longer requests are refused.
        backdate: how far in the past ``NotBefore`` is set, for peers whose clocks run behind (2 minutes,
            Istio's clock skew grace period).

    Raises:
        CaConfigError: a value is not a ``timedelta``, is under one second (``backdate`` may be zero, and at
            most a day), or ``default_ttl`` is over ``max_ttl``.
    """

    default_ttl: timedelta = attrs.field(default=timedelta(hours=24), validator=_positive_duration)
    max_ttl: timedelta = attrs.field(default=timedelta(days=90), validator=_positive_duration)
    backdate: timedelta = attrs.field(default=timedelta(minutes=2), validator=_backdate)

    def __attrs_post_init__(self) -> None:
        if self.default_ttl > self.max_ttl:
            raise CaConfigError(
                f"signing policy default_ttl ({duration(self.default_ttl)}) is over max_ttl ({duration(self.max_ttl)})"
            )

    def lifetime(self, ttl: timedelta | None) -> timedelta:
        """The lifetime to give a certificate whose request asked for ``ttl`` (``None``: the default).

        Raises:
            TtlError: ``ttl`` is not a ``timedelta``, is under one second, or is over :attr:`max_ttl`.
        """
        if ttl is None:
            return self.default_ttl
        if not isinstance(ttl, timedelta):
            raise TtlError(f"requested TTL must be a timedelta, not {describe(ttl)}")
        if ttl < _ONE_SECOND:
            raise TtlError(f"requested TTL must be positive (at least one second), not {duration(ttl)}")
        if ttl > self.max_ttl:
            raise TtlError(f"requested TTL of {duration(ttl)} is over the maximum of {duration(self.max_ttl)}")
        return ttl
