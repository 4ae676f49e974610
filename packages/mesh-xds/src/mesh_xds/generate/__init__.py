"""Envoy config from Istio config: the CDS, EDS, LDS and RDS resources Istio would give a proxy.

A :class:`GenerationContext` holds one proxy and the :class:`~mesh_config.PushContext` it is served from;
each generator module turns it into one type of resource, under Istio's names (:mod:`.names`). A
:class:`ProxyGenerator` assembles them into a proxy's whole :class:`~mesh_xds.Snapshot`, sharing what
proxies of one scope have in common; an :class:`XdsController` serves every connecting proxy from a config
store and a service registry, pushing their changes as istiod does (debounced by a :class:`Debouncer`)::

    async with XdsController(store, registry) as controller:
        server = XdsServer(controller)
        await server.start("127.0.0.1:15010")
"""

from mesh_xds.generate.addresses import addresses_from_metadata
from mesh_xds.generate.context import GenerationContext, SidecarAddresses, config_path, source_metadata
from mesh_xds.generate.controller import AddressesFor, ControllerStats, XdsController
from mesh_xds.generate.debounce import Clock, Debouncer, ManualClock, MonotonicClock
from mesh_xds.generate.generator import STATIC_CLUSTERS, GeneratorStats, ProxyGenerator, UnsupportedProxyError

__all__ = [
    "STATIC_CLUSTERS",
    "AddressesFor",
    "Clock",
    "ControllerStats",
    "Debouncer",
    "GenerationContext",
    "GeneratorStats",
    "ManualClock",
    "MonotonicClock",
    "ProxyGenerator",
    "SidecarAddresses",
    "UnsupportedProxyError",
    "XdsController",
    "addresses_from_metadata",
    "config_path",
    "source_metadata",
]
