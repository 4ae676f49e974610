"""Test helpers for mesh_xds: an ADS client that behaves like Envoy.

:class:`AdsClient` speaks SotW and Delta ADS (and SDS), ACKs what it accepts, NACKs on demand and records
every response, so that tests and benchmarks can drive a server without a real Envoy.
"""

from mesh_xds.testing.ads_client import AdsClient, ReceivedResponse, Rejector

__all__ = ["AdsClient", "ReceivedResponse", "Rejector"]
