"""Blocking looks at the mesh's parts: meshd's debug pages, agents' readiness, Envoys' admin stats."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any, Final

from mesh_xds import (
    ProxyStatus,
    StatusUnavailableError,
    SyncState,
    UnknownProxyError,
    fetch_proxy_statuses,
    find_proxy,
)

_NO_PROXY: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_UNSETTLED: Final = (
    "listener_manager.total_listeners_warming",
    "listener_manager.total_listeners_draining",
    "listener_manager.total_filter_chains_draining",
    "cluster_manager.warming_clusters",
)
_STAT_LINE: Final = re.compile(r"([^:\s]+): (\d+)$")
_OK: Final = (SyncState.SYNCED, SyncState.NOT_SENT)


def http_get(url: str, *, timeout: float = 5.0) -> tuple[int, str]:
    """GET ``url`` ignoring proxy settings: the status and the body (any status); status 0 when no answer."""
    try:
        with _NO_PROXY.open(urllib.request.Request(url), timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode("utf-8", "replace")
    except (OSError, ValueError) as error:
        return 0, str(getattr(error, "reason", None) or error)


def get_json(url: str, *, timeout: float = 5.0) -> tuple[int, Any]:
    """GET ``url`` and read JSON: the status and the value (``None`` when the body is not JSON)."""
    status, body = http_get(url, timeout=timeout)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def unsettled(admin_url: str) -> int | None:
    """How many listeners, filter chains and clusters an Envoy still warms or drains; ``None`` without answer."""
    pattern = "|".join(re.escape(name) for name in _UNSETTLED)
    status, body = http_get(f"{admin_url}/stats?filter=^({pattern})$")
    if status != 200:
        return None
    values = [int(match.group(2)) for match in map(_STAT_LINE.match, body.splitlines()) if match]
    return sum(values) if len(values) == len(_UNSETTLED) else None


def unsynced(streams: Any, node_ids: Iterable[str]) -> list[str]:
    """The nodes of ``node_ids`` without an ADS stream that has ACKed everything (meshd's ``/debug/syncz``)."""
    newest: dict[str, dict[str, Any]] = {}
    for stream in streams if isinstance(streams, list) else ():
        if isinstance(stream, dict) and stream.get("service", "ads") == "ads":
            node = str(stream.get("node_id"))
            if node not in newest or int(stream.get("stream_id", 0)) > int(newest[node].get("stream_id", 0)):
                newest[node] = stream
    problems = []
    for node in node_ids:
        stream = newest.get(node)
        if stream is None:
            problems.append(f"{node}: not connected")
        elif not stream.get("synced"):
            states = ", ".join(f"{kind}={info.get('state')}" for kind, info in sorted(stream.get("types", {}).items()))
            pending = "; a push is pending" if stream.get("pending") else ""
            problems.append(f"{node}: {states}{pending}")
    return problems


def csds_problems(statuses: tuple[ProxyStatus, ...], node_ids: Iterable[str]) -> list[str]:
    """The nodes whose newest stream is not SYNCED (or NOT SENT) for every type, in meshd's CSDS."""
    problems = []
    for node in node_ids:
        try:
            status = find_proxy(statuses, node)
        except UnknownProxyError:
            problems.append(f"{node}: not in meshd's CSDS")
            continue
        behind = [f"{item.short_type}={item.state.value}" for item in status.types.values() if item.state not in _OK]
        if behind or not any(item.state is SyncState.SYNCED for item in status.types.values()):
            problems.append(f"{node}: {', '.join(behind) or 'nothing SYNCED yet'}")
    return problems


async def sync_problems(debug_url: str, xds_address: str, node_ids: list[str], admin_urls: list[str]) -> str | None:
    """Why the proxies are not all SYNCED and settled, or ``None`` when they are.

    meshd's ``/debug/syncz`` must show no push pending, its CSDS every type SYNCED or NOT SENT, and each
    Envoy's admin no listener or cluster warming and no listener or filter chain draining.
    """
    _, streams = await asyncio.to_thread(get_json, f"{debug_url}/debug/syncz")
    problems = unsynced(streams, node_ids)
    if not problems:
        try:
            statuses = await asyncio.to_thread(fetch_proxy_statuses, xds_address, contents=False)
        except StatusUnavailableError as error:
            return str(error)
        problems = csds_problems(statuses, node_ids)
    if not problems:
        counts = await asyncio.gather(*(asyncio.to_thread(unsettled, url) for url in admin_urls))
        problems = [
            f"{url}: {'no answer' if count is None else f'{count} listeners, chains or clusters warming or draining'}"
            for url, count in zip(admin_urls, counts, strict=True)
            if count != 0
        ]
    return "; ".join(problems) if problems else None
