"""DestinationRule lookups keep their answers, which stay those of a fresh index whatever was asked before."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh_config import load_text
from mesh_config.index.destination_rules import DestinationRuleIndex
from mesh_model import Hostname, Workload

RULES = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart, namespace: shop}
spec: {host: cart}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart-for-canary, namespace: shop}
spec: {host: cart, workloadSelector: {matchLabels: {track: canary}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: wide, namespace: shop}
spec: {host: "*.shop.svc.cluster.local", exportTo: ["."]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pay, namespace: pay}
spec: {host: pay, exportTo: [web]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mesh, namespace: istio-system}
spec: {host: "*.local"}
"""

HOSTS = ("cart.shop.svc.cluster.local", "pay.pay.svc.cluster.local", "api.web.svc.cluster.local", "other.org")
CLIENTS = [
    Workload("c", namespace, labels=labels)
    for namespace in ("shop", "web", "pay", "elsewhere")
    for labels in ({"app": "c"}, {"app": "c", "track": "canary"})
]
SERVICE_NAMESPACES = ("shop", "pay", "web", None)


def _index() -> DestinationRuleIndex:
    return DestinationRuleIndex(load_text(RULES).raise_for_errors().resources)


@settings(max_examples=60, deadline=None)
@given(
    asked=st.lists(
        st.tuples(st.sampled_from(HOSTS), st.sampled_from(CLIENTS), st.sampled_from(SERVICE_NAMESPACES)),
        min_size=1,
        max_size=30,
    )
)
def test_answers_do_not_depend_on_what_was_asked_before(asked):
    index = _index()
    for text, client, service_namespace in asked:
        host = Hostname.parse(text)
        found = index.lookup(host, client=client, service_namespace=service_namespace)
        fresh = _index().lookup(host, client=client, service_namespace=service_namespace)
        assert (found.value, found.sources) == (fresh.value, fresh.sources), (text, client, service_namespace)


def test_an_answer_is_kept_unless_the_clients_labels_may_change_it():
    index = _index()
    plain, canary = (Workload("c", "shop", labels=labels) for labels in ({"app": "c"}, {"track": "canary"}))
    cart = Hostname.parse("cart.shop.svc.cluster.local")

    # In a namespace with a rule for some workloads, the labels decide, every time.
    assert index.lookup(cart, client=plain, service_namespace="shop").sources[0].name == "cart"
    assert index.lookup(cart, client=canary, service_namespace="shop").sources[0].name == "cart-for-canary"
    assert index.lookup(cart, client=plain, service_namespace="shop").sources[0].name == "cart"

    # Elsewhere, the labels are not looked at: the first answer is the answer.
    web = Workload("c", "web", labels={"track": "canary"})
    for text, service_namespace in itertools.product(HOSTS, SERVICE_NAMESPACES):
        host = Hostname.parse(text)
        first = index.lookup(host, client=web, service_namespace=service_namespace)
        again = index.lookup(host, client=Workload("d", "web"), service_namespace=service_namespace)
        assert again is first
    pay = index.lookup(Hostname.parse("pay.pay.svc.cluster.local"), client=web, service_namespace="pay")
    assert pay.value is not None
    assert pay.sources[0].name == "pay"  # exported to web
