"""Snapshots: the resources of each type that one proxy (or a group of proxies) should have.

A :class:`ResourceSet` holds the resources of one type by name; a :class:`Snapshot` holds one set per type.
Both are immutable, and both share their :class:`~mesh_xds.resource.Resource` objects: a thousand proxies
with the same clusters hold a thousand references to the same bytes, and a set's encoded response body is
built once for all of them (so is a Delta answer: what changed between two sets for one subscription).

A snapshot is *consistent* when every resource it refers to over ADS is in it: the clusters named by
listeners and routes, the load assignment of every EDS cluster, the route configuration of every RDS
listener, and the secrets of every TLS context whose SDS config source is ``ads``. :meth:`Snapshot.missing`
lists what is not; :class:`~mesh_xds.SnapshotCache` refuses an inconsistent snapshot instead of sending it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Final, TypeVar, cast, final

import attrs
from google.protobuf.message import Message

from mesh_xds import _versions
from mesh_xds._text import describe
from mesh_xds.errors import InconsistentSnapshotError, InvalidResourceError
from mesh_xds.resource import CLUSTER_TYPE, Reference, Resource, pack, push_order

__all__ = ["MissingReference", "ResourceSet", "Snapshot"]

_T = TypeVar("_T")
_MEMO_KEPT: Final = 32  # values derived from one set and kept with it, the oldest dropped first
_memo_lock = threading.Lock()
_NOT_BUILT: Final = object()


def _message_name(type_url: str) -> str:
    return type_url.rpartition(".")[2]


@final
class ResourceSet(Mapping[str, Resource]):
    """The resources of one type, by name (an immutable mapping, iterated in name order).

    Raises:
        InvalidResourceError: a resource has another type, or two resources have the same name.
    """

    __slots__ = ("_by_name", "_digest", "_memo_values", "_names", "_references", "_sotw_body", "_type_url", "_version")

    def __init__(self, type_url: str, resources: Iterable[Resource] = ()) -> None:
        by_name: dict[str, Resource] = {}
        for resource in resources:
            if not isinstance(resource, Resource):
                raise InvalidResourceError(f"a ResourceSet holds Resource objects, not {describe(resource)}")
            if resource.type_url != type_url:
                raise InvalidResourceError(
                    f"resource {describe(resource.name)} of type {describe(resource.type_url)} "
                    f"cannot join a set of {describe(type_url)}"
                )
            if by_name.setdefault(resource.name, resource) is not resource:
                raise InvalidResourceError(
                    f"two {_message_name(type_url)} resources are named {describe(resource.name)}"
                )
        self._type_url = type_url
        self._by_name = {name: by_name[name] for name in sorted(by_name)}
        self._digest: str | None = None
        self._version: str | None = None
        self._references: frozenset[Reference] | None = None
        self._sotw_body: bytes | None = None
        self._names: tuple[str, ...] | None = None
        self._memo_values: dict[Hashable, object] = {}

    @property
    def type_url(self) -> str:
        """The type of every resource in the set."""
        return self._type_url

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the resources, sorted."""
        if self._names is None:
            self._names = tuple(self._by_name)
        return self._names

    @property
    def digest(self) -> str:
        """A hash of the names and versions of the resources."""
        if self._digest is None:
            self._digest = _versions.digest(self._by_name.values())
        return self._digest

    @property
    def version(self) -> str:
        """The SotW ``version_info`` of the whole set: unique to this content and this process."""
        if self._version is None:
            self._version = _versions.version_of(self.digest)
        return self._version

    @property
    def references(self) -> frozenset[Reference]:
        """Every reference made by the resources of the set."""
        if self._references is None:
            self._references = frozenset().union(*(resource.references for resource in self._by_name.values()))
        return self._references

    def sotw_body(self) -> bytes:
        """The ``resources`` fields of a SotW response holding the whole set, built once and shared."""
        if self._sotw_body is None:
            self._sotw_body = b"".join(part for resource in self._by_name.values() for part in resource.sotw_parts())
        return self._sotw_body

    def _memo(self, key: Hashable, build: Callable[[], _T]) -> _T:
        """A value derived from this set, built once and shared by every stream that asks with an equal key.

        Used within mesh_xds (Delta answers). ``key`` must say what the value is, as ``build`` is not part of it.
        At most a few dozen values are kept, the oldest dropped first, and they live as long as the set.
        """
        values = self._memo_values
        found = values.get(key, _NOT_BUILT)
        if found is _NOT_BUILT:
            found = build()
            with _memo_lock:
                found = values.setdefault(key, found)
                while len(values) > _MEMO_KEPT:
                    del values[next(iter(values))]
        return cast(_T, found)

    def __getitem__(self, name: str) -> Resource:
        return self._by_name[name]

    def get(self, name: str, default: Resource | None = None) -> Resource | None:  # type: ignore[override]
        """The resource with this name, or ``default``."""
        return self._by_name.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"ResourceSet({_message_name(self._type_url)}, {len(self._by_name)} resources)"


_EMPTY_SETS: dict[str, ResourceSet] = {}


def _empty(type_url: str) -> ResourceSet:
    found = _EMPTY_SETS.get(type_url)
    if found is None:
        found = _EMPTY_SETS.setdefault(type_url, ResourceSet(type_url))
    return found


@final
@attrs.frozen
class MissingReference:
    """A resource a snapshot refers to but does not hold.

    Attributes:
        type_url: the type of the missing resource.
        name: its name.
        referenced_by: the (type URL, name) of every resource that refers to it, sorted.
    """

    type_url: str
    name: str
    referenced_by: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        referrers = ", ".join(f"{_message_name(url)} {describe(name)}" for url, name in self.referenced_by[:3])
        more = len(self.referenced_by) - 3
        if more > 0:
            referrers += f" and {more} more"
        return f"{_message_name(self.type_url)} {describe(self.name)} (referred to by {referrers})"


@final
class Snapshot:
    """The resources of every type that a proxy should have: one :class:`ResourceSet` per type URL.

    Build one from resources (grouped by their type), from whole sets, or from messages::

        snapshot = Snapshot.from_messages([cluster, load_assignment, listener, route])
        eds_update = snapshot.replace(ResourceSet(ENDPOINT_TYPE, new_assignments))

    Raises:
        InvalidResourceError: two resources of one type share a name, or a type is given twice as a set.
    """

    __slots__ = ("_missing", "_sets")

    def __init__(self, resources: Iterable[Resource | ResourceSet] = ()) -> None:
        grouped: dict[str, list[Resource]] = {}
        sets: dict[str, ResourceSet] = {}
        for item in resources:
            if isinstance(item, ResourceSet):
                if item.type_url in sets or item.type_url in grouped:
                    raise InvalidResourceError(f"the resources of {describe(item.type_url)} are given twice")
                sets[item.type_url] = item
            elif isinstance(item, Resource):
                if item.type_url in sets:
                    raise InvalidResourceError(f"the resources of {describe(item.type_url)} are given twice")
                grouped.setdefault(item.type_url, []).append(item)
            else:
                raise InvalidResourceError(f"a Snapshot holds Resources and ResourceSets, not {describe(item)}")
        for type_url, items in grouped.items():
            sets[type_url] = ResourceSet(type_url, items)
        self._sets = {type_url: sets[type_url] for type_url in push_order(sets)}
        self._missing: dict[frozenset[str], tuple[MissingReference, ...]] = {}

    @classmethod
    def from_messages(cls, messages: Iterable[Message]) -> Snapshot:
        """A snapshot of protobuf messages, each packed with :func:`~mesh_xds.resource.pack`."""
        return cls(pack(message) for message in messages)

    @property
    def type_urls(self) -> tuple[str, ...]:
        """The types the snapshot has a set for, in push order."""
        return tuple(self._sets)

    def resources(self, type_url: str) -> ResourceSet:
        """The resources of a type (an empty set when the snapshot has none)."""
        found = self._sets.get(type_url)
        return found if found is not None else _empty(type_url)

    def replace(self, *sets: ResourceSet) -> Snapshot:
        """A new snapshot with these sets instead of this one's sets of the same types.

        The other sets are shared, not copied: an EDS-only update costs only the new load assignments.
        """
        replaced = dict(self._sets)
        for resource_set in sets:
            if not isinstance(resource_set, ResourceSet):
                raise InvalidResourceError(f"replace() takes ResourceSets, not {describe(resource_set)}")
            replaced[resource_set.type_url] = resource_set
        return Snapshot(replaced.values())

    def missing(self, *, static_clusters: Iterable[str] = ()) -> tuple[MissingReference, ...]:
        """What the snapshot refers to over ADS but does not hold, sorted by type and name.

        Args:
            static_clusters: clusters that exist without being in the snapshot (static bootstrap clusters).
        """
        statics = frozenset(static_clusters)
        found = self._missing.get(statics)
        if found is None:
            found = self._compute_missing(statics)
            self._missing[statics] = found
        return found

    def check(self, *, static_clusters: Iterable[str] = ()) -> None:
        """Raise when the snapshot is inconsistent (see :meth:`missing`).

        Raises:
            InconsistentSnapshotError: naming every missing resource and what refers to it.
        """
        missing = self.missing(static_clusters=static_clusters)
        if missing:
            shown = "; ".join(str(item) for item in missing[:10])
            more = f"; and {len(missing) - 10} more" if len(missing) > 10 else ""
            count = f"{len(missing)} resource{'s' if len(missing) > 1 else ''}"
            raise InconsistentSnapshotError(f"the snapshot lacks {count}: {shown}{more}", missing)

    def _compute_missing(self, statics: frozenset[str]) -> tuple[MissingReference, ...]:
        absent: set[tuple[str, str]] = set()
        for resource_set in self._sets.values():
            for reference in resource_set.references:
                if not reference.via_ads or reference.name in self.resources(reference.type_url):
                    continue
                if reference.type_url == CLUSTER_TYPE and reference.name in statics:
                    continue
                absent.add((reference.type_url, reference.name))
        if not absent:
            return ()
        referrers: dict[tuple[str, str], set[tuple[str, str]]] = {key: set() for key in absent}
        for resource_set in self._sets.values():
            for resource in resource_set.values():
                for reference in resource.references:
                    key = (reference.type_url, reference.name)
                    if reference.via_ads and key in referrers:
                        referrers[key].add((resource.type_url, resource.name))
        order = {type_url: index for index, type_url in enumerate(push_order(url for url, _ in absent))}
        return tuple(
            MissingReference(type_url, name, tuple(sorted(referrers[(type_url, name)])))
            for type_url, name in sorted(absent, key=lambda key: (order[key[0]], key[1]))
        )

    def __len__(self) -> int:
        return sum(len(resource_set) for resource_set in self._sets.values())

    def __repr__(self) -> str:
        counts = ", ".join(f"{len(s)} {_message_name(url)}" for url, s in self._sets.items())
        return f"Snapshot({counts or 'empty'})"
