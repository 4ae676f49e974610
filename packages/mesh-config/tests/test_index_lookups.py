"""The indexes answer from lookup tables and keep answers: the answers stay those of a plain scan."""

import itertools

from mesh_config import load_text
from mesh_config.index.destination_rules import DestinationRuleIndex, _exported_to
from mesh_config.index.services import ServiceIndex
from mesh_config.index.sidecar_scope import SidecarIndex
from mesh_model import Hostname, Service, ServicePort, Workload, most_specific_match

RULES = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: exact, namespace: shop}
spec: {host: cart}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: exact-again, namespace: shop}
spec: {host: cart.shop.svc.cluster.local, subsets: [{name: v2, labels: {version: v2}}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: wide, namespace: shop}
spec: {host: "*.shop.svc.cluster.local"}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: wider, namespace: shop}
spec: {host: "*.svc.cluster.local", exportTo: ["."]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: for-canary, namespace: shop}
spec: {host: cart, workloadSelector: {matchLabels: {track: canary}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: wild-for-canary, namespace: shop}
spec: {host: "*.example.com", workloadSelector: {matchLabels: {track: canary}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: example, namespace: shop}
spec: {host: "*.example.com", exportTo: [web]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: web}
spec: {host: api.example.com}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mesh, namespace: istio-system}
spec: {host: "*.local"}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: everything, namespace: istio-system}
spec: {host: "*"}
"""

HOSTS = (
    "cart.shop.svc.cluster.local",
    "pay.shop.svc.cluster.local",
    "api.web.svc.cluster.local",
    "api.example.com",
    "*.example.com",
    "*.shop.svc.cluster.local",
    "other.org",
)


def _scan(index: DestinationRuleIndex, host: Hostname, client: Workload, service_namespace: str | None):
    """The lookup as a plain scan of every rule of each namespace, most specific host first."""
    namespaces = [client.namespace]
    for namespace in (service_namespace, index.root_namespace):
        if namespace and namespace not in namespaces:
            namespaces.append(namespace)
    for namespace in namespaces:
        local = namespace == client.namespace
        candidates = []
        for merged, group in index._rules.get(namespace, ()):
            if merged.workload_selector is not None:
                selector = dict(merged.workload_selector)
                if not local or any(client.labels.get(key) != value for key, value in selector.items()):
                    continue
            elif not _exported_to(group[0], client.namespace):
                continue
            candidates.append((merged, group))
        for with_selector in (True, False):
            pool = [c for c in candidates if (c[0].workload_selector is not None) == with_selector]
            best = most_specific_match(host, [merged.host for merged, _ in pool])
            if best is not None:
                merged, group = next(c for c in pool if c[0].host == best)
                return merged, tuple(resource.key for resource in group)
    return None, ()


def test_destination_rule_lookups_match_a_scan_of_every_rule():
    index = DestinationRuleIndex(load_text(RULES).raise_for_errors().resources)
    clients = [
        Workload("c", namespace, labels=labels)
        for namespace in ("shop", "web", "istio-system", "elsewhere")
        for labels in ({"app": "c"}, {"app": "c", "track": "canary"})
    ]
    checked = 0
    for text, client, service_namespace in itertools.product(HOSTS, clients, ("shop", "web", None)):
        host = Hostname.parse(text)
        found = index.lookup(host, client=client, service_namespace=service_namespace)
        assert (found.value, found.sources) == _scan(index, host, client, service_namespace), (text, client)
        checked += found.value is not None
    assert checked > 50  # most lookups find a rule: the comparison is not between empty answers


def _service(name: str, namespace: str, selector: dict | None = None, export_to=("*",)) -> Service:
    return Service(
        f"{name}.{namespace}.svc.cluster.local",
        namespace,
        [ServicePort("http", 80)],
        selector=selector,
        export_to=export_to,
    )


def test_visible_and_selecting_answers_are_kept_and_equal_fresh_ones():
    services = [
        _service("a", "default", {"app": "a"}),
        _service("b", "default", {"app": "b"}),
        _service("c", "other", {"app": "a"}, export_to=(".",)),
        _service("d", "default", {}),
    ]
    sidecars = SidecarIndex(
        load_text(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s, namespace: default}\n"
            'spec: {egress: [{hosts: ["./*"]}]}\n'
        )
        .raise_for_errors()
        .resources
    )
    index = ServiceIndex(services)
    for namespace in ("default", "other"):
        scope = sidecars.scope_for(Workload("w", namespace)).value
        for chosen in (None, scope):
            first = index.visible(namespace, chosen)
            assert index.visible(namespace, chosen) is first
            assert (
                first == ServiceIndex(services).visible(namespace, chosen) == index._compute_visible(namespace, chosen)
            )
    assert [s.hostname.value for s in index.visible("default")] == [
        "a.default.svc.cluster.local",
        "b.default.svc.cluster.local",
        "d.default.svc.cluster.local",
    ]
    selecting = index.selecting("default", {"app": "a", "version": "v1"})
    assert [s.hostname.value for s in selecting] == ["a.default.svc.cluster.local"]  # not c (other), not d (empty)
    assert index.selecting("default", {"version": "v1", "app": "a"}) is selecting
    assert index.selecting("other", {"app": "a"}) == (services[2],)
    assert index.selecting("default", {}) == ()
