"""Versions and nonces that are unique across server restarts (private).

A SotW ``version_info`` is ``<process prefix>-<content digest>``: within a process the same content always
has the same version (so proxies that hold the same resources show the same version, and replacing a view
with equal content pushes nothing), while a restarted server never reuses a version of the previous process
(Envoy presents its last version when it reconnects). The prefix is the start time in milliseconds (hex)
and 16 random bits. Delta resource versions are plain content hashes (:attr:`Resource.version`), equal across
restarts, so that ``initial_resource_versions`` spares resending what a reconnecting proxy already has.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import threading
import time
from collections.abc import Iterable
from typing import Final

from mesh_xds.resource import Resource

PREFIX: Final = f"{time.time_ns() // 1_000_000:x}{secrets.token_hex(2)}"
"""This process's version prefix."""

_EMPTY_DIGEST: Final = hashlib.blake2b(b"", digest_size=8).hexdigest()
_counter = itertools.count(1)
_counter_lock = threading.Lock()


def digest(resources: Iterable[Resource]) -> str:
    """A digest of the names and versions of some resources, in the order given."""
    hasher = hashlib.blake2b(digest_size=8)
    for resource in resources:
        hasher.update(resource.name.encode("utf-8", "surrogatepass"))
        hasher.update(b"\0")
        hasher.update(resource.version.encode("ascii"))
        hasher.update(b"\n")
    return hasher.hexdigest()


def version_of(content_digest: str) -> str:
    """The SotW version of content with this digest."""
    return f"{PREFIX}-{content_digest}"


EMPTY_VERSION: Final = version_of(_EMPTY_DIGEST)
"""The version of an empty response."""


def nonce() -> str:
    """A nonce never used before by this process (nor, with near certainty, by another)."""
    with _counter_lock:
        count = next(_counter)
    return f"{count:x}.{PREFIX[-4:]}"


def generation() -> str:
    """A fresh version for content that has no digest (a view whose content changed)."""
    with _counter_lock:
        count = next(_counter)
    return f"{PREFIX}-g{count}"
