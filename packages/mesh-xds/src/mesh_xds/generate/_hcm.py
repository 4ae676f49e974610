"""The HTTP connection manager of sidecar listeners (private), set up as Istio sets it up.

Paths are normalized before routing and RBAC see them, per MeshConfig ``pathNormalization`` (the lesson
of CVE-2021-31920: ``//admin`` or ``%2F`` must not slip past a path rule):

========================== ============== ============= ==================================
normalization              normalize_path merge_slashes path_with_escaped_slashes_action
========================== ============== ============= ==================================
NONE                       false          false         KEEP_UNCHANGED
BASE, DEFAULT (unset)      true           false         KEEP_UNCHANGED
MERGE_SLASHES              true           true          KEEP_UNCHANGED
DECODE_AND_MERGE_SLASHES   true           true          UNESCAPE_AND_FORWARD
========================== ============== ============= ==================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from envoy.config.core.v3 import config_source_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from mesh_config import MeshConfig

__all__ = ["HCM_FILTER", "http_connection_manager", "http_filter", "normalization", "trailing_filters"]

HCM_FILTER: Final = "envoy.filters.network.http_connection_manager"
_SERVER_NAME: Final = "istio-envoy"
_HCM = hcm_pb2.HttpConnectionManager

_NORMALIZATION: Final = {
    "NONE": (False, False, _HCM.KEEP_UNCHANGED),
    "BASE": (True, False, _HCM.KEEP_UNCHANGED),
    "DEFAULT": (True, False, _HCM.KEEP_UNCHANGED),
    "MERGE_SLASHES": (True, True, _HCM.KEEP_UNCHANGED),
    "DECODE_AND_MERGE_SLASHES": (True, True, _HCM.UNESCAPE_AND_FORWARD),
}


def normalization(mesh: MeshConfig) -> tuple[bool, bool, int]:
    """``(normalize_path, merge_slashes, path_with_escaped_slashes_action)`` for the mesh's setting."""
    setting = mesh.path_normalization
    return _NORMALIZATION[setting.normalization.value if setting is not None else "DEFAULT"]


def http_filter(name: str, config: Any) -> Any:
    """An HttpFilter holding ``config``."""
    built = hcm_pb2.HttpFilter(name=name)
    built.typed_config.Pack(config)
    return built


def trailing_filters() -> list[Any]:
    """The filters every sidecar HCM ends with: fault and CORS (configured per route), then the router."""
    return [
        http_filter("envoy.filters.http.fault", fault_pb2.HTTPFault()),
        http_filter("envoy.filters.http.cors", cors_pb2.Cors()),
        http_filter("envoy.filters.http.router", router_pb2.Router()),
    ]


def http_connection_manager(
    mesh: MeshConfig,
    *,
    stat_prefix: str,
    http_filters: Sequence[Any],
    rds: str | None = None,
    route_config: Any = None,
    inbound: bool,
) -> Any:
    """An HttpConnectionManager with Istio's sidecar settings.

    Args:
        mesh: the mesh settings (path normalization).
        stat_prefix: e.g. ``outbound_127.0.0.1_9080``.
        http_filters: the HTTP filters, router last.
        rds: the name of a route configuration fetched over ADS.
        route_config: an inline route configuration, when ``rds`` is not given.
        inbound: an inbound (server side) manager: it records the client certificate in
            ``x-forwarded-client-cert`` and names itself ``istio-envoy``.
    """
    normalize, merge, escaped = normalization(mesh)
    manager = _HCM(
        codec_type=_HCM.AUTO,
        stat_prefix=stat_prefix,
        http_filters=list(http_filters),
        use_remote_address=wrappers_pb2.BoolValue(value=False),
        normalize_path=wrappers_pb2.BoolValue(value=normalize),
        merge_slashes=merge,
        path_with_escaped_slashes_action=escaped,
        upgrade_configs=[_HCM.UpgradeConfig(upgrade_type="websocket")],
        stream_idle_timeout=duration_pb2.Duration(),
    )
    if rds is not None:
        manager.rds.CopyFrom(
            hcm_pb2.Rds(
                route_config_name=rds,
                config_source=config_source_pb2.ConfigSource(
                    ads=config_source_pb2.AggregatedConfigSource(),
                    initial_fetch_timeout=duration_pb2.Duration(),
                    resource_api_version=config_source_pb2.V3,
                ),
            )
        )
    elif route_config is not None:
        manager.route_config.CopyFrom(route_config)
    if inbound:
        manager.forward_client_cert_details = _HCM.APPEND_FORWARD
        manager.set_current_client_cert_details.CopyFrom(
            _HCM.SetCurrentClientCertDetails(subject=wrappers_pb2.BoolValue(value=True), dns=True, uri=True)
        )
        manager.server_name = _SERVER_NAME
    return manager
