"""Envoy xDS generation and serving.

What will live here: the resource cache (serialized Any bytes shared between proxies), the ADS servers
(state-of-the-world and Delta, on grpc.aio), the SDS server fed by a SecretProvider protocol, and the
generators that turn mesh_config's PushContext into clusters, endpoints, listeners and routes. Envoy's
protobufs (xds-protos) are used only inside this package.

This package is a skeleton at version 0.1.0: it reserves the name and the place in the dependency graph.
"""

from mesh_xds._version import __version__

__all__ = ["__version__"]
