from datetime import timedelta

import pytest

from mesh_ca import CaConfigError, SigningPolicy, TtlError


def test_defaults_are_istios():
    policy = SigningPolicy()
    assert policy.default_ttl == timedelta(hours=24)
    assert policy.max_ttl == timedelta(days=90)
    assert policy.backdate == timedelta(minutes=2)


def test_the_lifetime_is_the_request_or_the_default():
    policy = SigningPolicy(default_ttl=timedelta(hours=12))
    assert policy.lifetime(None) == timedelta(hours=12)
    assert policy.lifetime(timedelta(hours=1)) == timedelta(hours=1)
    assert policy.lifetime(timedelta(days=90)) == timedelta(days=90)


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [
        (timedelta(days=90, seconds=1), "over the maximum of 90 days"),
        (timedelta(0), "must be positive"),
        (timedelta(seconds=-5), "must be positive"),
        (timedelta(milliseconds=500), "must be positive"),
        (3600, "must be a timedelta"),
    ],
)
def test_unusable_requested_lifetimes_are_ttl_errors(ttl, expected):
    with pytest.raises(TtlError, match=expected):
        SigningPolicy().lifetime(ttl)


def test_the_maximum_is_configurable():
    policy = SigningPolicy(default_ttl=timedelta(hours=1), max_ttl=timedelta(hours=2))
    assert policy.lifetime(timedelta(hours=2)) == timedelta(hours=2)
    with pytest.raises(TtlError, match=r"TTL of 3h is over the maximum of 2h"):
        policy.lifetime(timedelta(hours=3))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"default_ttl": timedelta(days=91)}, "default_ttl .* is over max_ttl"),
        ({"max_ttl": timedelta(hours=1)}, "default_ttl .* is over max_ttl"),
        ({"default_ttl": timedelta(0)}, "default_ttl must be at least one second"),
        ({"max_ttl": 90}, "max_ttl must be a timedelta"),
        ({"backdate": timedelta(minutes=-1)}, "backdate must be between 0 and 1 day"),
        ({"backdate": timedelta(days=2)}, "backdate must be between 0 and 1 day"),
    ],
)
def test_inconsistent_policies_are_refused(options, expected):
    with pytest.raises(CaConfigError, match=expected):
        SigningPolicy(**options)


def test_backdating_may_be_turned_off():
    assert SigningPolicy(backdate=timedelta(0)).backdate == timedelta(0)
