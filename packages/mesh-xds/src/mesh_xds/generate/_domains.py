"""The Host header values that reach a service's virtual host (private).

Istio's ``generateVirtualHostDomains`` and ``GenerateAltVirtualHosts``: the FQDN, the shorter names a
client in the proxy's DNS domain may use (``reviews`` and ``reviews.default`` in the service's own
namespace, ``reviews.default`` and ``reviews.default.svc`` from another), and the service's VIPs, each with
and without ``:port``.
"""

from __future__ import annotations

from collections.abc import Iterable

from mesh_model import Resolution, Service

__all__ = ["alt_hosts", "domain", "domain_with_port", "service_domains", "with_port"]

_SVC = ".svc."


def domain(host: str) -> str:
    """A host as a domain: an IPv6 address gets brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def domain_with_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    return f"{domain(host)}:{port}"


def with_port(hosts: Iterable[str], port: int) -> list[str]:
    """Each host, then the same host with ``:port``."""
    out: list[str] = []
    suffix = f":{port}"
    for host in hosts:  # the hosts of every virtual host: ``domain`` kept inline
        bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
        out += (bracketed, bracketed + suffix)
    return out


def _kubernetes_alt_hosts(hostname: str, proxy_domain: str) -> list[str]:
    proxy_namespace = proxy_domain[: proxy_domain.index(_SVC)]
    at_svc = hostname.find(_SVC)
    if at_svc <= 0:
        return []
    first_dot = hostname.index(".")
    if first_dot + 1 >= len(hostname) or first_dot + 1 > at_svc:
        return []
    name, name_namespace = hostname[:first_dot], hostname[:at_svc]
    if hostname[first_dot + 1 : at_svc] == proxy_namespace:
        return [name, f"{name_namespace}.svc", name_namespace]
    return [name_namespace, f"{name_namespace}.svc"]


def _shared_suffix_alt_hosts(hostname: str, proxy_domain: str) -> list[str]:
    host_parts = hostname.split(".")
    proxy_parts = proxy_domain.split(".")
    shared = 0
    for mine, theirs in zip(reversed(host_parts), reversed(proxy_parts), strict=False):
        if mine != theirs:
            break
        shared += 1
    unique = host_parts[: len(host_parts) - shared]
    if not shared or not unique:
        return []
    hosts = [".".join(unique)]
    if len(unique) == 2:
        hosts.append(f"{hosts[0]}.{host_parts[len(host_parts) - shared]}")
    return hosts


def alt_hosts(hostname: str, proxy_domain: str) -> list[str]:
    """The shorter names of ``hostname`` that resolve to it from a proxy in ``proxy_domain``.

    In Kubernetes (``<ns>.svc.<suffix>`` proxy domains) only ``<name>.<ns>.svc.<suffix>`` services get
    them; elsewhere the name is shortened by the DNS suffix it shares with the proxy's domain.
    """
    if _SVC in proxy_domain:
        suffix = proxy_domain[proxy_domain.index(_SVC) :] if proxy_domain.index(_SVC) > 0 else proxy_domain
        if not hostname.endswith(suffix):
            return []
        return _kubernetes_alt_hosts(hostname, proxy_domain)
    return _shared_suffix_alt_hosts(hostname, proxy_domain)


def service_domains(service: Service, port: int, proxy_domain: str) -> tuple[list[str], list[str]]:
    """The domains of a service's virtual host on ``port``, and which of them are shortened names.

    Headless Kubernetes services (resolution NONE, not from a ServiceEntry) also get ``*.<domain>`` for
    each name, as their pods are called by their own DNS names.
    """
    hostname = service.hostname.value
    shortened = with_port(alt_hosts(hostname, proxy_domain), port)
    domains = with_port([hostname], port) + shortened
    if service.resolution is Resolution.NONE and service.origin is None:
        domains += [f"*.{name}" for name in domains]
    for address in service.addresses:
        if "/" in address or address in ("0.0.0.0", "::"):
            continue
        domains += with_port([address], port)
    return domains, shortened
