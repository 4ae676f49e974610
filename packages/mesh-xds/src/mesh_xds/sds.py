"""The SDS server: ``envoy.service.secret.v3.SecretDiscoveryService`` fed by a :class:`~mesh_xds.SecretProvider`.

The same stream machinery as the ADS server (SotW ``StreamSecrets`` and Delta ``DeltaSecrets``, the same
records, health and reflection), over TCP or a Unix socket, as Istio's node agent serves its Envoy::

    sds = SdsServer(provider)
    await sds.start("unix:/var/run/mesh/sds.sock")

Secrets are fetched from the provider when a client first names them, kept as packed resources shared by
every stream, and fetched again when the provider says they changed; every stream that holds a changed
secret gets it pushed. Clients name the secrets they want (SDS has no wildcard).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Final, final

import grpc
from envoy.service.secret.v3 import sds_pb2

from mesh_model import Subscription
from mesh_xds._host import DEFAULT_MAX_REQUEST_BYTES, ServerBase, stream_service
from mesh_xds._stream import StreamOptions
from mesh_xds._text import describe
from mesh_xds.cache import ViewHandler
from mesh_xds.errors import InvalidResourceError
from mesh_xds.metrics import XdsMetrics
from mesh_xds.node import NodeInfo
from mesh_xds.resource import SECRET_TYPE, Resource
from mesh_xds.secret import SecretProvider, secret_resource
from mesh_xds.snapshot import Snapshot

__all__ = ["SdsServer"]

_log = logging.getLogger("mesh_xds.sds")
_SDS: Final = sds_pb2.DESCRIPTOR.services_by_name["SecretDiscoveryService"].full_name


def _serves(type_url: str, _view: Snapshot) -> bool:
    return type_url == SECRET_TYPE


@final
class _Listener:
    def __init__(self, store: _SecretStore, on_view: ViewHandler) -> None:
        self._store = store
        self.on_view = on_view

    def cancel(self) -> None:
        self._store.remove(self)


@final
class _SecretStore:
    """The secrets clients asked for, as one snapshot shared by every stream (a stream Source)."""

    def __init__(self, provider: SecretProvider, max_secrets: int) -> None:
        self._provider = provider
        self._max_secrets = max_secrets
        self._secrets: dict[str, Resource | None] = {}
        self._snapshot = Snapshot()
        self._listeners: list[_Listener] = []
        self._subscription: Subscription | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._subscription = self._provider.subscribe(self._changed)

    def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None

    def node_key(self, node: NodeInfo) -> str:
        return node.id

    def open(self, node: NodeInfo, on_view: ViewHandler) -> Subscription:
        listener = _Listener(self, on_view)
        self._listeners.append(listener)
        on_view(self._snapshot)
        return listener

    def remove(self, listener: _Listener) -> None:
        self._listeners = [kept for kept in self._listeners if kept is not listener]

    def prepare(self, type_url: str, names: Iterable[str]) -> None:
        new = [name for name in names if name not in self._secrets]
        room = self._max_secrets - len(self._secrets)
        if len(new) > room:
            _log.warning("SDS holds %d secrets, the most it may; %d more are not fetched", len(self._secrets), len(new))
            new = new[: max(room, 0)]
        if not new:
            return
        for name in new:
            self._secrets[name] = self._fetch(name)
        if any(self._secrets[name] is not None for name in new):
            self._publish()

    def _changed(self, name: str) -> None:
        """The provider says ``name`` changed; called from any thread."""
        if threading.get_ident() == self._thread:
            self._refresh(name)
        elif self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server is gone
                self._loop.call_soon_threadsafe(self._refresh, name)

    def _refresh(self, name: str) -> None:
        if name not in self._secrets:
            return  # nobody asked for it
        old = self._secrets[name]
        new = self._fetch(name)
        if old == new:
            return
        self._secrets[name] = new
        _log.info("secret %s changed; pushing it to %d streams", describe(name), len(self._listeners))
        self._publish()

    def _fetch(self, name: str) -> Resource | None:
        try:
            secret = self._provider.get_secret(name)
            return secret_resource(name, secret) if secret is not None else None
        except InvalidResourceError as error:
            _log.error("secret provider gave an unusable secret %s: %s", describe(name), str(error))
        except Exception:
            _log.exception("secret provider failed to give secret %s", describe(name))
        return None

    def _publish(self) -> None:
        self._snapshot = Snapshot(resource for resource in self._secrets.values() if resource is not None)
        for listener in list(self._listeners):
            listener.on_view(self._snapshot)


@final
class SdsServer(ServerBase):
    """An SDS server (SotW and Delta) serving the secrets of a :class:`~mesh_xds.SecretProvider`.

    Args:
        provider: where secrets come from.
        metrics: where to count; a private registry by default.
        max_request_bytes: the largest request accepted.
        max_secrets: the most distinct secret names kept (names asked for beyond it are not fetched).
        health: serve ``grpc.health.v1.Health``.
        reflection: serve gRPC server reflection.
        credentials: serve TLS with these credentials instead of plaintext.
        grpc_options: more channel arguments for ``grpc.aio.server``.
    """

    def __init__(
        self,
        provider: SecretProvider,
        *,
        metrics: XdsMetrics | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_secrets: int = 1024,
        health: bool = True,
        reflection: bool = True,
        credentials: grpc.ServerCredentials | None = None,
        grpc_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        super().__init__(
            metrics=metrics,
            max_request_bytes=max_request_bytes,
            health=health,
            reflection=reflection,
            credentials=credentials,
            grpc_options=grpc_options,
        )
        self._store = _SecretStore(provider, max_secrets)
        self._options = StreamOptions(
            service="sds",
            source=self._store,
            clients=self._clients,
            metrics=self._metrics,
            serves=_serves,
            max_types=1,
            default_type=SECRET_TYPE,
            only_type=SECRET_TYPE,
        )

    def _services(self, server: grpc.aio.Server) -> list[str]:
        handler = stream_service(_SDS, sotw="StreamSecrets", delta="DeltaSecrets", options=self._options)
        server.add_generic_rpc_handlers([handler])
        return [_SDS]

    async def _started(self) -> None:
        self._store.start()

    async def _stopping(self) -> None:
        self._store.stop()
