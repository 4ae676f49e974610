"""The command lines of the mesh's programs: meshd, one mesh-echo and one mesh-agent per workload, the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from mesh_harness.workload import ControlPlane, Gateway, Workload

POLL_INTERVAL: Final = 0.25
"""Seconds between meshd's looks at the config directory, for ``Mesh.apply``."""


def meshd_args(control: ControlPlane, config_dir: Path, *, registry: Path, workdir: Path) -> list[str]:
    """``meshd serve`` on the control plane's address."""
    return [
        "serve",
        *("--config-dir", str(config_dir), "--registry", str(registry), "--workdir", str(workdir)),
        *("--poll-interval", str(POLL_INTERVAL)),  # a config applied is served sooner than with the default 1 s
        *("--xds-address", control.xds_address, "--ca-address", control.ca_address),
        *(
            "--ca-renewal-address",
            control.ca_renewal_address,
            "--debug-address",
            f"{control.address}:{control.debug_port}",
        ),
    ]


def echo_args(workload: Workload, calls: dict[str, tuple[int, str]]) -> list[str]:
    """``mesh-echo`` for a workload: it listens on its application address and calls through its sidecar.

    Args:
        workload: the workload.
        calls: per called service's short name, its port and host name.
    """
    args = [
        *("--service", workload.service, "--version", workload.version, "--namespace", workload.namespace),
        *("--listen", f"{workload.application}:{workload.port}"),
    ]
    for name, (port, host) in calls.items():
        args += ["--call", f"{name}=http://{workload.outbound}:{port}/,{host}", "--always-call", name]
    return args


def _control_args(control: ControlPlane, root_cert: Path, token: Path, log_level: str) -> list[str]:
    return [
        *("--xds-address", control.xds_address, "--ca-address", control.ca_address),
        *("--ca-renewal-address", control.ca_renewal_address),
        *("--root-cert", str(root_cert), "--token-file", str(token), "--log-level", log_level),
        *("--drain-duration", "0"),  # a config change is in force for the next request, on any connection
    ]


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def sidecar_args(
    workload: Workload, control: ControlPlane, *, root_cert: Path, token: Path, workdir: Path, log_level: str
) -> list[str]:
    """``mesh-agent`` for a workload's sidecar, naming its three addresses."""
    return [
        *_control_args(control, root_cert, token, log_level),
        *("--pod-name", workload.name, "--namespace", workload.namespace),
        *("--service-account", workload.service_account, "--labels", _labels(workload.labels)),
        *("--ip", workload.inbound, "--inbound-address", workload.inbound),
        *("--application-address", workload.application, "--outbound-address", workload.outbound),
        *("--workdir", str(workdir)),
    ]


def gateway_args(
    gateway: Gateway, control: ControlPlane, *, root_cert: Path, token: Path, workdir: Path, log_level: str
) -> list[str]:
    """``mesh-agent --gateway`` for the ingress gateway."""
    return [
        *_control_args(control, root_cert, token, log_level),
        *("--pod-name", gateway.name, "--namespace", gateway.namespace),
        *("--service-account", gateway.service_account, "--labels", _labels(gateway.labels)),
        *("--ip", gateway.address, "--gateway", "--workdir", str(workdir)),
    ]
