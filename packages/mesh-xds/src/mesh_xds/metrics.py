"""Prometheus metrics of the xDS servers, named after istiod's.

The metrics live on a registry the user chooses; by default a private one, so that two servers in one
process (or in one test run) never collide on the global registry. To expose them with the rest of a
program's metrics, pass ``prometheus_client.REGISTRY``, or serve :attr:`XdsMetrics.registry`::

    metrics = XdsMetrics(prometheus_client.REGISTRY)
    server = XdsServer(cache, metrics=metrics)

=================================  =========  ====================================================
name                               kind       meaning
=================================  =========  ====================================================
``pilot_xds``                      gauge      connected xDS streams, by proxy ``version``
``pilot_xds_pushes``               counter    responses sent, by ``type`` (``cds``, ...; ``cds_senderr``)
``pilot_xds_push_time``            histogram  seconds to build and send a response, by ``type``
``pilot_xds_send_time``            histogram  seconds to write a response to the stream
``pilot_proxy_convergence_time``   histogram  seconds from a view change to every response it caused sent
``pilot_total_xds_rejects``        counter    NACKs, by ``type``
``pilot_xds_expired_nonce``        counter    requests with a stale nonce, by ``type``
``pilot_total_xds_internal_errors`` counter   streams ended by an error of the server
``pilot_xds_config_size_bytes``    histogram  response sizes, by ``type``
``pilot_xds_recv_max``             gauge      the largest request received so far, in bytes
=================================  =========  ====================================================

prometheus-client exposes counters with a ``_total`` suffix (``pilot_xds_pushes_total``); Istio's exporter
omits it, so a query copied from an Istio dashboard needs the suffix added.
"""

from __future__ import annotations

import threading
from typing import final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mesh_xds.resource import short_type

__all__ = ["XdsMetrics"]

_TIME_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.1, 1, 3, 5, 10, 20, 30)
_CONVERGENCE_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1, 3, 5, 10, 20, 30)
_SIZE_BUCKETS = (1, 10_000, 1_000_000, 4_000_000, 10_000_000, 40_000_000)


@final
class XdsMetrics:
    """The servers' Prometheus metrics, registered on ``registry`` (a new private registry by default).

    One object may be shared by several servers (ADS and SDS in one process).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry: CollectorRegistry = registry if registry is not None else CollectorRegistry()
        on = self.registry
        self._connected = Gauge(
            "pilot_xds", "Number of endpoints connected to this pilot using XDS.", ["version"], registry=on
        )
        self._pushes = Counter(
            "pilot_xds_pushes", "Pilot build and send errors for lds, rds, cds and eds.", ["type"], registry=on
        )
        self._push_time = Histogram(
            "pilot_xds_push_time",
            "Total time in seconds Pilot takes to push lds, rds, cds and eds.",
            ["type"],
            buckets=_TIME_BUCKETS,
            registry=on,
        )
        self._send_time = Histogram(
            "pilot_xds_send_time",
            "Total time in seconds Pilot takes to send generated configuration.",
            buckets=_TIME_BUCKETS,
            registry=on,
        )
        self._convergence = Histogram(
            "pilot_proxy_convergence_time",
            "Delay in seconds between config change and a proxy receiving all required configuration.",
            buckets=_CONVERGENCE_BUCKETS,
            registry=on,
        )
        self._rejects = Counter(
            "pilot_total_xds_rejects",
            "Total number of XDS responses from pilot rejected by proxy.",
            ["type"],
            registry=on,
        )
        self._expired = Counter(
            "pilot_xds_expired_nonce", "Total number of XDS requests with an expired nonce.", ["type"], registry=on
        )
        self._internal_errors = Counter(
            "pilot_total_xds_internal_errors", "Total number of internal XDS errors in pilot.", registry=on
        )
        self._config_size = Histogram(
            "pilot_xds_config_size_bytes",
            "Distribution of configuration sizes pushed to clients",
            ["type"],
            buckets=_SIZE_BUCKETS,
            registry=on,
        )
        self._recv_max = Gauge("pilot_xds_recv_max", "The maximum size request we have received so far.", registry=on)
        self._lock = threading.Lock()
        self._largest_request = 0

    def stream_opened(self, version: str) -> None:
        """A stream learnt its node; ``version`` is the proxy's Istio version, or ``unknown``."""
        self._connected.labels(version=version).inc()

    def stream_closed(self, version: str) -> None:
        """A stream counted by :meth:`stream_opened` ended."""
        self._connected.labels(version=version).dec()

    def pushed(self, type_url: str, *, seconds: float, send_seconds: float, size: int) -> None:
        """A response was built and written."""
        label = short_type(type_url)
        self._pushes.labels(type=label).inc()
        self._push_time.labels(type=label).observe(seconds)
        self._send_time.observe(send_seconds)
        self._config_size.labels(type=label).observe(size)

    def send_failed(self, type_url: str) -> None:
        """Writing a response failed."""
        self._pushes.labels(type=f"{short_type(type_url)}_senderr").inc()

    def converged(self, seconds: float) -> None:
        """Every response a view change caused was written, ``seconds`` after the change."""
        self._convergence.observe(seconds)

    def rejected(self, type_url: str) -> None:
        """A client NACKed a response."""
        self._rejects.labels(type=short_type(type_url)).inc()

    def expired_nonce(self, type_url: str) -> None:
        """A request came with a stale nonce."""
        self._expired.labels(type=short_type(type_url)).inc()

    def internal_error(self) -> None:
        """A stream ended because of an error of the server."""
        self._internal_errors.inc()

    def received(self, size: int) -> None:
        """A request of ``size`` bytes was received."""
        with self._lock:
            if size <= self._largest_request:
                return
            self._largest_request = size
        self._recv_max.set(size)
