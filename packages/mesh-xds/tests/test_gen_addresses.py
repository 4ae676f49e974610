"""addresses_from_metadata: where a sidecar's listeners bind, from MESH_*_ADDRESS node metadata."""

import pytest

from mesh_model import Proxy
from mesh_xds.generate import SidecarAddresses, addresses_from_metadata

SIDECAR = "sidecar~127.0.10.1~reviews-v1.default~default.svc.cluster.local"


def test_all_three_addresses():
    metadata = {
        "MESH_INBOUND_ADDRESS": "127.0.10.2",
        "MESH_APPLICATION_ADDRESS": "127.0.11.2",
        "MESH_OUTBOUND_ADDRESS": "127.0.12.2",
    }
    assert addresses_from_metadata(Proxy.parse(SIDECAR, metadata)) == SidecarAddresses(
        "127.0.10.2", "127.0.11.2", "127.0.12.2"
    )


def test_missing_keys_fall_back_to_the_proxy_ip():
    proxy = Proxy.parse(SIDECAR, {"MESH_APPLICATION_ADDRESS": "127.0.11.1"})
    assert addresses_from_metadata(proxy) == SidecarAddresses("127.0.10.1", "127.0.11.1", "127.0.10.1")
    proxy = Proxy.parse(SIDECAR, {"INSTANCE_IPS": "127.0.30.1", "MESH_OUTBOUND_ADDRESS": "127.0.12.1"})
    assert addresses_from_metadata(proxy) == SidecarAddresses("127.0.30.1", "127.0.30.1", "127.0.12.1")


def test_no_keys_and_gateways_mean_no_sidecar_addresses():
    assert addresses_from_metadata(Proxy.parse(SIDECAR, {})) is None
    gateway = Proxy.parse(
        "router~127.0.20.1~gw.istio-system~istio-system.svc.cluster.local", {"MESH_INBOUND_ADDRESS": "127.0.20.2"}
    )
    assert addresses_from_metadata(gateway) is None


@pytest.mark.parametrize("value", ["reviews", "127.0.0.1:80", 7, ["127.0.0.1"]])
def test_a_value_that_is_not_an_ip_is_refused(value):
    with pytest.raises(ValueError, match="MESH_INBOUND_ADDRESS"):
        addresses_from_metadata(Proxy.parse(SIDECAR, {"MESH_INBOUND_ADDRESS": value}))
