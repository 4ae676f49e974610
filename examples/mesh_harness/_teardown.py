"""What a stopped mesh may have left behind: processes, listening sockets, Unix sockets, shared memory files."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from mesh_harness._addresses import ports_free
from mesh_harness._process import Child, group_alive, process_alive

_SETTLE: Final = 5.0


def _is_envoy(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"envoy" in command.split(b"\0", 1)[0]


def _found(
    children: Sequence[Child],
    envoys: Iterable[tuple[str, int, int]],
    sockets: Iterable[Path],
    listeners: Iterable[tuple[str, Sequence[int]]],
) -> list[str]:
    problems = []
    for child in children:
        pid = child.pid
        if pid is not None and (process_alive(pid) or group_alive(pid)):
            problems.append(f"{child.name} (pid {pid}) or a process it started is still running")
    for node, pid, base_id in envoys:
        if pid and process_alive(pid) and _is_envoy(pid):
            problems.append(f"the Envoy of {node} (pid {pid}) is still running")
        shared = Path(f"/dev/shm/envoy_shared_memory_{base_id * 10}")
        if shared.exists():
            problems.append(f"{shared} is left")
    problems += [f"the socket {path} is left" for path in sockets if path.exists() or path.is_symlink()]
    problems += [
        f"something still listens on {address} (ports {list(ports)})"
        for address, ports in listeners
        if not ports_free(address, ports)
    ]
    return problems


async def leftovers(
    children: Sequence[Child],
    envoys: Iterable[tuple[str, int, int]],
    sockets: Iterable[Path],
    listeners: Iterable[tuple[str, Sequence[int]]],
) -> tuple[str, ...]:
    """What is still there after the mesh stopped, given a few seconds to go away.

    Args:
        children: the processes started.
        envoys: ``(node id, pid, base id)`` of every Envoy seen.
        sockets: Unix socket paths that must be gone.
        listeners: ``(address, ports)`` on which nothing may listen any more.
    """
    envoys, sockets, listeners = list(envoys), list(sockets), list(listeners)
    deadline = time.monotonic() + _SETTLE
    while True:
        problems = await asyncio.to_thread(_found, children, envoys, sockets, listeners)
        if not problems or time.monotonic() >= deadline:
            return tuple(problems)
        await asyncio.sleep(0.1)
