"""A tour of mesh_model: a registry with bookinfo's reviews service, a proxy, and host matching.

Run it with ``uv run python examples/model_tour.py``.
"""

from mesh_model import (
    Hostname,
    InMemoryRegistry,
    LabelSelector,
    Locality,
    Protocol,
    Proxy,
    Service,
    ServiceGraph,
    ServicePort,
    Workload,
    most_specific_match,
    protocol_from_port,
    resolve_short_name,
)


def main() -> None:
    registry = InMemoryRegistry()
    registry.subscribe(lambda changes: print("changed:", ", ".join(str(key) for key in changes)))

    reviews = Service(
        hostname=resolve_short_name("reviews", "default"),
        namespace="default",
        ports=[ServicePort("http", 9080, protocol_from_port(9080, "http"))],
        selector=LabelSelector({"app": "reviews"}),
    )
    with registry.batch():
        registry.upsert_service(reviews)
        for version, address in (("v1", "127.0.10.1"), ("v2", "127.0.10.2")):
            registry.upsert_workload(
                Workload(
                    name=f"reviews-{version}",
                    namespace="default",
                    addresses=[address],
                    labels={"app": "reviews", "version": version},
                    service_account="bookinfo-reviews",
                    ports={"http": 9080},
                    locality=Locality.parse("local/zone-a"),
                )
            )

    for endpoint in registry.endpoints(reviews.key, 9080):
        print(f"endpoint {endpoint.address}:{endpoint.target_port(reviews.ports[0])} {dict(endpoint.labels)}")

    proxy = Proxy.parse(
        "sidecar~127.0.10.1~reviews-v1.default~default.svc.cluster.local",
        {"SERVICE_ACCOUNT": "bookinfo-reviews", "LABELS": {"app": "reviews", "version": "v1"}},
    )
    print("proxy", proxy.id, "in", proxy.namespace, "runs as", proxy.identity("cluster.local"))

    rules = [Hostname.parse(text) for text in ("*", "*.svc.cluster.local", "reviews.default.svc.cluster.local")]
    print("rule for", reviews.hostname, "is", most_specific_match(reviews.hostname, rules))
    print("protocol of port 'grpc-api':", protocol_from_port(8080, "grpc-api"), Protocol.GRPC.is_http2)

    graph = ServiceGraph()
    ratings = Service(resolve_short_name("ratings", "default"), "default").key
    reviews_v1 = registry.workloads()[0].key
    graph.add_workload(reviews_v1, backs=[reviews.key])
    graph.add_call(reviews.key, ratings)
    print("dependencies of", reviews_v1, "are", sorted(str(key) for key in graph.dependencies(reviews_v1)))


if __name__ == "__main__":
    main()
