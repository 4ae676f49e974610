"""What proxies share (private): interned resources and the parts generated once per proxy scope.

Two proxies whose inputs are the same get the same outbound clusters, load assignments and routes. A
:class:`ScopeKey` names those inputs: the push, registry and mesh objects, the kind of proxy, its namespace,
labels, locality, DNS domain and address family, and the Sidecar that scopes it. :class:`ScopeCache` keeps
the parts made for each key, most recently used last, and forgets the keys of older pushes as soon as a new
push is seen: in a control plane pushes only move forward. A part made from named inputs (``depends_on``:
the indexes of the push it reads) outlives its push by one: the next push's scope reuses it when the inputs
are the same objects, as :meth:`~mesh_config.PushContext.rebuild` keeps the indexes a change does not touch.

:class:`Interner` makes equal resources one object: a resource packed twice (for two proxies, or by two
pushes) is the same :class:`~mesh_xds.Resource`, held as long as some snapshot holds it.
"""

from __future__ import annotations

import ipaddress
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Final, TypeVar, final

import attrs
from google.protobuf.message import Message

from mesh_model import ConfigKey
from mesh_xds.generate.context import GenerationContext
from mesh_xds.resource import Resource, pack

__all__ = ["Interner", "ScopeCache", "ScopeKey", "scope_key"]

_T = TypeVar("_T")
DEFAULT_MAX_SCOPES: Final = 1024


@final
@attrs.frozen
class ScopeKey:
    """The inputs that decide a proxy's shared parts (identities stand for the push and the registry)."""

    push: int
    registry: int
    mesh: Hashable
    kind: str
    namespace: str
    labels: tuple[tuple[str, str], ...]
    locality: str
    dns_domain: str
    ipv6: bool
    sidecar: tuple[ConfigKey, ...]


def _all_ipv6(addresses: Iterable[str]) -> bool:
    found = tuple(addresses)
    try:
        return bool(found) and all(ipaddress.ip_address(address).version == 6 for address in found)
    except ValueError:
        return False


def _by_value(value: object) -> Hashable:
    """The value itself when it can be hashed (equal MeshConfigs share), else its identity."""
    try:
        hash(value)
    except TypeError:
        return id(value)
    return value


def scope_key(ctx: GenerationContext, kind: str) -> ScopeKey:
    """The scope of the proxy of ``ctx``, generated as ``kind`` (sidecar, router or grpc)."""
    return ScopeKey(
        push=id(ctx.push),
        registry=id(ctx.registry),
        mesh=_by_value(ctx.mesh),
        kind=kind,
        namespace=ctx.namespace,
        labels=tuple(sorted(ctx.labels.items())),
        locality=str(ctx.proxy.locality),
        dns_domain=ctx.proxy.dns_domain,
        ipv6=_all_ipv6(ctx.proxy.ip_addresses),
        sidecar=tuple(sorted(ctx.push.sidecar_scope(ctx.workload).sources)),
    )


@final
class _Entry:
    """The parts of one scope, with the objects whose identities its key holds (so that they stay alive).

    ``inputs`` holds, for the parts made from named inputs, those inputs (which keeps them alive too).
    """

    __slots__ = ("anchors", "inputs", "parts")

    def __init__(self, anchors: tuple[object, ...]) -> None:
        self.anchors = anchors
        self.parts: dict[Hashable, object] = {}
        self.inputs: dict[Hashable, tuple[object, ...]] = {}


def _same(first: tuple[object, ...], second: tuple[object, ...]) -> bool:
    return len(first) == len(second) and all(a is b for a, b in zip(first, second, strict=True))


@final
class ScopeCache:
    """The parts generated per scope: computed once, then shared (thread-safe).

    Args:
        max_scopes: the most scopes kept; the least recently used go first.
    """

    def __init__(self, max_scopes: int = DEFAULT_MAX_SCOPES) -> None:
        self._max = max_scopes
        self._lock = threading.Lock()
        self._entries: OrderedDict[ScopeKey, _Entry] = OrderedDict()
        self._retired: dict[ScopeKey, _Entry] = {}  # the previous push's entries, by key without the push
        self._push = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def part(
        self,
        ctx: GenerationContext,
        key: ScopeKey,
        name: Hashable,
        make: Callable[[], _T],
        *,
        depends_on: tuple[object, ...] | None = None,
    ) -> _T:
        """The part ``name`` of the scope ``key``, made by ``make()`` the first time it is asked for.

        Args:
            ctx: the proxy whose scope it is.
            key: the scope.
            name: the part.
            make: makes the part.
            depends_on: every object of the push that ``make`` reads (besides the registry, the mesh and the
                proxy's scope): when the previous push's scope made the part from the same objects, that part
                is the answer. ``None``: the part belongs to its push.
        """
        with self._lock:
            entry = self._entry(ctx, key)
            if name in entry.parts:
                self.hits += 1
                found: Any = entry.parts[name]
                return found  # type: ignore[no-any-return]
            if depends_on is not None:
                old = self._retired.get(attrs.evolve(key, push=0))
                inputs = old.inputs.get(name) if old is not None else None
                if old is not None and inputs is not None and _same(inputs, depends_on):
                    self.hits += 1
                    entry.inputs[name] = depends_on
                    carried: Any = entry.parts.setdefault(name, old.parts[name])
                    return carried  # type: ignore[no-any-return]
            self.misses += 1
        made = make()
        with self._lock:
            if name not in entry.parts and depends_on is not None:
                entry.inputs[name] = depends_on
            entry.parts.setdefault(name, made)
            kept: Any = entry.parts[name]
        return kept  # type: ignore[no-any-return]

    def clear(self) -> None:
        """Forget every scope."""
        with self._lock:
            self._entries.clear()
            self._retired.clear()

    def _entry(self, ctx: GenerationContext, key: ScopeKey) -> _Entry:
        if key.push != self._push:
            self._retired = {
                attrs.evolve(other, push=0): entry for other, entry in self._entries.items() if other.push == self._push
            }
            stale = [other for other in self._entries if other.push != key.push]
            for other in stale:
                del self._entries[other]
            self._push = key.push
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry((ctx.push, ctx.registry, ctx.mesh))
            self._entries[key] = entry
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return entry


@final
class Interner:
    """One :class:`~mesh_xds.Resource` object per (type, name, content), while any snapshot holds it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resources: weakref.WeakValueDictionary[tuple[str, str, str], Resource] = weakref.WeakValueDictionary()

    def __len__(self) -> int:
        return len(self._resources)

    def intern(self, resource: Resource) -> Resource:
        """The resource equal to ``resource`` that is already shared, else ``resource`` itself."""
        key = (resource.type_url, resource.name, resource.version)
        with self._lock:
            found = self._resources.get(key)
            if found is None:
                self._resources[key] = resource
                return resource
            return found

    def intern_all(self, resources: Iterable[Resource]) -> list[Resource]:
        """The shared resources equal to ``resources``, in order (see :meth:`intern`)."""
        out = []
        with self._lock:
            shared = self._resources
            for resource in resources:
                key = (resource.type_url, resource.name, resource.version)
                found = shared.get(key)
                if found is None:
                    shared[key] = found = resource
                out.append(found)
        return out

    def pack(self, messages: Iterable[Message]) -> list[Resource]:
        """Pack messages into resources, interned."""
        return self.intern_all([pack(message) for message in messages])
