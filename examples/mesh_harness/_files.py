"""The files a harness mesh gives meshd: the registry of services and workloads, and the ingress config."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import yaml

from mesh_harness.topology import ServiceSpec
from mesh_harness.workload import Gateway, Workload

INGRESS_NAME: Final = "mesh-ingress"
"""The name of the ingress Gateway and VirtualService the harness writes."""
INGRESS_FILE: Final = "mesh-ingress.yaml"


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one step: a reader (meshd's file watcher) sees the old file or the new one."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def registry_yaml(services: Iterable[ServiceSpec], workloads: Iterable[Workload]) -> str:
    """The registry file of meshd: each service with its port and selector, each workload at its inbound address."""
    document: dict[str, Any] = {
        "services": [
            {
                "hostname": service.name,
                "namespace": service.namespace,
                "ports": [{"name": "http", "number": service.port, "protocol": "HTTP"}],
                "labels": {"app": service.name},
                "selector": {"app": service.name},
                "serviceAccounts": [f"spiffe://cluster.local/ns/{service.namespace}/sa/{service.account}"],
            }
            for service in services
        ],
        "workloads": [
            {
                "name": workload.name,
                "namespace": workload.namespace,
                "address": workload.inbound,
                "labels": workload.labels,
                "serviceAccount": workload.service_account,
            }
            for workload in workloads
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


def ingress_yaml(gateway: Gateway, target: ServiceSpec) -> str:
    """A Gateway on the ingress gateway's port for every Host, and a VirtualService sending it all to ``target``."""
    documents = [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": INGRESS_NAME, "namespace": gateway.namespace},
            "spec": {
                "selector": {"istio": gateway.labels["istio"]},
                "servers": [{"port": {"number": gateway.port, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": INGRESS_NAME, "namespace": gateway.namespace},
            "spec": {
                "hosts": ["*"],
                "gateways": [INGRESS_NAME],
                "http": [{"route": [{"destination": {"host": target.host, "port": {"number": target.port}}}]}],
            },
        },
    ]
    return yaml.safe_dump_all(documents, sort_keys=False)
