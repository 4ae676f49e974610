"""Host names skip address parsing when they cannot be addresses: the answer stays that of ``ipaddress``."""

import ipaddress

import pytest

from mesh_model import Hostname
from mesh_model.host import _is_ip

_TEXTS = (
    *("1.2.3.4", "255.255.255.255", "01.2.3.4", "1.2.3", "1.2.3.4.", "1.2.3.a", "0x1.2.3.4", "1"),
    *("::1", "fe80::1", "2001:db8::1", "abc:", "reviews", "reviews.default.svc.cluster.local", "x1", ""),
    *("\u0661.\u0662.\u0663.\u0664", "1.2.3.\u0664"),  # digits of another script
)


@pytest.mark.parametrize("text", _TEXTS)
def test_the_ip_check_agrees_with_ipaddress(text):
    try:
        ipaddress.ip_address(text)
        expected = True
    except ValueError:
        expected = False
    assert _is_ip(text) is expected


def test_names_and_addresses_still_parse_as_before():
    assert Hostname.parse("Reviews.Default.svc.cluster.local").value == "reviews.default.svc.cluster.local"
    assert Hostname.parse("2001:DB8::1").is_ip
    assert not Hostname.parse("a1.example.com").is_ip
