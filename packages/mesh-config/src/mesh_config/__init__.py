"""Istio's config API as typed Python objects.

What will live here: the networking.istio.io and security.istio.io kinds as typed attrs classes, YAML/JSON
loading with source positions, validation (the CRD schema and the webhook's semantic rules), MeshConfig,
config stores with change events, analyzers, and the translation into the PushContext indexes that xDS
generation reads. It depends on mesh_model and knows nothing of Envoy.

This package is a skeleton at version 0.1.0: it reserves the name and the place in the dependency graph.
"""

from mesh_config._version import __version__

__all__ = ["__version__"]
