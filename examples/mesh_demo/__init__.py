"""mesh_demo: Istio's bookinfo on real Envoy sidecars, driven by meshd (``make demo`` and ``make run``).

``python -m mesh_demo`` starts the mesh with :mod:`mesh_harness`, applies Istio's configs one step at a time
(request routing, traffic shifting, header routing, fault injection, STRICT mutual TLS, authorization),
drives traffic through the ingress gateway after each, prints what it observed next to what the config
asked for, stops everything, and exits 0 only when every observation matched. ``python -m mesh_demo run``
starts the same mesh and keeps it running until Ctrl-C. See docs/quickstart.md.
"""

from mesh_demo.report import Check, binomial_bounds, counts, print_table
from mesh_demo.steps import CONFIGS, STEPS, Step

__all__ = ["CONFIGS", "STEPS", "Check", "Step", "binomial_bounds", "counts", "print_table"]
