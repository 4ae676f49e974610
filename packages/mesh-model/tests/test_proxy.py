import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_model import (
    InterceptionMode,
    InvalidProxyError,
    InvalidSpiffeIdError,
    Labels,
    Locality,
    NodeMetadata,
    NodeType,
    Proxy,
    SpiffeId,
)

NODE = "sidecar~10.1.1.1~reviews-v1-7f9c.default~default.svc.cluster.local"


def raises(fragment: str):
    return pytest.raises(InvalidProxyError, match=re.escape(fragment))


def message_of(call, *args, **kwargs) -> str:
    with pytest.raises(InvalidProxyError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


# ---------------------------------------------------------------- node id


def test_parse_reads_the_four_parts_of_the_node_id():
    proxy = Proxy.parse(NODE)
    assert proxy.type is NodeType.SIDECAR
    assert proxy.ip_addresses == ("10.1.1.1",)
    assert proxy.id == "reviews-v1-7f9c.default"
    assert proxy.dns_domain == "default.svc.cluster.local"
    assert proxy.metadata == NodeMetadata()
    assert proxy.locality == Locality()
    assert not proxy.is_gateway


@pytest.mark.parametrize("node_type", list(NodeType))
def test_every_node_type_is_understood(node_type):
    proxy = Proxy.parse(f"{node_type.value}~10.0.0.1~gw-1.istio-system~istio-system.svc.cluster.local")
    assert proxy.type is node_type
    assert proxy.is_gateway == (node_type is NodeType.ROUTER)


@pytest.mark.parametrize(
    ("node_id", "parts"),
    [
        ("", 1),
        ("sidecar", 1),
        ("sidecar~10.1.1.1", 2),
        ("sidecar~10.1.1.1~pod.ns", 3),
        ("sidecar~10.1.1.1~pod.ns~ns.svc.cluster.local~extra", 5),
    ],
)
def test_a_node_id_needs_exactly_four_parts(node_id, parts):
    with raises(f"has {parts} '~'-separated parts; expected 4"):
        Proxy.parse(node_id)


@pytest.mark.parametrize("type_text", ["gateway", "Sidecar", "SIDECAR", ""])
def test_unknown_node_types_are_refused(type_text):
    with raises(f"type {type_text!r} is not one of sidecar, router, waypoint, ztunnel"):
        Proxy.parse(f"{type_text}~10.1.1.1~pod.ns~ns.svc.cluster.local")


@pytest.mark.parametrize("ip", ["not-an-ip", "10.1.1", "10.1.1.256", "", "::g"])
def test_a_bad_ip_is_refused_without_instance_ips(ip):
    with raises(f"{ip!r} is not an IP address"):
        Proxy.parse(f"sidecar~{ip}~pod.ns~ns.svc.cluster.local")


def test_instance_ips_replace_a_bad_or_good_node_id_ip():
    metadata = {"INSTANCE_IPS": "10.2.2.2, 2001:DB8:0:0::1 ,"}
    for ip in ("bogus", "10.1.1.1"):
        proxy = Proxy.parse(f"sidecar~{ip}~pod.ns~ns.svc.cluster.local", metadata)
        assert proxy.ip_addresses == ("10.2.2.2", "2001:db8::1")
        assert proxy.node_id == "sidecar~10.2.2.2~pod.ns~ns.svc.cluster.local"


def test_the_node_id_ip_is_normalised():
    proxy = Proxy.parse("sidecar~2001:DB8::0:1~pod.ns~ns.svc.cluster.local")
    assert proxy.ip_addresses == ("2001:db8::1",)


def test_an_empty_id_is_refused():
    with raises("the id part is empty"):
        Proxy.parse("sidecar~10.1.1.1~~ns.svc.cluster.local")


def test_a_huge_node_id_is_refused_with_a_short_message():
    node_id = f"sidecar~10.1.1.1~{'p' * 100_000}~ns.svc.cluster.local"
    with pytest.raises(InvalidProxyError, match="longer than 4096 characters") as caught:
        Proxy.parse(node_id)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("node_id", [None, 42, b"sidecar~10.1.1.1~pod.ns~ns", ["sidecar"]])
def test_a_node_id_that_is_not_a_string_is_refused(node_id):
    with raises(f"node id must be a string, not {type(node_id).__name__}"):
        Proxy.parse(node_id)


def test_node_id_round_trips():
    assert Proxy.parse(NODE).node_id == NODE


# ---------------------------------------------------------------- metadata


def test_metadata_fields_are_read():
    metadata = {
        "NAMESPACE": "bookinfo",
        "LABELS": {"app": "reviews", "version": "v1"},
        "SERVICE_ACCOUNT": "bookinfo-reviews",
        "CLUSTER_ID": "Kubernetes",
        "ISTIO_VERSION": "1.24.2",
        "GENERATOR": "grpc",
        "INTERCEPTION_MODE": "tproxy",
        "NETWORK": "network-1",
        "WORKLOAD_NAME": "reviews-v1",
        "MESH_ID": "cluster.local",
        "CUSTOM_KEY": {"nested": [1, 2]},
    }
    meta = Proxy.parse(NODE, metadata).metadata
    assert meta.namespace == "bookinfo"
    assert meta.labels == Labels({"app": "reviews", "version": "v1"})
    assert meta.service_account == "bookinfo-reviews"
    assert meta.cluster_id == "Kubernetes"
    assert meta.istio_version == (1, 24, 2)
    assert meta.generator == "grpc"
    assert meta.interception_mode is InterceptionMode.TPROXY
    assert meta.network == "network-1"
    assert meta.workload_name == "reviews-v1"
    assert meta.mesh_id == "cluster.local"
    assert meta.raw["CUSTOM_KEY"] == {"nested": [1, 2]}
    assert meta.raw["NAMESPACE"] == "bookinfo"


def test_raw_metadata_is_read_only_and_detached_from_the_input():
    metadata = {"CUSTOM": "x"}
    meta = NodeMetadata.parse(metadata)
    metadata["CUSTOM"] = "changed"
    assert meta.raw["CUSTOM"] == "x"
    with pytest.raises(TypeError):
        meta.raw["CUSTOM"] = "y"


def test_null_metadata_values_count_as_absent():
    meta = NodeMetadata.parse({"NAMESPACE": None, "LABELS": None, "ISTIO_VERSION": None})
    assert (meta.namespace, meta.labels, meta.istio_version) == ("", Labels(), None)


@pytest.mark.parametrize(
    ("text", "version"),
    [("1.24.2", (1, 24, 2)), ("1.24", (1, 24, 0)), ("1.32-dev", (1, 32, 0)), ("2", (2, 0, 0)), ("", None)],
)
def test_istio_versions(text, version):
    assert NodeMetadata.parse({"ISTIO_VERSION": text}).istio_version == version


@pytest.mark.parametrize("text", ["latest", "1.x", "1.2.3.4", "v1.24", "-dev", "1." + "9" * 5000, "\u0661.\u0662"])
def test_bad_istio_versions_are_refused(text):
    message = message_of(NodeMetadata.parse, {"ISTIO_VERSION": text})
    assert "ISTIO_VERSION" in message
    assert repr(text)[:30] in message


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("REDIRECT", InterceptionMode.REDIRECT),
        ("redirect", InterceptionMode.REDIRECT),
        ("TProxy", InterceptionMode.TPROXY),
        ("none", InterceptionMode.NONE),
        ("", InterceptionMode.REDIRECT),
    ],
)
def test_interception_mode_ignores_case(text, mode):
    assert NodeMetadata.parse({"INTERCEPTION_MODE": text}).interception_mode is mode


def test_interception_mode_defaults_to_redirect():
    assert NodeMetadata.parse({}).interception_mode is InterceptionMode.REDIRECT


@pytest.mark.parametrize("text", ["BYPASS", "redir", "red\u0131rect"])
def test_bad_interception_modes_are_refused(text):
    with raises(f"INTERCEPTION_MODE: {text!r} is not one of REDIRECT, TPROXY, NONE"):
        NodeMetadata.parse({"INTERCEPTION_MODE": text})


@pytest.mark.parametrize("text", ["10.0.0.1,nope", "10.0.0.300", "fe80::zz"])
def test_bad_instance_ips_are_refused(text):
    bad = next(part for part in text.split(",") if not _is_ip(part))
    with raises(f"INSTANCE_IPS: {bad!r} is not an IP address"):
        Proxy.parse(NODE, {"INSTANCE_IPS": text})


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("metadata", [["NAMESPACE"], "NAMESPACE=default", 7])
def test_metadata_must_be_a_mapping(metadata):
    with raises(f"node metadata must be an object, not {type(metadata).__name__}"):
        Proxy.parse(NODE, metadata)


@pytest.mark.parametrize("labels", [["app"], "app=reviews", 3])
def test_labels_must_be_an_object(labels):
    with raises(f"LABELS: expected an object of strings, got {labels!r}"):
        Proxy.parse(NODE, {"LABELS": labels})


@pytest.mark.parametrize(
    ("labels", "offender"), [({"app": 3}, "app"), ({"bad key!": "x"}, "bad key!"), ({"app": "-x-"}, "-x-")]
)
def test_invalid_labels_are_refused(labels, offender):
    message = message_of(Proxy.parse, NODE, {"LABELS": labels})
    assert "LABELS" in message
    assert repr(offender) in message


@pytest.mark.parametrize("key", ["SERVICE_ACCOUNT", "NAMESPACE", "CLUSTER_ID", "GENERATOR", "INSTANCE_IPS"])
@pytest.mark.parametrize("value", [5, True, ["a"], {"a": "b"}])
def test_string_fields_must_be_strings(key, value):
    with raises(f"node metadata {key}: expected a string, got {value!r}"):
        Proxy.parse(NODE, {key: value})


@pytest.mark.parametrize("key", ["SERVICE_ACCOUNT", "LABELS"])
def test_values_nested_too_deeply_to_print_are_still_refused_cleanly(key):
    deep: list = []
    for _ in range(50_000):
        deep = [deep]
    with raises(f"node metadata {key}: expected"):
        Proxy.parse(NODE, {key: deep})


# ---------------------------------------------------------------- namespace, identity, locality


@pytest.mark.parametrize(
    ("node_id", "metadata", "namespace"),
    [
        (NODE, {"NAMESPACE": "from-metadata"}, "from-metadata"),
        ("sidecar~10.1.1.1~pod.from-id~from-domain.svc.cluster.local", {}, "from-domain"),
        ("sidecar~10.1.1.1~pod.from-id~cluster.local", {}, "from-id"),
        ("sidecar~10.1.1.1~pod.from-id.extra~", {}, "from-id"),
        ("sidecar~10.1.1.1~pod~", {}, ""),
    ],
)
def test_namespace_fallback_order(node_id, metadata, namespace):
    assert Proxy.parse(node_id, metadata).namespace == namespace


def test_identity_uses_the_service_account_or_default():
    proxy = Proxy.parse(NODE, {"SERVICE_ACCOUNT": "bookinfo-reviews"})
    assert proxy.identity("cluster.local") == SpiffeId("cluster.local", "default", "bookinfo-reviews")
    assert str(Proxy.parse(NODE).identity("example.org")) == "spiffe://example.org/ns/default/sa/default"


def test_identity_without_a_namespace_fails():
    with pytest.raises(InvalidSpiffeIdError, match="namespace is empty"):
        Proxy.parse("sidecar~10.1.1.1~pod~").identity("cluster.local")


def test_locality_given_as_string_or_value():
    expected = Locality("us-east1", "us-east1-b", "rack7")
    assert Proxy.parse(NODE, locality="us-east1/us-east1-b/rack7").locality == expected
    assert Proxy.parse(NODE, locality=expected).locality == expected
    assert Proxy.parse(NODE, locality="").locality == Locality()


@pytest.mark.parametrize("locality", ["a/b/c/d", "a//c", "a b", "x" * 2000])
def test_bad_locality_strings_are_refused(locality):
    with raises("node locality"):
        Proxy.parse(NODE, locality=locality)


@pytest.mark.parametrize("locality", [5, ["us-east1"], {"region": "us-east1"}])
def test_locality_of_another_type_is_refused(locality):
    with raises(f"node locality must be a Locality or a region/zone/subzone string, not {locality!r}"):
        Proxy.parse(NODE, locality=locality)


def test_proxies_are_values():
    first = Proxy.parse(NODE, {"LABELS": {"app": "a"}})
    second = Proxy.parse(NODE, {"LABELS": {"app": "a"}, "EXTRA": 1})
    assert first == second
    assert hash(first) == hash(second)
    assert first != Proxy.parse(NODE)


# ---------------------------------------------------------------- properties

_part = st.text(st.characters(exclude_characters="~", exclude_categories=["Cs"]), max_size=60)


@given(
    node_type=st.sampled_from(NodeType),
    ip=st.ip_addresses().map(str),
    proxy_id=_part.filter(bool),
    domain=_part,
)
def test_node_id_round_trips_for_any_valid_parts(node_type, ip, proxy_id, domain):
    node_id = f"{node_type.value}~{ip}~{proxy_id}~{domain}"
    proxy = Proxy.parse(node_id)
    assert proxy.node_id == node_id
    assert (proxy.type, proxy.ip_addresses, proxy.id, proxy.dns_domain) == (node_type, (ip,), proxy_id, domain)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)
_known_keys = st.sampled_from(
    [
        "NAMESPACE",
        "LABELS",
        "SERVICE_ACCOUNT",
        "CLUSTER_ID",
        "ISTIO_VERSION",
        "GENERATOR",
        "INTERCEPTION_MODE",
        "INSTANCE_IPS",
        "NETWORK",
        "WORKLOAD_NAME",
        "MESH_ID",
    ]
)
_metadata = st.one_of(st.dictionaries(_known_keys | st.text(), _json, max_size=6), _json)
_node_ids = st.one_of(
    st.text(),
    st.lists(st.text(max_size=12), max_size=6).map("~".join),
    st.tuples(st.sampled_from(["sidecar", "router", "waypoint", "ztunnel", "x"]), st.text(), st.text(), st.text()).map(
        "~".join
    ),
)


@given(node_id=_node_ids, metadata=_metadata, locality=st.none() | st.text())
def test_parse_succeeds_or_raises_invalid_proxy_error(node_id, metadata, locality):
    try:
        proxy = Proxy.parse(node_id, metadata, locality=locality)
    except InvalidProxyError:
        return
    assert isinstance(proxy.metadata, NodeMetadata)
    assert proxy.node_id.split("~")[2] == proxy.id
