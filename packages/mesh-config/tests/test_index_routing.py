"""Services, DestinationRules and VirtualServices indexes, and the PushContext that holds them."""

import textwrap

from mesh_config import load_text
from mesh_config.index.destination_rules import DestinationRuleIndex
from mesh_config.index.push_context import PushContext
from mesh_config.index.services import ServiceIndex
from mesh_config.index.sidecar_scope import SidecarIndex
from mesh_config.index.virtual_services import VirtualServiceIndex, resolve_gateway_name
from mesh_model import ChangeSet, ConfigKey, Hostname, Kind, Service, ServicePort, Workload


def load(text):
    result = load_text(textwrap.dedent(text))
    assert result.ok, [d.format() for d in result.diagnostics]
    return result.resources


def host(text):
    return Hostname.parse(text)


def client(namespace="default", **labels):
    return Workload(name="c", namespace=namespace, labels=labels or {"app": "client"})


def service(name, namespace, export_to=("*",)):
    return Service(f"{name}.{namespace}.svc.cluster.local", namespace, [ServicePort("http", 80)], export_to=export_to)


def test_services_visible_by_export_to_and_sidecar_scope():
    index = ServiceIndex(
        [
            service("a", "default"),
            service(
                "b",
                "other",
                ("."),
            ),
            service("c", "other", ("default",)),
        ]
    )
    assert [s.hostname.value for s in index.visible("default")] == [
        "a.default.svc.cluster.local",
        "c.other.svc.cluster.local",
    ]
    assert [s.hostname.value for s in index.visible("other")] == [
        "a.default.svc.cluster.local",
        "b.other.svc.cluster.local",
    ]
    sidecars = load(
        """\
        apiVersion: networking.istio.io/v1
        kind: Sidecar
        metadata: {name: s, namespace: default}
        spec: {egress: [{hosts: ["./*"]}]}
        """
    )
    scope = SidecarIndex(sidecars).scope_for(client()).value
    assert [s.hostname.value for s in index.visible("default", scope)] == ["a.default.svc.cluster.local"]


def test_service_lookup_prefers_the_own_namespace_and_falls_back_to_wildcards():
    wildcard = Service("*.example.com", "egress", [ServicePort("https", 443)])
    shared_a = Service("shared.example.org", "a", [ServicePort("http", 80)])
    shared_b = Service("shared.example.org", "b", [ServicePort("http", 80)])
    index = ServiceIndex([wildcard, shared_a, shared_b])
    assert index.lookup(host("api.example.com"), "default").value is wildcard
    assert index.lookup(host("shared.example.org"), "b").value is shared_b
    assert index.lookup(host("shared.example.org"), "c").value is shared_a
    assert index.lookup(host("nothing.example.net"), "c").value is None


RULES = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: root, namespace: istio-system}
spec: {host: "*.svc.cluster.local", trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-side, namespace: backend, creationTimestamp: "2024-01-01T00:00:00Z"}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-side-more, namespace: backend, creationTimestamp: "2024-02-01T00:00:00Z"}
spec:
  host: reviews.backend.svc.cluster.local
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets: [{name: v1, labels: {version: other}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: client-side, namespace: frontend}
spec: {host: reviews.backend.svc.cluster.local, exportTo: ["."]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: selected, namespace: frontend}
spec:
  host: reviews.backend.svc.cluster.local
  workloadSelector: {matchLabels: {app: special}}
"""


def test_destination_rule_precedence_and_merging():
    index = DestinationRuleIndex(load(RULES))
    reviews = host("reviews.backend.svc.cluster.local")
    # The client's namespace first; a rule with a matching workload selector beats the plain one there.
    assert index.lookup(reviews, client=client("frontend"), service_namespace="backend").sources == (
        ConfigKey("DestinationRule", "frontend", "client-side"),
    )
    special = index.lookup(reviews, client=client("frontend", app="special"), service_namespace="backend")
    assert [key.name for key in special.sources] == ["selected"]
    # Then the service's namespace, where two rules for the same host are merged (oldest first).
    merged = index.lookup(reviews, client=client("shop"), service_namespace="backend")
    assert [key.name for key in merged.sources] == ["svc-side", "svc-side-more"]
    spec = merged.value.spec
    assert [(s.name, dict(s.labels)) for s in spec.subsets] == [("v1", {"version": "v1"}), ("v2", {"version": "v2"})]
    assert spec.traffic_policy.load_balancer.simple.value == "RANDOM"
    # Then the root namespace.
    details = index.lookup(host("details.shop.svc.cluster.local"), client=client("shop"), service_namespace="shop")
    assert [key.name for key in details.sources] == ["root"]
    assert index.lookup(host("example.com"), client=client("shop")).value is None


ROUTES = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /api}}]
    delegate: {name: reviews-api, namespace: team}
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-api, namespace: team}
spec:
  http:
  - match: [{uri: {prefix: /api/v2}, headers: {x-user: {exact: tester}}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
  - match: [{uri: {prefix: /other}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v3}}]
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-late, namespace: default, creationTimestamp: "2024-03-01T00:00:00Z"}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge, namespace: istio-system}
spec:
  hosts: ["*.example.com"]
  gateways: [edge-gateway, mesh]
  exportTo: ["."]
  http: [{route: [{destination: {host: web.default.svc.cluster.local}}]}]
"""


def test_virtual_services_by_gateway_and_host_with_delegates_merged():
    index = VirtualServiceIndex(load(ROUTES))
    reviews = index.for_host(host("reviews.default.svc.cluster.local")).value
    assert [vs.key.name for vs in reviews] == ["reviews"]  # the oldest claims the host on the mesh
    resolved = reviews[0]
    assert [key.name for key in resolved.sources] == ["reviews", "reviews-api"]
    routes = resolved.spec.http
    assert [r.route[0].destination.subset for r in routes] == ["v2", "v1", "v1"]
    # The delegate's /other route can never match under the root's /api prefix and is dropped;
    # its catch-all route inherits the root's match.
    assert routes[0].match[0].uri.prefix == "/api/v2"
    assert dict(routes[0].match[0].headers)["x-user"].exact == "tester"
    assert routes[1].match[0].uri.prefix == "/api"
    assert routes[2].match == ()
    assert index.mesh_conflicts() == [
        (
            host("reviews.default.svc.cluster.local"),
            resolved.key,
            ConfigKey("VirtualService", "default", "reviews-late"),
        )
    ]
    edge = index.for_gateway("istio-system/edge-gateway")
    assert [vs.key.name for vs in edge] == ["edge"]
    assert index.for_host(host("www.example.com"), namespace="default").value == ()  # exported to "." only
    assert index.for_host(host("www.example.com"), namespace="istio-system").value[0].key.name == "edge"


def test_gateway_names_resolve_like_istio():
    assert resolve_gateway_name("mesh", "default") == "mesh"
    assert resolve_gateway_name("edge", "default") == "default/edge"
    assert resolve_gateway_name("istio-system/edge", "default") == "istio-system/edge"
    assert resolve_gateway_name("edge.istio-system.svc.cluster.local", "default") == "istio-system/edge"


def test_push_context_answers_per_workload_and_rebuilds_only_what_changed():
    resources = load(RULES + "---\n" + ROUTES)
    services = [service("reviews", "default"), service("reviews", "backend")]
    push = PushContext.build(resources, services)
    frontend = client("frontend")
    assert [s.namespace for s in push.visible_services(frontend)] == ["backend", "default"]
    rule = push.destination_rule(frontend, services[1])
    assert [key.name for key in rule.sources] == ["client-side"]
    assert [vs.key.name for vs in push.virtual_services_for(frontend)] == ["reviews", "reviews-late"]
    assert push.mtls(frontend).value.mode.value == "PERMISSIVE"

    change = ChangeSet.of(ConfigKey(Kind.DESTINATION_RULE, "frontend", "client-side"))
    changed = push.rebuild(change, resources, services)
    assert changed.version == push.version + 1
    assert changed.destination_rules is not push.destination_rules
    assert changed.virtual_services is push.virtual_services
    assert changed.services is push.services
    endpoints_only = push.rebuild(ChangeSet.of(ConfigKey(Kind.ENDPOINTS, "default", "reviews")), resources, services)
    assert endpoints_only.services is not push.services
    assert endpoints_only.destination_rules is push.destination_rules
