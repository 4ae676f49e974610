"""When a workload certificate is renewed, and how long to wait before retrying a failed request (private)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Final, final

import attrs

from mesh_ca._text import describe
from mesh_ca.errors import CaConfigError

_RANDOM: Final = random.Random()

MIN_DELAY: Final = 0.1
"""The shortest wait between two requests, so that a certificate that is already due never causes a busy loop."""


def _ratio(instance: RenewalPolicy, attribute: attrs.Attribute[float], value: object) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise CaConfigError(f"renewal policy {attribute.name} must be a number in [0, 1), not {describe(value)}")


def _positive(instance: RenewalPolicy, attribute: attrs.Attribute[timedelta], value: object) -> None:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise CaConfigError(f"renewal policy {attribute.name} must be a positive timedelta, not {describe(value)}")


@final
@attrs.frozen(kw_only=True)
class RenewalPolicy:
    """When a :class:`~mesh_ca.CertificateClient` renews its certificate, and how it retries.

    Istio's node agent renews when half of the certificate's lifetime is left
    (``SECRET_GRACE_PERIOD_RATIO`` 0.5), give or take a random 1% (``SECRET_GRACE_PERIOD_RATIO_JITTER``), so
    that workloads started together do not all renew at the same moment. The lifetime counts from when the
    certificate arrived, not from its ``NotBefore``, which the CA sets a little in the past.

    Attributes:
        grace_ratio: the share of the lifetime left when the certificate is renewed.
        grace_jitter: the most the ratio varies, up or down, at random.
        retry_initial: the first wait after a failed request; it doubles after each failure.
        retry_max: the longest wait between two attempts.
        call_timeout: how long one request to the CA may take.

    Raises:
        CaConfigError: a ratio outside [0, 1), ratio and jitter adding up to 1 or more, or a duration that
            is not positive.
    """

    grace_ratio: float = attrs.field(default=0.5, validator=_ratio)
    grace_jitter: float = attrs.field(default=0.01, validator=_ratio)
    retry_initial: timedelta = attrs.field(default=timedelta(seconds=1), validator=_positive)
    retry_max: timedelta = attrs.field(default=timedelta(seconds=30), validator=_positive)
    call_timeout: timedelta = attrs.field(default=timedelta(seconds=10), validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.grace_ratio + self.grace_jitter >= 1.0 or self.grace_ratio - self.grace_jitter < 0.0:
            raise CaConfigError(
                f"renewal policy grace_ratio {self.grace_ratio} with jitter {self.grace_jitter} must stay within [0, 1)"
            )
        if self.retry_max < self.retry_initial:
            raise CaConfigError("renewal policy retry_max must not be shorter than retry_initial")

    def renewal_time(self, *, issued: datetime, not_after: datetime, rng: random.Random | None = None) -> datetime:
        """When to renew a certificate that arrived at ``issued`` and expires at ``not_after``."""
        chooser = rng if rng is not None else _RANDOM
        ratio = self.grace_ratio + chooser.uniform(-self.grace_jitter, self.grace_jitter)
        lifetime = max(not_after - issued, timedelta(0))
        return not_after - lifetime * ratio

    def retry_delay(self, failures: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` failed attempts in a row (exponential, with jitter)."""
        chooser = rng if rng is not None else _RANDOM
        ceiling = self.retry_max.total_seconds()
        base = min(ceiling, self.retry_initial.total_seconds() * 2.0 ** min(max(failures - 1, 0), 32))
        return max(MIN_DELAY, base * chooser.uniform(0.5, 1.0))
