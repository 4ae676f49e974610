"""PeerAuthentication, AuthorizationPolicy, RequestAuthentication and Sidecar selection."""

import textwrap

from mesh_config import load_text
from mesh_config.index.authn import PeerAuthenticationIndex
from mesh_config.index.authz import PolicyIndex
from mesh_config.index.sidecar_scope import SidecarIndex
from mesh_config.security.peer_authentication import MutualTlsMode
from mesh_model import Hostname, Workload


def load(text):
    result = load_text(textwrap.dedent(text))
    assert result.ok, [d.format() for d in result.diagnostics]
    return result.resources


def workload(namespace="default", **labels):
    return Workload(name="w", namespace=namespace, labels=labels or {"app": "reviews"})


def peer_auth(name, namespace, mode, selector=None, ports=None, created=""):
    lines = [
        "apiVersion: security.istio.io/v1",
        "kind: PeerAuthentication",
        f"metadata: {{name: {name}, namespace: {namespace}, creationTimestamp: '{created}'}}",
        "spec:",
        f"  mtls: {{mode: {mode}}}",
    ]
    if selector:
        lines.append(f"  selector: {{matchLabels: {selector}}}")
    if ports:
        lines.append(f"  portLevelMtls: {ports}")
    return "\n".join(lines) + "\n---\n"


def test_nothing_set_means_permissive():
    index = PeerAuthenticationIndex([])
    answer = index.effective(workload())
    assert answer.value.mode is MutualTlsMode.PERMISSIVE
    assert answer.sources == ()


def test_levels_override_mesh_then_namespace_then_workload():
    resources = load(
        peer_auth("mesh", "istio-system", "STRICT")
        + peer_auth("ns", "default", "UNSET")
        + peer_auth("w", "default", "DISABLE", selector="{app: reviews}", ports="{'9080': {mode: STRICT}}")
    )
    index = PeerAuthenticationIndex(resources)
    reviews = index.effective(workload())
    assert reviews.value.mode is MutualTlsMode.DISABLE
    assert reviews.value.for_port(9080) is MutualTlsMode.STRICT
    assert reviews.value.for_port(8080) is MutualTlsMode.DISABLE
    assert [key.name for key in reviews.sources] == ["mesh", "w"]
    # UNSET at the namespace level inherits the mesh's STRICT for other workloads.
    other = index.effective(workload(app="ratings"))
    assert other.value.mode is MutualTlsMode.STRICT
    assert index.effective(workload(namespace="other")).value.mode is MutualTlsMode.STRICT


def test_only_namespaces_with_a_selecting_policy_make_modes_depend_on_labels():
    resources = load(
        peer_auth("mesh", "istio-system", "STRICT")
        + peer_auth("ns", "plain", "PERMISSIVE")
        + peer_auth("w", "default", "DISABLE", selector="{app: reviews}")
    )
    index = PeerAuthenticationIndex(resources)

    assert index.selects_workloads("default")
    assert not index.selects_workloads("plain")
    assert not index.selects_workloads("istio-system")
    assert not index.selects_workloads("elsewhere")
    for namespace in ("plain", "elsewhere"):  # there, every workload gets the same modes
        answers = {index.effective(workload(namespace, app=app)).value for app in ("reviews", "ratings")}
        assert len(answers) == 1


def test_port_level_unset_inherits_the_workload_mode_and_the_oldest_workload_policy_wins():
    resources = load(
        peer_auth("newer", "default", "DISABLE", selector="{app: reviews}", created="2024-02-01T00:00:00Z")
        + peer_auth(
            "older",
            "default",
            "STRICT",
            selector="{app: reviews}",
            ports="{'80': {mode: UNSET}}",
            created="2024-01-01T00:00:00Z",
        )
    )
    answer = PeerAuthenticationIndex(resources).effective(workload())
    assert answer.value.mode is MutualTlsMode.STRICT
    assert answer.value.for_port(80) is MutualTlsMode.STRICT
    assert [key.name for key in answer.sources] == ["older"]


AUTHZ = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-deny, namespace: istio-system}
spec: {action: DENY, rules: [{from: [{source: {namespaces: [bad]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: root-selected, namespace: istio-system}
spec: {selector: {matchLabels: {app: reviews}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ns-wide, namespace: default}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-only, namespace: default}
spec: {selector: {matchLabels: {app: ratings}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: elsewhere, namespace: other}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gateway-policy, namespace: default}
spec: {targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]}
"""


def test_authorization_policies_apply_by_namespace_selector_and_target():
    index = PolicyIndex("AuthorizationPolicy", load(AUTHZ))
    names = [r.name for r in index.for_workload(workload()).value]
    assert names == ["mesh-deny", "root-selected", "ns-wide"]
    assert [r.name for r in index.for_workload(workload(app="ratings")).value] == [
        "mesh-deny",
        "ns-wide",
        "ratings-only",
    ]
    gateway = workload(**{"gateway.networking.k8s.io/gateway-name": "edge"})
    assert "gateway-policy" in [r.name for r in index.for_workload(gateway).value]
    answer = index.for_workload(workload(namespace="other", app="shop"))
    assert [key.name for key in answer.sources] == ["mesh-deny", "elsewhere"]
    # A selector in the root namespace selects matching workloads of every namespace.
    assert "root-selected" in [r.name for r in index.for_workload(workload(namespace="other")).value]


SIDECARS = """\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: root-default, namespace: istio-system}
spec: {egress: [{hosts: ["./*", "istio-system/*"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: ns-default, namespace: default}
spec: {egress: [{hosts: ["*/*.example.com", "~/*"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: default}
spec:
  workloadSelector: {labels: {app: reviews}}
  egress: [{hosts: ["./ratings.default.svc.cluster.local"]}]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""


def test_sidecar_selection_order_and_imports():
    index = SidecarIndex(load(SIDECARS))
    reviews = index.scope_for(workload())
    assert [key.name for key in reviews.sources] == ["reviews"]
    assert reviews.value.outbound_traffic_policy == "REGISTRY_ONLY"
    assert reviews.value.imports("default", Hostname.parse("ratings.default.svc.cluster.local"))
    assert not reviews.value.imports("other", Hostname.parse("ratings.default.svc.cluster.local"))
    assert not reviews.value.imports("default", Hostname.parse("details.default.svc.cluster.local"))

    ratings = index.scope_for(workload(app="ratings")).value
    assert ratings.sidecar.name == "ns-default"
    assert ratings.imports("anywhere", Hostname.parse("api.example.com"))
    assert not ratings.imports("default", Hostname.parse("details.default.svc.cluster.local"))

    # The root namespace's Sidecar, with "." meaning the workload's own namespace.
    shop = index.scope_for(workload(namespace="shop")).value
    assert shop.sidecar.name == "root-default"
    assert shop.imports("shop", Hostname.parse("cart.shop.svc.cluster.local"))
    assert not shop.imports("default", Hostname.parse("cart.default.svc.cluster.local"))


def test_without_sidecars_everything_is_imported():
    scope = SidecarIndex([]).scope_for(workload()).value
    assert scope.sidecar is None
    assert scope.imports("any", Hostname.parse("x.any.svc.cluster.local"))


def test_a_sidecar_without_egress_listeners_imports_everything():
    sidecar = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: only-outbound-policy, namespace: default}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""
    scope = SidecarIndex(load(sidecar)).scope_for(workload()).value
    assert scope.sidecar.name == "only-outbound-policy"
    assert scope.outbound_traffic_policy == "REGISTRY_ONLY"
    assert scope.imports("other", Hostname.parse("x.other.svc.cluster.local"))
