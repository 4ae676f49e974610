"""Where each running part of a harness mesh is: its loopback addresses, its node id and its URLs."""

from __future__ import annotations

from typing import Final, final

import attrs

__all__ = ["ADMIN_PORT", "STATUS_PORT", "ControlPlane", "Gateway", "Workload"]

ADMIN_PORT: Final = 15000
"""Envoy's admin port, on the proxy's own address."""
STATUS_PORT: Final = 15020
"""The agent's readiness port (``/healthz/ready``), on the proxy's own address."""


def _url(address: str, port: int) -> str:
    return f"http://{address}:{port}"


@final
@attrs.frozen
class Workload:
    """One version of one service: an echo app, its mesh-agent and its Envoy sidecar, on three addresses.

    Attributes:
        name: the workload (pod) name, ``<service>-<version>``.
        service: the service it belongs to.
        version: its version (the ``version`` label).
        namespace: its namespace.
        service_account: its service account: it runs as ``spiffe://cluster.local/ns/<ns>/sa/<account>``.
        port: the service's port (the same on all three addresses).
        inbound: where other sidecars reach it: its Envoy's inbound listener (and admin, readiness, stats).
        application: where its app listens.
        outbound: where its Envoy's outbound listeners bind: the app calls other services there.
        calls: the services its app calls on every request (their short names).
    """

    name: str
    service: str
    version: str
    namespace: str
    service_account: str
    port: int
    inbound: str
    application: str
    outbound: str
    calls: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """``<name>.<namespace>``: unique in a mesh (its agent's directory and its logs are named so)."""
        return f"{self.name}.{self.namespace}"

    @property
    def labels(self) -> dict[str, str]:
        """Its labels: ``app`` and ``version``."""
        return {"app": self.service, "version": self.version}

    @property
    def identity(self) -> str:
        """Its SPIFFE identity."""
        return f"spiffe://cluster.local/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def principal(self) -> str:
        """Its identity as an AuthorizationPolicy names it: ``cluster.local/ns/<ns>/sa/<account>``."""
        return self.identity.removeprefix("spiffe://")

    @property
    def node_id(self) -> str:
        """The node id its Envoy presents to meshd."""
        return f"sidecar~{self.inbound}~{self.name}.{self.namespace}~{self.namespace}.svc.cluster.local"

    @property
    def admin_url(self) -> str:
        """Its Envoy's admin interface."""
        return _url(self.inbound, ADMIN_PORT)

    @property
    def status_url(self) -> str:
        """Its agent's readiness endpoint."""
        return f"{_url(self.inbound, STATUS_PORT)}/healthz/ready"

    @property
    def app_url(self) -> str:
        """Its app, straight (bypassing the sidecar)."""
        return _url(self.application, self.port)


@final
@attrs.frozen
class Gateway:
    """The ingress gateway: a mesh-agent running Envoy as a router, in ``istio-system``.

    Attributes:
        name: its pod name.
        namespace: its namespace.
        address: the address its listener, admin and readiness bind.
        port: the port its HTTP listener serves (every Host).
        service_account: its service account.
    """

    name: str
    namespace: str
    address: str
    port: int
    service_account: str = "istio-ingressgateway-service-account"

    @property
    def key(self) -> str:
        """``<name>.<namespace>``: its agent's directory and its logs are named so."""
        return f"{self.name}.{self.namespace}"

    @property
    def labels(self) -> dict[str, str]:
        """Its labels: ``istio: ingressgateway`` (which its Gateway selects) and ``app``."""
        return {"istio": "ingressgateway", "app": "istio-ingressgateway"}

    @property
    def url(self) -> str:
        """Its HTTP listener."""
        return _url(self.address, self.port)

    @property
    def node_id(self) -> str:
        """The node id its Envoy presents to meshd."""
        return f"router~{self.address}~{self.name}.{self.namespace}~{self.namespace}.svc.cluster.local"

    @property
    def admin_url(self) -> str:
        """Its Envoy's admin interface."""
        return _url(self.address, ADMIN_PORT)

    @property
    def status_url(self) -> str:
        """Its agent's readiness endpoint."""
        return f"{_url(self.address, STATUS_PORT)}/healthz/ready"


@final
@attrs.frozen
class ControlPlane:
    """Where meshd serves, all on one loopback address with istiod's ports.

    Attributes:
        address: its address.
        xds_port: ADS, CSDS and gRPC health (plaintext).
        ca_port: the CA over TLS (bearer tokens).
        ca_renewal_port: the CA over mutual TLS (renewals).
        debug_port: readiness, metrics and the debug pages.
    """

    address: str
    xds_port: int = 15010
    ca_port: int = 15012
    ca_renewal_port: int = 15013
    debug_port: int = 15014

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port it binds."""
        return (self.xds_port, self.ca_port, self.ca_renewal_port, self.debug_port)

    @property
    def xds_address(self) -> str:
        """``IP:PORT`` of ADS and CSDS (``meshctl --xds-address``)."""
        return f"{self.address}:{self.xds_port}"

    @property
    def ca_address(self) -> str:
        """``IP:PORT`` of the CA."""
        return f"{self.address}:{self.ca_port}"

    @property
    def ca_renewal_address(self) -> str:
        """``IP:PORT`` of the CA for renewals."""
        return f"{self.address}:{self.ca_renewal_port}"

    @property
    def debug_url(self) -> str:
        """The debug pages' base URL (``/ready``, ``/metrics``, ``/debug/syncz``, ``/debug/configz``, ...)."""
        return _url(self.address, self.debug_port)
