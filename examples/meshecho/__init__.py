"""meshecho: the echo app behind every workload of the mesh's demo and end-to-end tests.

Like Istio's test echo, it answers any request with its service, version and namespace, the peer identity its
sidecar saw and the request's headers, and can be told to answer a given status, to wait, to fail a share of
requests, or to call the services it depends on (``productpage -> reviews -> ratings``). Run it with
``mesh-echo --service reviews --version v2 --listen 127.0.0.1:9080`` or embed :class:`EchoApp` in a test.
"""

from meshecho.app import PROPAGATED_HEADERS, PROPAGATED_PREFIXES, Dependency, EchoApp
from meshecho.xfcc import ForwardedClientCert, parse_xfcc

__all__ = ["PROPAGATED_HEADERS", "PROPAGATED_PREFIXES", "Dependency", "EchoApp", "ForwardedClientCert", "parse_xfcc"]
