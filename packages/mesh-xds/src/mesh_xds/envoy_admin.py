"""Read what an Envoy holds from its admin interface: ``/config_dump`` and ``/clusters``.

The control plane's CSDS says what it *sent* (:mod:`mesh_xds.status_client`); the proxy's admin interface
says what the proxy *took*, static resources included. :func:`config_dump_status` reads a config dump into
the same :class:`~mesh_xds.status_client.ProxyStatus` (the node from the bootstrap, one
:class:`~mesh_xds.status_client.ProxyResource` per cluster, listener, route configuration, load assignment
and secret), so one piece of code shows both::

    dump = fetch_config_dump("http://127.0.0.1:15000")
    proxy = config_dump_status(dump)
    for resource in proxy.resources_of(CLUSTER_TYPE):
        print(resource.name, resource.version, resource.state.value)

Active resources are SYNCED, warming ones STALE, and a dynamic resource whose last update the proxy
rejected is NACKED with Envoy's error text. Private keys are redacted (Envoy redacts them itself; this does
it again for dumps that come from elsewhere).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from mesh_xds._json import redact_key_material
from mesh_xds._text import describe
from mesh_xds.node import NodeInfo
from mesh_xds.resource import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    EXTENSION_CONFIG_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    push_order,
)
from mesh_xds.status import SyncState
from mesh_xds.status_client import ProxyResource, ProxyStatus, ProxyTypeStatus, StatusUnavailableError

__all__ = ["admin_url", "config_dump_status", "fetch_cluster_statuses", "fetch_config_dump"]

_NO_PROXY: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_DUMP_PREFIX: Final = "type.googleapis.com/envoy.admin.v3."
# Per config dump type: (list field, resource field, type URL, state, static).
_SECTIONS: Final[dict[str, tuple[tuple[str, str, str, SyncState, bool], ...]]] = {
    "ClustersConfigDump": (
        ("static_clusters", "cluster", CLUSTER_TYPE, SyncState.SYNCED, True),
        ("dynamic_active_clusters", "cluster", CLUSTER_TYPE, SyncState.SYNCED, False),
        ("dynamic_warming_clusters", "cluster", CLUSTER_TYPE, SyncState.STALE, False),
    ),
    "RoutesConfigDump": (
        ("static_route_configs", "route_config", ROUTE_TYPE, SyncState.SYNCED, True),
        ("dynamic_route_configs", "route_config", ROUTE_TYPE, SyncState.SYNCED, False),
    ),
    "EndpointsConfigDump": (
        ("static_endpoint_configs", "endpoint_config", ENDPOINT_TYPE, SyncState.SYNCED, True),
        ("dynamic_endpoint_configs", "endpoint_config", ENDPOINT_TYPE, SyncState.SYNCED, False),
    ),
    "SecretsConfigDump": (
        ("static_secrets", "secret", SECRET_TYPE, SyncState.SYNCED, True),
        ("dynamic_active_secrets", "secret", SECRET_TYPE, SyncState.SYNCED, False),
        ("dynamic_warming_secrets", "secret", SECRET_TYPE, SyncState.STALE, False),
    ),
    "EcdsConfigDump": (("ecds_filters", "ecds_filter", EXTENSION_CONFIG_TYPE, SyncState.SYNCED, False),),
}
_LISTENER_STATES: Final = (("active_state", SyncState.SYNCED), ("warming_state", SyncState.STALE))


def admin_url(address: str) -> str:
    """The base URL of an admin interface given as ``host:port`` or ``http://host:port`` (no trailing ``/``).

    Raises:
        ValueError: not an http(s) URL with a host and a port.
    """
    text = address.strip()
    if "://" not in text:
        text = f"http://{text}"
    parsed = urllib.parse.urlsplit(text)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or port is None:
        raise ValueError(f"{describe(address)} is not an admin address: give host:port or http://host:port")
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"


def _get_json(url: str, path: str, timeout: float) -> Any:
    base = admin_url(url)
    try:
        with _NO_PROXY.open(base + path, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        with error:
            raise StatusUnavailableError(
                f"the Envoy admin interface at {base} answered {path} with {error.code}"
            ) from None
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise StatusUnavailableError(f"cannot reach the Envoy admin interface at {base}: {reason}") from None
    try:
        return json.loads(body)
    except ValueError:
        raise StatusUnavailableError(f"the answer of {base}{path} is not JSON: is it an Envoy admin port?") from None


def fetch_config_dump(url: str, *, include_endpoints: bool = True, timeout: float = 10.0) -> dict[str, Any]:
    """GET ``/config_dump`` (with the load assignments, ``include_eds``) from an Envoy admin interface.

    Blocking: call it from a worker thread in asynchronous code.

    Raises:
        ValueError: ``url`` is not an admin address.
        StatusUnavailableError: the admin interface cannot be reached, or did not answer with JSON.
    """
    dump = _get_json(url, "/config_dump?include_eds" if include_endpoints else "/config_dump", timeout)
    if not isinstance(dump, dict) or not isinstance(dump.get("configs"), list):
        raise StatusUnavailableError(f"the answer of {admin_url(url)}/config_dump is not an Envoy config dump")
    return dump


def fetch_cluster_statuses(url: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """GET ``/clusters?format=json``: every cluster's hosts with their health, from an Envoy admin interface.

    Raises:
        ValueError: ``url`` is not an admin address.
        StatusUnavailableError: the admin interface cannot be reached, or did not answer with JSON.
    """
    answer = _get_json(url, "/clusters?format=json", timeout)
    statuses = answer.get("cluster_statuses", []) if isinstance(answer, dict) else None
    if not isinstance(statuses, list):
        raise StatusUnavailableError(f"the answer of {admin_url(url)}/clusters is not Envoy's cluster list")
    return [status for status in statuses if isinstance(status, dict)]


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _name(type_url: str, config: Mapping[str, Any], entry: Mapping[str, Any]) -> str:
    key = "cluster_name" if type_url == ENDPOINT_TYPE else "name"
    return str(config.get(key) or entry.get("name") or "")


def _resource(
    type_url: str, entry: Mapping[str, Any], config: object, state: SyncState, *, static: bool
) -> ProxyResource | None:
    if not isinstance(config, Mapping):
        return None
    body: dict[str, Any] = redact_key_material({key: value for key, value in config.items() if key != "@type"})
    error = entry.get("error_state")
    details = str(error.get("details", "")) if isinstance(error, Mapping) else ""
    return ProxyResource(
        type_url=type_url,
        name=_name(type_url, body, entry),
        version=str(entry.get("version_info", "")),
        state=SyncState.NACKED if details else state,
        last_updated=_time(entry.get("last_updated")),
        error=details,
        config=body,
        static=static,
    )


def _listeners(dump: Mapping[str, Any]) -> Iterable[ProxyResource | None]:
    for entry in _entries(dump.get("static_listeners")):
        yield _resource(LISTENER_TYPE, entry, entry.get("listener"), SyncState.SYNCED, static=True)
    for entry in _entries(dump.get("dynamic_listeners")):
        error = entry.get("error_state")
        for field, state in _LISTENER_STATES:
            holder = entry.get(field)
            if isinstance(holder, Mapping):
                with_error = {**holder, "error_state": error} if error and field == "active_state" else holder
                yield _resource(LISTENER_TYPE, with_error, holder.get("listener"), state, static=False)
                break
        else:
            if isinstance(error, Mapping):  # rejected before anything was taken
                failed = error.get("failed_configuration")
                yield _resource(LISTENER_TYPE, {**entry, "error_state": error}, failed, SyncState.NACKED, static=False)


def _section(kind: str, dump: Mapping[str, Any]) -> Iterable[ProxyResource | None]:
    if kind == "ListenersConfigDump":
        yield from _listeners(dump)
        return
    for field, inner, type_url, state, static in _SECTIONS.get(kind, ()):
        for entry in _entries(dump.get(field)):
            yield _resource(type_url, entry, entry.get(inner), state, static=static)


def _type_status(type_url: str, resources: list[ProxyResource]) -> ProxyTypeStatus:
    states = {resource.state for resource in resources}
    state = next((s for s in (SyncState.NACKED, SyncState.STALE) if s in states), SyncState.SYNCED)
    versions = {resource.version for resource in resources if not resource.static}
    nacked = [resource for resource in resources if resource.error]
    times = [resource.last_updated for resource in resources if resource.last_updated is not None]
    return ProxyTypeStatus(
        type_url=type_url,
        state=state,
        version=versions.pop() if len(versions) == 1 else "",
        resources=len(resources),
        last_updated=max(times, default=None),
        nack=nacked[0].error if nacked else "",
        nack_version=nacked[0].version if nacked else "",
    )


def config_dump_status(dump: Mapping[str, Any]) -> ProxyStatus:
    """Read an Envoy config dump (the JSON of ``/config_dump``) into a :class:`ProxyStatus`.

    Raises:
        ValueError: ``dump`` is not a config dump (no ``configs`` list).
    """
    configs = dump.get("configs") if isinstance(dump, Mapping) else None
    if not isinstance(configs, list):
        raise ValueError("not an Envoy config dump: it has no 'configs' list")
    node = NodeInfo("(unknown node)")
    found: list[ProxyResource] = []
    for config in configs:
        if not isinstance(config, Mapping):
            continue
        kind = str(config.get("@type", "")).removeprefix(_DUMP_PREFIX)
        if kind == "BootstrapConfigDump":
            node = _node(_map(_map(config.get("bootstrap")).get("node"))) or node
        found.extend(resource for resource in _section(kind, config) if resource is not None)
    by_type: dict[str, list[ProxyResource]] = {}
    for resource in found:
        by_type.setdefault(resource.type_url, []).append(resource)
    order = push_order(by_type)
    resources = tuple(
        resource for url in order for resource in sorted(by_type[url], key=lambda r: (not r.static, r.name))
    )
    types = {url: _type_status(url, by_type[url]) for url in order}
    return ProxyStatus(node=node, client_scope="admin", types=types, resources=resources)


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _entries(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _node(node: Mapping[str, Any]) -> NodeInfo | None:
    if not node.get("id"):
        return None
    locality = _map(node.get("locality"))
    parts = (locality.get("region", ""), locality.get("zone", ""), locality.get("sub_zone", ""))
    version = str(node.get("user_agent_version", ""))
    build = _map(_map(node.get("user_agent_build_version")).get("version"))
    if not version and build:
        version = f"{build.get('major_number', 0)}.{build.get('minor_number', 0)}.{build.get('patch', 0)}"
    agent = " ".join(part for part in (str(node.get("user_agent_name", "")), version) if part)
    locality_text = "/".join(map(str, parts)).rstrip("/")
    return NodeInfo(str(node["id"]), str(node.get("cluster", "")), _map(node.get("metadata")), locality_text, agent)
