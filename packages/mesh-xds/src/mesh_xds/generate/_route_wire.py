"""Outbound route configurations written as protobuf wire bytes (private).

A sidecar's outbound route configuration holds a virtual host per service, most of them with nothing but the
service's default route. Writing them as bytes (the route from a template, cut where its cluster, hash policy
and decorator go) costs a fraction of building the messages, copying them into their configuration and
serializing it. The bytes are those ``SerializeToString(deterministic=True)`` gives (fields in number order).

Field numbers, from ``envoy.config.route.v3``: ``RouteConfiguration``: name 1, virtual_hosts 2.
``VirtualHost``: name 1, domains 2, routes 3. ``Route``: match 1, route 2, decorator 5. ``RouteAction``:
cluster 1, hash_policy 15. ``Decorator``: operation 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, final

from mesh_xds import _wire

__all__ = ["DefaultRoute", "route_configuration", "virtual_host"]

_ROUTE_ACTION: Final = 2
_DECORATOR: Final = 5
_CLUSTER: Final = 1
_HASH_POLICY: Final = 15
_ONE_BYTE: Final = 0x80


def _between(fields: list[tuple[int, bytes, bytes]], low: int, high: int) -> bytes:
    return b"".join(whole for number, whole, _ in fields if low < number < high)


@final
class DefaultRoute:
    """Default routes written from their template: a Route with its match, action settings and name.

    Args:
        template: the route without cluster, hash policy and decorator.

    Raises:
        ValueError: the template has one of those, or no route action.
    """

    __slots__ = ("_action_head", "_action_tail", "_head", "_middle", "_tail")

    def __init__(self, template: Any) -> None:
        fields = _wire.split_fields(template.SerializeToString(deterministic=True))
        actions = [payload for number, _, payload in fields if number == _ROUTE_ACTION]
        if len(actions) != 1 or any(number == _DECORATOR for number, _, _ in fields):
            raise ValueError("a default route template has a route action and no decorator")
        action = _wire.split_fields(actions[0])
        if any(number in (_CLUSTER, _HASH_POLICY) for number, _, _ in action):
            raise ValueError("a default route template has no cluster nor hash policy")
        self._head = _between(fields, 0, _ROUTE_ACTION)
        self._middle = _between(fields, _ROUTE_ACTION, _DECORATOR)
        self._tail = _between(fields, _DECORATOR, 2**29)
        self._action_head = _between(action, _CLUSTER, _HASH_POLICY)
        self._action_tail = _between(action, _HASH_POLICY, 2**29)

    def route(self, cluster: str, operation: str, hash_policy: bytes | None) -> bytes:
        """The serialized route to ``cluster``, with its decorator's operation and a serialized HashPolicy."""
        action = b"".join(
            (
                _wire.text(_CLUSTER, cluster),
                self._action_head,
                b"" if hash_policy is None else _wire.header(_HASH_POLICY, len(hash_policy)) + hash_policy,
                self._action_tail,
            )
        )
        decorator = _wire.text(1, operation)
        return b"".join(
            (
                self._head,
                _wire.header(_ROUTE_ACTION, len(action)),
                action,
                self._middle,
                _wire.header(_DECORATOR, len(decorator)),
                decorator,
                self._tail,
            )
        )


def _repeated(field: int, values: Iterable[bytes]) -> bytes:
    """A repeated length-delimited field: every value, empty ones too."""
    short = _wire.SHORT_HEADERS[field]  # the fields here are below 16
    return b"".join(
        (short[len(value)] if len(value) < _ONE_BYTE else _wire.header(field, len(value))) + value for value in values
    )


def virtual_host(name: str, domains: Iterable[str], routes: Iterable[bytes], tail: bytes) -> bytes:
    """A serialized VirtualHost: its name, domains and serialized routes, then ``tail`` (its fields after 3)."""
    return b"".join(
        (_wire.text(1, name), _repeated(2, (domain.encode() for domain in domains)), _repeated(3, routes), tail)
    )


def route_configuration(name: str, virtual_hosts: Iterable[bytes], tail: bytes) -> bytes:
    """A serialized RouteConfiguration: its name and serialized virtual hosts, then ``tail`` (its fields after 2)."""
    return _wire.text(1, name) + _repeated(2, virtual_hosts) + tail
