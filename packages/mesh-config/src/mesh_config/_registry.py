"""Imports every kind module, so that each registers itself (private)."""

from mesh_config.extensions import telemetry, traffic_extension, wasm_plugin  # noqa: F401
from mesh_config.networking import (  # noqa: F401
    destination_rule,
    envoy_filter,
    gateway,
    proxy_config,
    service_entry,
    sidecar,
    virtual_service,
    workload_entry,
    workload_group,
)
from mesh_config.security import authorization_policy, peer_authentication, request_authentication  # noqa: F401
