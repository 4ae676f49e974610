"""The open streams of a server, for status, CSDS, waiting and shutdown (private).

Waiting is event-driven: a stream tells the registry whenever its record changes, naming its node, and
only the waiters on that node (and those on every node) look again. A thousand ``wait_synced`` calls for a
thousand proxies therefore cost one status per change, not a thousand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, final

from mesh_xds.status import StreamStatus

StatusPredicate = Callable[[tuple[StreamStatus, ...]], bool]


class LiveStream(Protocol):
    """A stream as the registry sees it."""

    @property
    def stream_id(self) -> int:
        """The stream's number."""

    @property
    def node_id(self) -> str:
        """The client's node id, empty before the client named its node."""

    def status(self) -> StreamStatus | None:
        """The stream's record, ``None`` before the client named its node."""

    def close(self) -> None:
        """Ask the stream to end."""


@final
class Clients:
    """The open streams of a server. Used from the server's event loop only."""

    def __init__(self) -> None:
        self._streams: dict[int, LiveStream] = {}
        self._changed: asyncio.Event | None = None
        self._node_changed: dict[str, asyncio.Event] = {}

    def add(self, stream: LiveStream) -> None:
        self._streams[stream.stream_id] = stream
        self.notify(stream.node_id)

    def remove(self, stream: LiveStream) -> None:
        if self._streams.pop(stream.stream_id, None) is not None:
            self.notify(stream.node_id)

    def __len__(self) -> int:
        return len(self._streams)

    def status(self, node_id: str | None = None) -> tuple[StreamStatus, ...]:
        """The records of every stream, or of the streams of one node."""
        streams = [s for s in self._streams.values() if node_id is None or s.node_id == node_id]
        found = (stream.status() for stream in streams)
        return tuple(status for status in found if status is not None)

    def close_all(self) -> None:
        for stream in list(self._streams.values()):
            stream.close()

    def notify(self, node_id: str) -> None:
        """The record of a stream of ``node_id`` changed: wake the waiters that care."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        event = self._node_changed.pop(node_id, None)
        if event is not None:
            event.set()

    async def wait_until(
        self, predicate: StatusPredicate, timeout: float, node_id: str | None = None
    ) -> tuple[StreamStatus, ...]:
        """Wait until ``predicate(statuses)`` holds, over every stream or those of ``node_id``.

        Raises:
            TimeoutError: the predicate did not hold within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while True:
                statuses = self.status(node_id)
                if predicate(statuses):
                    return statuses
                if node_id is None:
                    if self._changed is None:
                        self._changed = asyncio.Event()
                    event = self._changed
                else:
                    event = self._node_changed.setdefault(node_id, asyncio.Event())
                await event.wait()
