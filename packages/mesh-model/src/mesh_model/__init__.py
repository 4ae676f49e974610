"""mesh_model: Istio's service model as typed, immutable Python values.

The vocabulary every other mesh package speaks: host names with Istio's wildcard matching, protocols,
services and their ports, endpoints and workloads, localities, SPIFFE identities, labels and selectors,
proxies parsed from Envoy's node id and metadata, config keys and change sets, service registries and the
subscriptions they notify, and the service graph. No I/O, no protobuf, no YAML: plain values and protocols.

Example::

    from mesh_model import Hostname, Protocol, Service, ServicePort, resolve_short_name

    reviews = Service(
        hostname=resolve_short_name("reviews", "default"),
        namespace="default",
        ports=[ServicePort("http", 9080, Protocol.HTTP)],
    )
    assert Hostname.parse("*.svc.cluster.local").covers(reviews.hostname)
"""

from mesh_model._version import __version__
from mesh_model.aggregate_registry import AggregateRegistry
from mesh_model.config_key import ChangeSet, ConfigKey, Kind
from mesh_model.endpoint import Endpoint, HealthStatus, TlsMode
from mesh_model.errors import (
    InvalidHostError,
    InvalidLabelError,
    InvalidLocalityError,
    InvalidProtocolError,
    InvalidProxyError,
    InvalidServiceError,
    InvalidSpiffeIdError,
    InvalidValueError,
    MeshModelError,
    RegistryError,
)
from mesh_model.host import (
    DEFAULT_DOMAIN_SUFFIX,
    Hostname,
    most_specific_first,
    most_specific_match,
    resolve_short_name,
)
from mesh_model.labels import Labels, LabelSelector, validate_label_key, validate_label_value
from mesh_model.locality import Locality
from mesh_model.memory_registry import InMemoryRegistry
from mesh_model.protocol import Protocol, protocol_from_port
from mesh_model.proxy import InterceptionMode, NodeMetadata, NodeType, Proxy
from mesh_model.registry import (
    ChangeHandler,
    ServiceRegistry,
    Subscription,
    endpoints_key,
    service_key,
    workload_key,
)
from mesh_model.service import MeshLocation, Resolution, Service, ServiceKey, ServicePort
from mesh_model.spiffe import SPIFFE_SCHEME, SpiffeId
from mesh_model.subscribers import Handlers, HandlerSubscription, Subscribers
from mesh_model.topology import ServiceGraph
from mesh_model.workload import Workload, WorkloadKey

__all__ = [
    "DEFAULT_DOMAIN_SUFFIX",
    "SPIFFE_SCHEME",
    "AggregateRegistry",
    "ChangeHandler",
    "ChangeSet",
    "ConfigKey",
    "Endpoint",
    "HandlerSubscription",
    "Handlers",
    "HealthStatus",
    "Hostname",
    "InMemoryRegistry",
    "InterceptionMode",
    "InvalidHostError",
    "InvalidLabelError",
    "InvalidLocalityError",
    "InvalidProtocolError",
    "InvalidProxyError",
    "InvalidServiceError",
    "InvalidSpiffeIdError",
    "InvalidValueError",
    "Kind",
    "LabelSelector",
    "Labels",
    "Locality",
    "MeshLocation",
    "MeshModelError",
    "NodeMetadata",
    "NodeType",
    "Protocol",
    "Proxy",
    "RegistryError",
    "Resolution",
    "Service",
    "ServiceGraph",
    "ServiceKey",
    "ServicePort",
    "ServiceRegistry",
    "SpiffeId",
    "Subscribers",
    "Subscription",
    "TlsMode",
    "Workload",
    "WorkloadKey",
    "__version__",
    "endpoints_key",
    "most_specific_first",
    "most_specific_match",
    "protocol_from_port",
    "resolve_short_name",
    "service_key",
    "validate_label_key",
    "validate_label_value",
    "workload_key",
]
