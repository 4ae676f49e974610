"""What ``meshd`` needs to know: where its config, registry and keys are, and the addresses it serves."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, final

import attrs

from mesh_model import InvalidSpiffeIdError, SpiffeId

__all__ = [
    "DEFAULT_CA_ADDRESS",
    "DEFAULT_DEBUG_ADDRESS",
    "DEFAULT_WORKDIR",
    "DEFAULT_XDS_ADDRESS",
    "MeshdConfigError",
    "MeshdError",
    "MeshdOptions",
    "parse_address",
]

DEFAULT_XDS_ADDRESS: Final = "127.0.0.1:15010"
"""ADS, CSDS and gRPC health, plaintext (istiod's port 15010)."""
DEFAULT_CA_ADDRESS: Final = "127.0.0.1:15012"
"""The Istio CA API over TLS (istiod's port 15012)."""
DEFAULT_DEBUG_ADDRESS: Final = "127.0.0.1:15014"
"""Readiness, metrics and debug pages over HTTP (istiod's monitoring port 15014)."""
DEFAULT_WORKDIR: Final = Path(".meshd")
"""Where meshd keeps its CA, its token signing key and the root certificate for agents."""


class MeshdError(Exception):
    """meshd cannot run: an unusable option, or a part that fails to start (the message names it)."""


class MeshdConfigError(MeshdError, ValueError):
    """An option is malformed (a usage error)."""


def parse_address(text: str, what: str) -> tuple[str, int]:
    """Split ``IP:PORT`` (``[v6]:port`` for IPv6) into an IP address and a port (0 picks a free one).

    Raises:
        MeshdConfigError: not an IP address and a port.
    """
    host, colon, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise MeshdConfigError(f"{what} {text!r} is not IP:PORT") from None
    if not colon or not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise MeshdConfigError(f"{what} {text!r} is not IP:PORT (a port in 0..65535)")
    return host, int(port)


def _address(what: str) -> Callable[[Any, Any, str | None], None]:
    def check(_instance: Any, _attribute: Any, value: str | None) -> None:
        if value is not None:
            parse_address(value, what)

    return check


def _optional_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


@final
@attrs.frozen(kw_only=True)
class MeshdOptions:
    """The options of a :class:`~meshd.Meshd`.

    Attributes:
        config_dir: the directory tree of Istio YAML (config, ServiceEntries and WorkloadEntries).
        registry_file: an optional YAML file of services and workloads (see ``mesh_config.registry_file``).
        mesh_config: an optional MeshConfig file (Istio's defaults otherwise).
        xds_address: where ADS, CSDS and gRPC health are served.
        ca_address: where the CA is served over TLS (bearer token authentication).
        ca_renewal_address: where the CA is served over mutual TLS, for renewals; not served when ``None``.
        debug_address: where readiness, metrics and the debug pages are served over HTTP.
        workdir: where the token signing key, the root certificate for agents and (by default) the CA live.
        ca_dir: the self-signed CA's directory (``<workdir>/ca`` when ``None``).
        cacerts: a plugged-in CA in Istio's ``cacerts`` layout, instead of the self-signed one.
        trust_domain: the trust domain (the MeshConfig's when ``None``).
        credentials_dir: gateway credentials, one folder per ``credentialName``.
        poll_interval: seconds between two looks at the config, the registry file and the credentials.
    """

    config_dir: Path = attrs.field(converter=Path)
    registry_file: Path | None = attrs.field(default=None, converter=_optional_path)
    mesh_config: Path | None = attrs.field(default=None, converter=_optional_path)
    xds_address: str = attrs.field(default=DEFAULT_XDS_ADDRESS, validator=_address("--xds-address"))
    ca_address: str = attrs.field(default=DEFAULT_CA_ADDRESS, validator=_address("--ca-address"))
    ca_renewal_address: str | None = attrs.field(default=None, validator=_address("--ca-renewal-address"))
    debug_address: str = attrs.field(default=DEFAULT_DEBUG_ADDRESS, validator=_address("--debug-address"))
    workdir: Path = attrs.field(default=DEFAULT_WORKDIR, converter=Path)
    ca_dir: Path | None = attrs.field(default=None, converter=_optional_path)
    cacerts: Path | None = attrs.field(default=None, converter=_optional_path)
    trust_domain: str | None = None
    credentials_dir: Path | None = attrs.field(default=None, converter=_optional_path)
    poll_interval: float = 1.0

    def __attrs_post_init__(self) -> None:
        if self.ca_dir is not None and self.cacerts is not None:
            raise MeshdConfigError("--ca-dir and --cacerts exclude each other: a CA is self-signed or plugged in")
        if self.trust_domain is not None:
            try:
                SpiffeId(self.trust_domain, "default", "default")
            except InvalidSpiffeIdError as error:
                raise MeshdConfigError(f"--trust-domain: {error}") from None
        if not isinstance(self.poll_interval, int | float) or not self.poll_interval > 0:
            raise MeshdConfigError(f"poll_interval must be a positive number of seconds, not {self.poll_interval!r}")

    @property
    def self_signed_dir(self) -> Path:
        """The directory of the self-signed CA."""
        return self.ca_dir if self.ca_dir is not None else self.workdir / "ca"
