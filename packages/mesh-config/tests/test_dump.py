"""Writing objects back: to_dict and to_yaml, and the round trip to equal objects."""

# ruff: noqa: RUF009  (API message fields are declared with the typed field helpers, as in the kinds)

import contextlib
import enum
import math

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh_config import (
    Duration,
    FrozenDict,
    KindSpec,
    ObjectMeta,
    Resource,
    kinds,
    load_text,
    register_kind,
    to_dict,
    to_yaml,
)
from mesh_config.common import WorkloadSelector
from mesh_config.security.peer_authentication import MutualTls, MutualTlsMode, PeerAuthentication
from mesh_config.types import Int64, JsonValue, UInt32, enum_value, integer, mapping, number, optional, repeated, string

ROUND_TRIP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def round_trip(resources):
    text = to_yaml(resources)
    result = load_text(text, source="dumped.yaml")
    assert result.ok, (text, [d.format() for d in result.diagnostics])
    return result.resources


# ---------------------------------------------------------------- PeerAuthentication

LABEL_NAME = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?", fullmatch=True)
LABEL_VALUE = st.one_of(st.just(""), LABEL_NAME)
DNS_LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
MODES = st.sampled_from(MutualTlsMode)


@st.composite
def peer_authentications(draw):
    labels = draw(st.dictionaries(LABEL_NAME, LABEL_VALUE, max_size=4))
    selector = WorkloadSelector(match_labels=FrozenDict(labels)) if labels or draw(st.booleans()) else None
    ports = (
        draw(st.dictionaries(st.integers(1, 65535), MODES.map(lambda mode: MutualTls(mode=mode)), max_size=4))
        if labels
        else {}
    )
    mtls = draw(st.none() | MODES.map(lambda mode: MutualTls(mode=mode)))
    metadata = ObjectMeta(
        name=draw(DNS_LABEL),
        namespace=draw(DNS_LABEL),
        labels=FrozenDict(draw(st.dictionaries(LABEL_NAME, LABEL_VALUE, max_size=3))),
        annotations=FrozenDict(draw(st.dictionaries(LABEL_NAME, st.text(max_size=40), max_size=3))),
        resource_version=draw(st.sampled_from(["", "1", "42"])),
        generation=draw(st.integers(0, 2**63 - 1)),
    )
    version = draw(st.sampled_from(["security.istio.io/v1", "security.istio.io/v1beta1"]))
    spec = PeerAuthentication(selector=selector, mtls=mtls, port_level_mtls=FrozenDict(ports))
    return Resource(version, "PeerAuthentication", metadata, spec)


@ROUND_TRIP
@given(peer_authentications())
def test_peer_authentication_round_trip(resource):
    assert round_trip(resource) == (resource,)


@settings(ROUND_TRIP, max_examples=50)
@given(st.lists(peer_authentications(), min_size=1, max_size=4))
def test_several_objects_round_trip_as_one_stream(resources):
    assert round_trip(resources) == tuple(resources)


def test_to_dict_is_kubernetes_json_without_unset_fields():
    spec = PeerAuthentication(
        selector=WorkloadSelector(match_labels=FrozenDict({"app": "web"})),
        port_level_mtls=FrozenDict({8080: MutualTls(mode=MutualTlsMode.DISABLE)}),
    )
    resource = Resource("security.istio.io/v1", "PeerAuthentication", ObjectMeta(name="a", namespace="shop"), spec)
    assert to_dict(resource) == {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "a", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}},
    }
    assert to_yaml(resource).startswith("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n")


def test_a_loaded_object_dumps_to_what_was_written():
    text = (
        "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata:\n  name: a\n  namespace: shop\n"
        "spec:\n  selector:\n    matchLabels:\n      app: web\n  mtls:\n    mode: STRICT\n  portLevelMtls:\n"
        "    '8080':\n      mode: DISABLE\nstatus:\n  conditions:\n  - type: Ready\n"
    )
    assert to_yaml(load_text(text).resources) == text


# ---------------------------------------------------------------- every field type, on a kind of the test's own


class Level(enum.Enum):
    UNSET = "UNSET"
    LOW = "LOW"
    HIGH = "HIGH"


@attrs.frozen
class Step:
    name: str = string()
    delay: Duration | None = optional()
    level: Level = enum_value(Level.UNSET)


@attrs.frozen
class Plan:
    steps: tuple[Step, ...] = repeated()
    count: Int64 = integer()
    ratio: float = number()
    retries: UInt32 | None = optional()
    by_port: FrozenDict[UInt32, Step] = mapping()
    tags: tuple[str, ...] = repeated()
    extra: JsonValue | None = optional()


PLAN = KindSpec(kind="TestPlan", group="dump.mesh.example", versions=("v1",), spec_type=Plan)


@contextlib.contextmanager
def registered(spec):
    key = (spec.group, spec.kind)
    register_kind(spec)
    try:
        yield
    finally:
        kinds._KINDS.pop(key, None)


@pytest.fixture(autouse=True, scope="module")
def plan_kind():
    with registered(PLAN):
        yield


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=10), children, max_size=3).map(FrozenDict),
    max_leaves=20,
)
STEPS = st.builds(
    Step,
    name=st.text(max_size=30),
    delay=st.none() | st.integers(-(10**18), 10**18).map(Duration),
    level=st.sampled_from(Level),
)
PLANS = st.builds(
    Plan,
    steps=st.lists(STEPS, max_size=3).map(tuple),
    count=st.integers(-(2**63), 2**63 - 1),
    ratio=st.floats(allow_nan=False),
    retries=st.none() | st.integers(0, 2**32 - 1),
    by_port=st.dictionaries(st.integers(0, 2**32 - 1), STEPS, max_size=3).map(FrozenDict),
    tags=st.lists(st.text(max_size=20), max_size=3).map(tuple),
    extra=st.none() | JSON,
)


@ROUND_TRIP
@given(PLANS, st.none() | JSON)
def test_every_field_type_round_trips(plan, status):
    resource = Resource("dump.mesh.example/v1", "TestPlan", ObjectMeta(name="p", namespace="ns"), plan, status)
    (loaded,) = round_trip(resource)
    assert loaded == resource
    if isinstance(plan.ratio, float) and math.isinf(plan.ratio):
        assert ".inf" in to_yaml(resource).lower()


def test_durations_print_in_protobuf_json_form():
    step = Step(delay=Duration.parse("1h30m"))
    resource = Resource("dump.mesh.example/v1", "TestPlan", ObjectMeta(name="p"), Plan(steps=(step,)))
    assert to_dict(resource)["spec"] == {"steps": [{"delay": "5400s"}]}
    assert str(Duration.parse("1.5s")) == "1.5s"
    assert str(Duration.parse("100ms")) == "0.1s"
    assert str(Duration.parse("-2s")) == "-2s"
