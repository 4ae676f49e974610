"""The core of a control plane: Istio config and a service registry in, every watching proxy's view out.

:class:`XdsController` is a :class:`~mesh_xds.ConfigWatcher`, so an :class:`~mesh_xds.XdsServer` serves
straight from it. It reads a :class:`~mesh_config.ConfigStore` and a :class:`~mesh_model.ServiceRegistry`
(ServiceEntries and WorkloadEntries of the store become services too), keeps one
:class:`~mesh_config.PushContext`, and generates each connecting proxy's snapshot with a
:class:`~mesh_xds.generate.ProxyGenerator`::

    controller = XdsController(store, registry, addresses_for=lambda proxy: addresses[proxy.id])
    await controller.start()
    server = XdsServer(controller)
    port = await server.start("127.0.0.1:15010")
    ...
    await server.stop()
    await controller.close()

Changes are pushed as istiod pushes them (ISTIO.md 2.10). The store's and the registry's change sets are
debounced (:class:`~mesh_xds.generate.Debouncer`: 100 ms of quiet, at most 10 s) and merged into one push,
which rebuilds the PushContext from the merged changes and then:

* when only endpoints (and workloads) changed, and no service gained or lost a service account (which
  changes the identities clusters verify), makes only the load assignments again: only EDS is pushed;
* when only the secrets of a :class:`~mesh_xds.SecretProvider` changed, only the secrets;
* otherwise regenerates everything, for every watching proxy (proxies of one scope share the work).

Generation runs on a worker thread, one job at a time (the first view of a new proxy waits for a push in
progress, then uses its result), so the event loop keeps serving. A proxy whose node does not parse, or
whose generated config is incomplete, gets no view (and keeps what it has), and the log says why.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Final, final

import attrs

from mesh_config import ConfigStore, MeshConfig, PushContext, ServiceEntryRegistry, all_kinds, default_mesh_config
from mesh_config.meta import Resource as ConfigResource
from mesh_model import (
    AggregateRegistry,
    ChangeSet,
    ConfigKey,
    Kind,
    MeshModelError,
    Proxy,
    ServiceKey,
    ServiceRegistry,
    Subscription,
)
from mesh_xds._text import describe
from mesh_xds.cache import ViewHandler
from mesh_xds.errors import InconsistentSnapshotError
from mesh_xds.generate.context import GenerationContext, SidecarAddresses
from mesh_xds.generate.debounce import DEFAULT_MAX_DELAY, DEFAULT_QUIET, Clock, Debouncer
from mesh_xds.generate.generator import ProxyGenerator, UnsupportedProxyError, proxy_kind
from mesh_xds.node import NodeInfo
from mesh_xds.resource import ENDPOINT_TYPE, SECRET_TYPE
from mesh_xds.secret import SecretProvider
from mesh_xds.snapshot import Snapshot

__all__ = ["AddressesFor", "ControllerStats", "XdsController"]

_log = logging.getLogger("mesh_xds.generate.controller")

AddressesFor = Callable[[Proxy], SidecarAddresses | None]
"""Where a sidecar's listeners bind: called once per connecting proxy; ``None`` for its first address."""

_ENDPOINT_KINDS: Final = frozenset({Kind.ENDPOINTS, Kind.WORKLOAD})
_ENTRY_KINDS: Final = frozenset({Kind.SERVICE_ENTRY, Kind.WORKLOAD_ENTRY})


@final
@attrs.frozen
class ControllerStats:
    """What an :class:`XdsController` has done, for debug pages.

    Attributes:
        pushes: debounced pushes completed.
        full_pushes: pushes that regenerated every resource type.
        incremental_pushes: pushes that regenerated only load assignments and (or) secrets.
        last_push_seconds: how long the last push took (rebuild and generation), 0 before the first.
        last_push_changes: how many changed keys the last push merged.
        push_version: the version of the current PushContext.
        proxies: the proxies watching now.
        views: the views delivered to proxies.
        rejected_views: generated views not served because they were incomplete or generation failed.
    """

    pushes: int
    full_pushes: int
    incremental_pushes: int
    last_push_seconds: float
    last_push_changes: int
    push_version: int
    proxies: int
    views: int
    rejected_views: int


@final
class _Watch:
    """One watching stream: its proxy, its handler and the last view it was given."""

    __slots__ = ("addresses", "cancelled", "controller", "handler", "node", "proxy", "snapshot")

    def __init__(
        self, controller: XdsController | None, node: NodeInfo, proxy: Proxy | None, handler: ViewHandler
    ) -> None:
        self.controller = controller
        self.node = node
        self.proxy = proxy
        self.handler = handler
        self.addresses: SidecarAddresses | None = None
        self.snapshot: Snapshot | None = None
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        if self.controller is not None:
            self.controller._forget(self)


def _check(value: object, kind: type, what: str) -> None:
    if not isinstance(value, kind):
        raise ValueError(f"{what} must be a {kind.__name__}, not {describe(value)}")


@final
class XdsController:
    """Serves Istio config to proxies: a :class:`~mesh_xds.ConfigWatcher` over a store and a registry.

    Args:
        store: where the Istio config comes from.
        registry: where services and endpoints come from.
        mesh: the mesh-wide settings (Istio's defaults when ``None``).
        addresses_for: where each sidecar's listeners bind; by default every address is its node's IP.
        secrets: the credentials proxies fetch over ADS (gateway ``credentialName``); their changes are pushed.
        generator: the generator to use (one is made, with ``secrets``, when ``None``).
        quiet: the debounce quiet period, in seconds.
        max_delay: the longest a change waits to be pushed, in seconds.
        clock: the debouncer's clock (a :class:`~mesh_xds.generate.ManualClock` in tests).
        service_entries: serve the store's ServiceEntries and WorkloadEntries as services, after the
            registry's own.

    Raises:
        ValueError: an argument has the wrong type or value.
    """

    def __init__(
        self,
        store: ConfigStore,
        registry: ServiceRegistry,
        *,
        mesh: MeshConfig | None = None,
        addresses_for: AddressesFor | None = None,
        secrets: SecretProvider | None = None,
        generator: ProxyGenerator | None = None,
        quiet: float = DEFAULT_QUIET,
        max_delay: float = DEFAULT_MAX_DELAY,
        clock: Clock | None = None,
        service_entries: bool = True,
    ) -> None:
        _check(store, ConfigStore, "store")
        _check(registry, ServiceRegistry, "registry")
        if mesh is not None:
            _check(mesh, MeshConfig, "mesh")
        if addresses_for is not None and not callable(addresses_for):
            raise ValueError(f"addresses_for must be a function of a Proxy, not {describe(addresses_for)}")
        if secrets is not None:
            _check(secrets, SecretProvider, "secrets")
        if generator is not None:
            _check(generator, ProxyGenerator, "generator")
        self._store = store
        self._mesh = mesh if mesh is not None else default_mesh_config()
        self._addresses_for = addresses_for
        self._generator = generator if generator is not None else ProxyGenerator(secrets=secrets)
        self._debouncer = Debouncer(self._push_changes, quiet=quiet, max_delay=max_delay, clock=clock)
        self._entries: ServiceEntryRegistry | None = None
        self._registry: ServiceRegistry = registry
        if service_entries:
            self._entries = ServiceEntryRegistry(default_export_to=self._mesh.default_service_export_to)
            self._registry = AggregateRegistry([registry, self._entries], name="controller")
        # Subscribe first: a change made while the first PushContext is built is pushed after it.
        self._subscriptions: list[Subscription] = [
            store.subscribe(self._debouncer.add),
            registry.subscribe(self._debouncer.add),
        ]
        if secrets is not None:
            self._subscriptions.append(secrets.subscribe(self._secret_changed))
        self._kinds = tuple(sorted({spec.kind for spec in all_kinds()}))
        try:
            self._by_kind = {kind: store.list(kind) for kind in self._kinds}
            resources = self._resources()
            if self._entries is not None:
                self._entries.update(resources)
            self._push = PushContext.build(resources, self._registry, root_namespace=self._mesh.root_namespace)
            self._accounts = self._all_accounts()
        except BaseException:
            for subscription in self._subscriptions:
                subscription.cancel()
            raise
        self._work = threading.Lock()  # one generation job at a time
        self._state = threading.Lock()
        self._watches: dict[int, _Watch] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._counts = {"full": 0, "incremental": 0, "views": 0, "rejected": 0, "changes": 0}
        self._last_push_seconds = 0.0
        self._unpushed = ChangeSet()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start pushing changes (views are served from construction on; changes wait for this)."""
        if self._closed:
            raise RuntimeError("the controller is closed")
        self._loop = asyncio.get_running_loop()
        self._debouncer.start()

    async def close(self) -> None:
        """Stop: no more pushes, and no more views for the proxies watching now."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions.clear()
        await self._debouncer.close()
        with self._state:
            watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            watch.cancelled = True
        for task in list(self._tasks):
            task.cancel()

    async def __aenter__(self) -> XdsController:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def flush(self) -> None:
        """Push the pending changes now, without waiting for them to settle; return when pushed."""
        await self._debouncer.flush()

    async def wait_idle(self, *, timeout: float = 30.0) -> None:
        """Wait until no change is pending and no push runs.

        Raises:
            TimeoutError: that did not happen within ``timeout`` seconds.
        """
        await self._debouncer.wait_idle(timeout=timeout)

    # ---------------------------------------------------------------- what debug pages read

    @property
    def push_context(self) -> PushContext:
        """The PushContext of the last push."""
        return self._push

    @property
    def generator(self) -> ProxyGenerator:
        """The generator of the views."""
        return self._generator

    @property
    def pending(self) -> ChangeSet:
        """The changes not pushed yet."""
        return self._debouncer.pending

    @property
    def stats(self) -> ControllerStats:
        """What the controller has done so far."""
        with self._state:
            proxies = len(self._watches)
        counts = self._counts
        return ControllerStats(
            pushes=counts["full"] + counts["incremental"],
            full_pushes=counts["full"],
            incremental_pushes=counts["incremental"],
            last_push_seconds=self._last_push_seconds,
            last_push_changes=counts["changes"],
            push_version=self._push.version,
            proxies=proxies,
            views=counts["views"],
            rejected_views=counts["rejected"],
        )

    def views(self) -> dict[str, Snapshot]:
        """The current view of each watching node, by node id (the latest stream's, for a node with two)."""
        with self._state:
            watches = list(self._watches.values())
        return {watch.node.id: watch.snapshot for watch in watches if watch.snapshot is not None}

    # ---------------------------------------------------------------- ConfigWatcher

    def watch(self, node: NodeInfo, on_change: ViewHandler) -> Subscription:
        """Deliver the node's view to ``on_change`` until the subscription is cancelled (a ConfigWatcher).

        The first view is generated on a worker thread and delivered when ready; a node that does not
        parse as an Istio proxy gets none, and the log says why.
        """
        proxy = self._parse(node)
        if proxy is None or self._closed:
            return _Watch(None, node, None, on_change)
        watch = _Watch(self, node, proxy, on_change)
        try:
            watch.addresses = self._addresses(proxy)
        except ValueError as error:
            _log.warning("%s gets no config: %s", describe(node.id), error)
            return _Watch(None, node, None, on_change)
        with self._state:
            self._watches[id(watch)] = watch
        _log.info("%s %s is watching", proxy.type.value, describe(node.id))
        self._run_soon(lambda: self._first_view(watch))
        return watch

    def _parse(self, node: NodeInfo) -> Proxy | None:
        try:
            proxy = Proxy.parse(node.id, dict(node.metadata), locality=node.locality or None)
            proxy_kind(GenerationContext(proxy, self._push, self._registry, self._mesh))
        except (MeshModelError, UnsupportedProxyError) as error:
            _log.warning("node %s gets no config: %s", describe(node.id), error)
            return None
        return proxy

    def _addresses(self, proxy: Proxy) -> SidecarAddresses | None:
        if self._addresses_for is None:
            return None
        try:
            found = self._addresses_for(proxy)
        except Exception as error:
            _log.exception("addresses_for(%s) failed", describe(proxy.id))
            raise ValueError(f"addresses_for failed: {error}") from None
        if found is not None and not isinstance(found, SidecarAddresses):
            raise ValueError(f"addresses_for returned {describe(found)}, not SidecarAddresses or None")
        return found

    def _forget(self, watch: _Watch) -> None:
        with self._state:
            self._watches.pop(id(watch), None)

    def _run_soon(self, job: Callable[[], None]) -> None:
        """Run ``job`` on a worker thread from the event loop; in the caller's thread when there is none."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = self._loop if self._loop is not None and self._loop.is_running() else None
            if loop is not None:
                future = asyncio.run_coroutine_threadsafe(asyncio.to_thread(job), loop)
                future.add_done_callback(_log_failure)
                return
        if loop is None:
            job()
            return
        task = loop.create_task(asyncio.to_thread(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    def _first_view(self, watch: _Watch) -> None:
        with self._work:
            if not watch.cancelled and not self._closed:
                self._generate(watch, None)

    # ---------------------------------------------------------------- generation

    def _generate(self, watch: _Watch, types: frozenset[str] | None) -> None:
        """Make the watch's view (only ``types`` when given and it has one) and deliver it if it changed."""
        proxy = watch.proxy
        assert proxy is not None
        ctx = GenerationContext(proxy, self._push, self._registry, self._mesh, watch.addresses)
        previous = watch.snapshot
        try:
            if types is not None and previous is not None:
                snapshot = self._generator.refresh(ctx, previous, types)
            else:
                snapshot = self._generator.generate(ctx, previous)
        except (InconsistentSnapshotError, UnsupportedProxyError) as error:
            self._counts["rejected"] += 1
            _log.warning("%s keeps its config: %s", describe(proxy.id), error)
            return
        except Exception:
            self._counts["rejected"] += 1
            _log.exception("generating the config of %s failed; it keeps its config", describe(proxy.id))
            return
        if snapshot is previous or watch.cancelled:
            return
        watch.snapshot = snapshot
        self._counts["views"] += 1
        try:
            watch.handler(snapshot)
        except Exception:
            _log.exception("the view handler of %s failed", describe(proxy.id))

    # ---------------------------------------------------------------- pushes

    def _secret_changed(self, name: str) -> None:
        self._debouncer.add(ChangeSet.of(ConfigKey(Kind.SECRET, "", name)))

    async def _push_changes(self, changes: ChangeSet) -> None:
        await asyncio.to_thread(self._push_sync, changes)

    def _push_sync(self, changes: ChangeSet) -> None:
        with self._work:
            if self._closed:
                return
            started = time.perf_counter()
            changes, self._unpushed = changes | self._unpushed, ChangeSet()
            try:
                changes = self._reload(changes)
                types = self._incremental_types(changes)
                if types is None or ENDPOINT_TYPE in types:  # a secret alone changes no index
                    self._push = self._push.rebuild(changes, self._resources(), self._registry)
            except Exception:
                self._unpushed = changes  # the next push rebuilds what this one could not
                raise
            if types is None:
                self._accounts = self._all_accounts()
            with self._state:
                watches = list(self._watches.values())
            for watch in watches:
                if self._closed:
                    return
                if not watch.cancelled:
                    self._generate(watch, types)
            self._last_push_seconds = time.perf_counter() - started
            self._counts["full" if types is None else "incremental"] += 1
            self._counts["changes"] = len(changes)
            _log.info(
                "%s push %d of %d changes to %d proxies in %.1f ms",
                "full" if types is None else "incremental",
                self._push.version,
                len(changes),
                len(watches),
                self._last_push_seconds * 1000,
            )

    def _resources(self) -> tuple[ConfigResource[Any], ...]:
        return tuple(resource for kind in self._kinds for resource in self._by_kind[kind])

    def _reload(self, changes: ChangeSet) -> ChangeSet:
        """Read the changed kinds from the store again; add what the ServiceEntry registry says changed."""
        changed = [kind for kind in self._kinds if kind in changes.kinds]
        for kind in changed:
            self._by_kind[kind] = self._store.list(kind)
        if self._entries is not None and _ENTRY_KINDS & changes.kinds:
            changes = changes.merge(self._entries.update(self._resources()))
        return changes

    def _incremental_types(self, changes: ChangeSet) -> frozenset[str] | None:
        """The types an incremental push regenerates, or None when the push must be full."""
        kinds = changes.kinds
        if not changes or not kinds <= _ENDPOINT_KINDS | {Kind.SECRET}:
            return None
        types = set()
        if kinds & _ENDPOINT_KINDS:
            if self._accounts_changed(changes.of_kind(Kind.ENDPOINTS)):
                return None
            types.add(ENDPOINT_TYPE)
        if Kind.SECRET in kinds:
            types.add(SECRET_TYPE)
        return frozenset(types)

    def _accounts_changed(self, keys: Iterable[ConfigKey]) -> bool:
        """Whether a service's endpoints gained or lost a service account (Istio then pushes in full)."""
        changed = False
        for key in keys:
            try:
                service_key = ServiceKey(key.namespace, key.name)
            except MeshModelError:
                continue
            accounts = self._accounts_of(service_key)
            if accounts != self._accounts.get(service_key, frozenset()):
                _log.info("the service accounts of %s changed: full push", service_key)
                self._accounts[service_key] = accounts
                changed = True
        return changed

    def _all_accounts(self) -> dict[ServiceKey, frozenset[str]]:
        return {service.key: self._accounts_of(service.key) for service in self._push.services.services}

    def _accounts_of(self, key: ServiceKey) -> frozenset[str]:
        service = self._registry.service(key)
        if service is None:
            return frozenset()
        return frozenset(
            endpoint.service_account
            for port in service.ports
            for endpoint in self._registry.endpoints(key, port.number)
            if endpoint.service_account
        )


def _log_failure(future: Any) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        _log.error("a generation job failed", exc_info=error)
