"""Envoy config from Istio config: the CDS, EDS, LDS and RDS resources Istio would give a proxy.

A :class:`GenerationContext` holds one proxy and the :class:`~mesh_config.PushContext` it is served from;
each generator module turns it into one type of resource, under Istio's names (:mod:`.names`).
"""

from mesh_xds.generate.context import GenerationContext, SidecarAddresses, config_path, source_metadata

__all__ = ["GenerationContext", "SidecarAddresses", "config_path", "source_metadata"]
