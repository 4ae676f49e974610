"""Golden files: the whole config generated for each proxy of a set of scenarios, and Envoy's verdict on it.

Each directory of ``golden/`` is a scenario:

* ``config.yaml``: Istio config, as a user writes it;
* ``registry.yaml``: the services and workloads, in meshd's registry-file format
  (:func:`mesh_config.load_registry_text`);
* ``mesh.yaml`` (optional): the MeshConfig, Istio's defaults otherwise;
* ``proxies.yaml``: the proxies to generate for: ``name`` (the golden file's), ``node`` id, ``metadata``,
  ``locality`` and, for sidecars, ``addresses`` (``inbound``, ``application``, ``outbound``);
* ``expected/<name>.json``: every resource of the proxy's snapshot as JSON (proto field names, sorted
  keys), grouped by type URL and sorted by name.

For each proxy, the test generates its snapshot, compares it with the golden file (a unified diff on
mismatch), and has ``envoy --mode validate`` check a static rendering of the whole of it.
``MESH_UPDATE_GOLDEN=1`` rewrites the golden files instead of comparing.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from envoy.config.listener.v3 import listener_pb2
from google.protobuf import json_format

from mesh_config import (
    MeshConfig,
    PushContext,
    ServiceEntryRegistry,
    default_mesh_config,
    load_mesh_config,
    load_registry_text,
    load_text,
)
from mesh_model import AggregateRegistry, Proxy
from mesh_xds import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE, Snapshot, unpack
from mesh_xds.generate import STATIC_CLUSTERS, GenerationContext, ProxyGenerator, SidecarAddresses
from mesh_xds.testing.envoy import validate_config
from mesh_xds.testing.render import static_bootstrap

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("MESH_UPDATE_GOLDEN", "") not in ("", "0")
_PROXY_FIELDS = frozenset({"name", "node", "metadata", "locality", "addresses"})
_FIRST_API_PORT = 20000  # where proxyless gRPC listeners are bound for validation (validate mode binds nothing)


@attrs.frozen
class _ProxySpec:
    name: str
    node: str
    metadata: dict[str, Any]
    locality: str | None
    addresses: SidecarAddresses | None


@attrs.frozen
class _Scenario:
    push: PushContext
    registry: AggregateRegistry
    mesh: MeshConfig
    proxies: dict[str, _ProxySpec]


def _read_proxies(directory: Path) -> dict[str, _ProxySpec]:
    document = yaml.safe_load((directory / "proxies.yaml").read_text()) or {}
    proxies: dict[str, _ProxySpec] = {}
    for entry in document.get("proxies") or ():
        unknown = set(entry) - _PROXY_FIELDS
        assert not unknown, f"{directory.name}/proxies.yaml: unknown fields {sorted(unknown)} in {entry}"
        assert entry["name"] not in proxies, f"{directory.name}/proxies.yaml: proxy {entry['name']!r} twice"
        addresses = entry.get("addresses")
        proxies[entry["name"]] = _ProxySpec(
            name=entry["name"],
            node=entry["node"],
            metadata=entry.get("metadata") or {},
            locality=entry.get("locality"),
            addresses=SidecarAddresses(**addresses) if addresses else None,
        )
    return proxies


def _cases() -> list[Any]:
    return [
        pytest.param(directory.name, name, id=f"{directory.name}/{name}")
        for directory in sorted(path for path in GOLDEN.iterdir() if (path / "proxies.yaml").is_file())
        for name in _read_proxies(directory)
    ]


@functools.cache
def _scenario(name: str) -> _Scenario:
    directory = GOLDEN / name
    config = load_text(
        (directory / "config.yaml").read_text(), source=f"{name}/config.yaml", default_namespace="default"
    )
    resources = config.raise_for_errors().resources
    registry = load_registry_text((directory / "registry.yaml").read_text(), source=f"{name}/registry.yaml")
    mesh = default_mesh_config()
    if (directory / "mesh.yaml").is_file():
        loaded = load_mesh_config((directory / "mesh.yaml").read_text()).raise_for_errors().config
        assert loaded is not None
        mesh = loaded
    entries = ServiceEntryRegistry(resources, default_export_to=mesh.default_service_export_to)
    services = AggregateRegistry([registry.raise_for_errors().to_registry(), entries], name=name)
    push = PushContext.build(resources, services, root_namespace=mesh.root_namespace)
    return _Scenario(push, services, mesh, _read_proxies(directory))


def _context(scenario: _Scenario, spec: _ProxySpec) -> GenerationContext:
    proxy = Proxy.parse(spec.node, spec.metadata, locality=spec.locality)
    return GenerationContext(proxy, scenario.push, scenario.registry, scenario.mesh, spec.addresses)


def _messages(snapshot: Snapshot, type_url: str) -> list[Any]:
    resources = snapshot.resources(type_url)
    return [unpack(resources[name]) for name in sorted(resources.names)]


def _as_json(snapshot: Snapshot) -> str:
    document = {
        type_url: [json_format.MessageToDict(message, preserving_proto_field_name=True) for message in messages]
        for type_url in snapshot.type_urls
        if (messages := _messages(snapshot, type_url))
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _bound(listener: Any, port: int) -> Any:
    """A proxyless gRPC api listener as one Envoy binds, so that validation checks its manager and routes."""
    if not listener.HasField("api_listener"):
        return listener
    out = listener_pb2.Listener(name=listener.name)
    out.address.socket_address.address = "127.0.0.1"
    out.address.socket_address.port_value = port
    manager = out.filter_chains.add().filters.add(name="envoy.filters.network.http_connection_manager")
    manager.typed_config.CopyFrom(listener.api_listener.api_listener)
    return out


def _diff(expected: str, actual: str, path: Path) -> str:
    lines = difflib.unified_diff(
        expected.splitlines(keepends=True),
        actual.splitlines(keepends=True),
        fromfile=f"{path.relative_to(GOLDEN)} (golden)",
        tofile=f"{path.relative_to(GOLDEN)} (generated)",
    )
    return "".join(lines)


@pytest.mark.parametrize(("scenario_name", "proxy_name"), _cases())
def test_generated_config_matches_the_golden_file_and_envoy_accepts_it(scenario_name: str, proxy_name: str) -> None:
    scenario = _scenario(scenario_name)
    spec = scenario.proxies[proxy_name]
    snapshot = ProxyGenerator().generate(_context(scenario, spec))
    # Credentials come from a secret provider, which scenarios do not have: only they may be missing.
    missing = snapshot.missing(static_clusters=STATIC_CLUSTERS)
    assert [reference for reference in missing if reference.type_url != SECRET_TYPE] == []

    actual = _as_json(snapshot)
    path = GOLDEN / scenario_name / "expected" / f"{proxy_name}.json"
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual)
    assert path.is_file(), f"{path} is missing: run with MESH_UPDATE_GOLDEN=1 to write it"
    expected = path.read_text()
    if actual != expected:
        pytest.fail(
            f"generated config differs from the golden file (MESH_UPDATE_GOLDEN=1 rewrites it once the change is"
            f" checked):\n{_diff(expected, actual, path)}",
            pytrace=False,
        )

    listeners = [
        _bound(listener, _FIRST_API_PORT + index) for index, listener in enumerate(_messages(snapshot, LISTENER_TYPE))
    ]
    config = static_bootstrap(
        clusters=_messages(snapshot, CLUSTER_TYPE),
        load_assignments=_messages(snapshot, ENDPOINT_TYPE),
        listeners=listeners,
        routes=_messages(snapshot, ROUTE_TYPE),
        stub_clusters=STATIC_CLUSTERS,
        node_id=spec.node,
    )
    result = validate_config(config)
    assert result.ok, f"Envoy rejects the config of {scenario_name}/{proxy_name}: {result.error}"


def test_every_scenario_has_proxies_and_no_stray_golden_file() -> None:
    scenarios = sorted(path for path in GOLDEN.iterdir() if path.is_dir())
    assert scenarios, f"no scenario in {GOLDEN}"
    for directory in scenarios:
        proxies = _read_proxies(directory)
        assert proxies, f"{directory.name}/proxies.yaml names no proxy"
        files = {path.stem for path in (directory / "expected").glob("*.json")}
        assert files <= set(proxies), f"{directory.name}/expected has files of no proxy: {sorted(files - set(proxies))}"
