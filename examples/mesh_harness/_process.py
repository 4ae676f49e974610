"""The mesh's child processes: each in a session of its own, its output in a log file, always stopped.

A child gets SIGTERM first (meshd, mesh-agent and mesh-echo stop cleanly on it; an agent stops its Envoy),
then, after a grace period, SIGKILL for its whole process group, which takes any Envoy an agent left behind.
Since each child leads its own session, a Ctrl-C in the terminal reaches the program that runs the mesh only,
and the mesh is stopped in order. An ``atexit`` hook kills the groups of children still running when the
interpreter exits (a program that never stopped its mesh).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, final

_TAIL_LINES: Final = 20
_running: dict[int, str] = {}


def _kill_leftovers() -> None:
    for pid in list(_running):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


atexit.register(_kill_leftovers)


def process_alive(pid: int) -> bool:
    """True when a process with this id exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def group_alive(pgid: int) -> bool:
    """True when a process of the group ``pgid`` is still there (zombies included)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@final
class Child:
    """One child process of the mesh.

    Args:
        name: how messages name it (``meshd``, ``reviews-v1 agent``, ...).
        argv: the program and its arguments; a Python module runs as ``[sys.executable, "-m", module, ...]``.
        log: the file its standard output and error go to.
        env: more environment variables.
    """

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self._argv = list(argv)
        self.log = log
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._process: asyncio.subprocess.Process | None = None

    @classmethod
    def python(cls, name: str, module: str, args: Sequence[str], log: Path) -> Child:
        """A child that runs ``python -m module args`` with this interpreter."""
        return cls(name, [sys.executable, "-m", module, *args], log)

    @property
    def pid(self) -> int | None:
        """The process id once started."""
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once it exited (negative: killed by that signal)."""
        return None if self._process is None else self._process.returncode

    async def start(self) -> None:
        """Spawn the process.

        Raises:
            OSError: the program cannot be run.
        """
        with self.log.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=self._env,
                start_new_session=True,
            )
        _running[self._process.pid] = self.name

    def tail(self, lines: int = _TAIL_LINES) -> str:
        """The last lines of its log."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def describe_exit(self) -> str:
        """``meshd exited with status 1:`` and the tail of its log."""
        tail = self.tail()
        shown = "\n    ".join(tail.splitlines()) if tail else "(no output)"
        return f"{self.name} exited with status {self.returncode}; the end of {self.log}:\n    {shown}"

    async def stop(self, grace: float) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL the process group; reap it. Idempotent."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), grace)
            except TimeoutError:
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if group_alive(process.pid):  # a grandchild (an Envoy) outlived its parent
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
        _running.pop(process.pid, None)
