"""A whole mesh on loopback: meshd, and per workload an echo app, its mesh-agent and its Envoy sidecar.

:class:`Mesh` starts everything a :class:`~mesh_harness.Topology` describes, each part a process of its own on
addresses of its own in 127.0.0.0/8, waits until every proxy is ready and SYNCED, and then lets a program or
a test send requests through any workload's sidecar or through the ingress gateway, change the config while
the mesh runs, and tear everything down without leaving a process, a socket or a shared-memory file::

    async with Mesh(bookinfo()) as mesh:
        response = await mesh.ingress("/productpage")
        assert response.hop("reviews").status == 200
        await mesh.apply(REVIEWS_V1)                  # validated, written for meshd, pushed and ACKed
        response = await mesh.request("productpage", "reviews")
        assert response.version == "v1"
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, final

from mesh_config import CONFIG_SUFFIXES
from mesh_harness import _parts
from mesh_harness._config import ConfigFile, Key, check_name, pending, problems_of
from mesh_harness._files import INGRESS_FILE, ingress_yaml, registry_yaml, write_atomically
from mesh_harness._layout import Layout
from mesh_harness._probe import get_json, http_get, sync_problems
from mesh_harness._process import Child
from mesh_harness._teardown import leftovers
from mesh_harness.errors import ConfigRejectedError, HarnessError, StartError
from mesh_harness.response import Response, send
from mesh_harness.topology import Topology
from mesh_harness.workload import ControlPlane, Gateway, Workload
from mesh_model import SpiffeId
from mesh_xds import ProxyStatus, fetch_proxy_statuses
from meshd import ROOT_CERT_FILE, mint_token
from meshd.tokens import load_token_key

__all__ = ["Mesh"]

_STOP_GRACE: Final = 10.0
_START_SLACK: Final = 10.0  # past the start deadline, for a check that hangs: the waits name what is late
_TOKEN_TTL: Final = timedelta(days=1)

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


@final
class Mesh:
    """A running mesh for a topology; :meth:`start` it and :meth:`stop` it, or use it as an async context.

    Args:
        topology: the services, their versions, ports and namespaces, and who calls whom.
        config_dir: Istio YAML to start with (copied; the files below it with ``.yaml``, ``.yml`` or ``.json``).
        workdir: where the config, the registry, the logs and the agents' files go; a new temporary
            directory (removed on :meth:`stop`) when ``None``. Give a new or empty directory (the config and
            the CA of a mesh that ran there before would be used again), on a short path (the agents' Unix
            sockets live there).
        start_timeout: seconds for the whole mesh to be ready and SYNCED.
        sync_timeout: seconds for a config change to be served, pushed and ACKed by every proxy.
        log_level: the agents' and Envoys' log level (``debug``, ``info``, ``warning`` or ``error``).
        certificate_ttl: the lifetime of the workload certificates the agents ask for (``mesh-agent
            --secret-ttl``, whole seconds, at least 2); each agent renews at about half of it. ``None`` keeps
            the agents' default of 24 hours. A short one shows rotation under traffic.
        progress: called with a line of text at each stage of :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        topology: Topology,
        *,
        config_dir: str | os.PathLike[str] | None = None,
        workdir: str | os.PathLike[str] | None = None,
        start_timeout: float = 120.0,
        sync_timeout: float = 30.0,
        log_level: str = "warning",
        certificate_ttl: timedelta | None = None,
        progress: Progress | None = None,
    ) -> None:
        if not isinstance(topology, Topology):
            raise HarnessError(f"topology must be a Topology, not {topology!r}")
        if log_level not in ("debug", "info", "warning", "error"):
            raise HarnessError(f"log_level must be debug, info, warning or error, not {log_level!r}")
        if certificate_ttl is not None and (
            not isinstance(certificate_ttl, timedelta) or certificate_ttl < timedelta(seconds=2)
        ):
            raise HarnessError(f"certificate_ttl must be a timedelta of at least 2 seconds, not {certificate_ttl!r}")
        self._topology = topology
        self._certificate_ttl = certificate_ttl
        self._initial = None if config_dir is None else Path(config_dir)
        if self._initial is not None and not self._initial.is_dir():
            raise HarnessError(f"config_dir {str(self._initial)!r} is not a directory")
        self._given_workdir = None if workdir is None else Path(workdir)
        self._start_timeout = start_timeout
        self._sync_timeout = sync_timeout
        self._log_level = log_level
        self._progress = progress or _quiet
        self._root: Path | None = None
        self._layout: Layout | None = None
        self._children: list[Child] = []
        self._envoys: dict[str, tuple[int, int]] = {}  # node id -> (pid, base id)
        self._applied: dict[str, ConfigFile] = {}
        self._leftovers: tuple[str, ...] = ()
        self._start_deadline = 0.0
        self._started = False
        self._stopped = False

    # ---------------------------------------------------------------- where things are

    @property
    def topology(self) -> Topology:
        """The topology."""
        return self._topology

    @property
    def control_plane(self) -> ControlPlane:
        """Where meshd serves (after :meth:`start`)."""
        return self._placed.control

    @property
    def gateway(self) -> Gateway | None:
        """The ingress gateway, ``None`` when the topology has no ingress."""
        return None if self._layout is None else self._layout.gateway

    @property
    def workloads(self) -> Mapping[str, Workload]:
        """Every workload by name (``reviews-v1``; ``reviews-v1.<namespace>`` when the name repeats)."""
        return {} if self._layout is None else dict(self._layout.workloads)

    @property
    def _placed(self) -> Layout:
        if self._layout is None:
            raise HarnessError("the mesh is not started")
        return self._layout

    @property
    def workdir(self) -> Path:
        """The mesh's files: ``config/`` (meshd's config directory), ``registry.yaml``, ``logs/``, ..."""
        if self._root is None:
            raise HarnessError("the mesh is not started")
        return self._root

    @property
    def config_dir(self) -> Path:
        """The config directory meshd follows: YAML dropped here is applied (what :meth:`apply` does, checked)."""
        return self.workdir / "config"

    @property
    def applied(self) -> tuple[str, ...]:
        """The names of the configs applied with :meth:`apply` and not removed."""
        return tuple(self._applied)

    def workload(self, name: str) -> Workload:
        """A workload by name (``reviews-v1``, ``reviews-v1.default``) or by service when it has one version.

        Raises:
            HarnessError: no workload, or several, match.
        """
        workloads = self.workloads
        found = workloads.get(name)
        if found is not None:
            return found
        matches = [w for w in workloads.values() if name in (w.service, f"{w.service}.{w.namespace}")]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(sorted(workloads)) or "none: the mesh is not started"
        if matches:
            raise HarnessError(f"{name!r} has {len(matches)} workloads; name one: {known}")
        raise HarnessError(f"no workload {name!r} (workloads: {known})")

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Mesh:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start meshd, the apps, the agents and their Envoys; return when every proxy is ready and SYNCED.

        Raises:
            StartError: a part exited or did not get ready within ``start_timeout`` (with its log's tail);
                what was started is stopped again.
            ConfigRejectedError: the initial config does not validate.
        """
        if self._started:
            raise HarnessError("a Mesh can be started once")
        self._started = True
        self._start_deadline = time.monotonic() + self._start_timeout
        try:
            await asyncio.wait_for(self._start(), self._start_timeout + _START_SLACK)
        except TimeoutError:
            await self.stop()
            raise StartError(f"the mesh was not ready within {self._start_timeout:g} s") from None
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        began = time.monotonic()
        root = self._make_workdir()
        layout = self._layout = Layout.place(self._topology)
        control = layout.control
        config = root / "config"
        config.mkdir(exist_ok=True)
        if self._initial is not None:
            _copy_config(self._initial, config / "initial")
        if layout.gateway is not None and self._topology.ingress is not None:
            target = self._topology.resolve(self._topology.ingress)
            write_atomically(config / INGRESS_FILE, ingress_yaml(layout.gateway, target))
        registry = root / "registry.yaml"
        write_atomically(registry, registry_yaml(self._topology.services, layout.workloads.values()))
        (root / "logs").mkdir(exist_ok=True)
        meshd_dir = root / "meshd"
        await self._spawn("meshd", "meshd", _parts.meshd_args(control, config, registry=registry, workdir=meshd_dir))
        await self._wait("meshd to serve", functools.partial(self._answers, f"{control.debug_url}/ready"))
        self._progress(f"meshd serves xDS on {control.xds_address}, debug pages on {control.debug_url}")
        await self._check_initial_config()
        await self._start_workloads(layout, meshd_dir)
        await self._wait("every proxy to be SYNCED", self._unsynced)
        proxies = len(layout.proxies())
        self._progress(f"all {proxies} proxies are ready and SYNCED ({time.monotonic() - began:.1f} s)")

    def _make_workdir(self) -> Path:
        if self._given_workdir is not None:
            self._given_workdir.mkdir(parents=True, exist_ok=True)
            self._root = self._given_workdir
        else:
            self._root = Path(tempfile.mkdtemp(prefix="mesh-"))
        return self._root

    async def _check_initial_config(self) -> None:
        status, configz = await asyncio.to_thread(get_json, f"{self.control_plane.debug_url}/debug/configz")
        if status != 200:
            return
        problems = [
            problem
            for path in sorted(self.config_dir.rglob("*"))
            if path.is_file()
            for problem in problems_of(configz, path)
        ]
        if problems:
            raise ConfigRejectedError("the initial config does not validate:\n  " + "\n  ".join(problems))

    async def _start_workloads(self, layout: Layout, meshd_dir: Path) -> None:
        control, root = layout.control, self.workdir
        root_cert = meshd_dir / ROOT_CERT_FILE
        key = await asyncio.to_thread(load_token_key, meshd_dir, create=False)
        tokens = root / "tokens"
        tokens.mkdir(mode=0o700, exist_ok=True)

        def token(namespace: str, account: str) -> Path:
            path = tokens / f"{namespace}.{account}"
            if not path.exists():
                path.write_text(mint_token(key, SpiffeId("cluster.local", namespace, account), ttl=_TOKEN_TTL))
            return path

        level = self._log_level
        ttl = self._certificate_ttl
        ttl_args = [] if ttl is None else ["--secret-ttl", f"{int(ttl.total_seconds())}s"]
        for workload in layout.workloads.values():
            calls = {
                callee.name: (callee.port, callee.host)
                for callee in (self._topology.resolve(call, workload.namespace) for call in workload.calls)
            }
            await self._spawn(f"{workload.key} app", "meshecho", _parts.echo_args(workload, calls))
            account = token(workload.namespace, workload.service_account)
            workdir = root / workload.key
            args = _parts.sidecar_args(
                workload, control, root_cert=root_cert, token=account, workdir=workdir, log_level=level
            )
            await self._spawn(f"{workload.key} agent", "mesh_agent", args + ttl_args)
        gateway = layout.gateway
        if gateway is not None:
            account = token(gateway.namespace, gateway.service_account)
            workdir = root / gateway.key
            args = _parts.gateway_args(
                gateway, control, root_cert=root_cert, token=account, workdir=workdir, log_level=level
            )
            await self._spawn("ingress gateway agent", "mesh_agent", args + ttl_args)
        also = " and the ingress gateway" if gateway is not None else ""
        self._progress(f"started {len(layout.workloads)} workloads (app, agent, Envoy each){also}")
        waits = [
            self._wait(f"{w.name}'s app", functools.partial(self._answers, f"{w.app_url}/healthz"))
            for w in layout.workloads.values()
        ]
        waits += [
            self._wait(f"{name}'s agent", functools.partial(self._ready, url, node))
            for name, url, node, _ in layout.proxies()
        ]
        await asyncio.gather(*waits)

    async def _spawn(self, name: str, module: str, args: list[str]) -> Child:
        log = self.workdir / "logs" / f"{name.replace(' ', '-')}.log"
        child = Child.python(name, module, args, log)
        self._children.append(child)
        await child.start()
        return child

    async def stop(self) -> tuple[str, ...]:
        """Stop the agents (and their Envoys), the apps and meshd, and check that nothing is left; idempotent.

        Each process gets SIGTERM, then SIGKILL for its process group after a grace period. The temporary
        working directory is removed (a ``workdir`` that was given is kept, with the logs).

        Returns:
            What is left behind, one line per thing (a process, a listening socket, a Unix socket, a
            ``/dev/shm`` file); empty when the teardown was clean.
        """
        if self._stopped:
            return self._leftovers
        self._stopped = True
        agents = [child for child in self._children if child.name.endswith("agent")]
        for group in (agents, [child for child in self._children if child.name.endswith("app")]):
            await asyncio.gather(*(child.stop(_STOP_GRACE) for child in group))
        for child in reversed(self._children):
            await child.stop(_STOP_GRACE)
        layout, root = self._layout, self._root
        self._leftovers = await leftovers(
            self._children,
            [(node, pid, base) for node, (pid, base) in self._envoys.items()],
            [] if layout is None or root is None else [root / key / "sds.sock" for key, *_ in layout.proxies()],
            [] if layout is None else layout.listeners(),
        )
        if self._root is not None and self._given_workdir is None:
            shutil.rmtree(self._root, ignore_errors=True)
        if self._children:
            left = f"; left behind: {'; '.join(self._leftovers)}" if self._leftovers else ", nothing left behind"
            self._progress(f"stopped {len(self._children)} processes{left}")
        return self._leftovers

    # ---------------------------------------------------------------- waiting

    def _exited(self) -> Child | None:
        return next((child for child in self._children if child.returncode is not None), None)

    async def _wait(self, what: str, check: Callable[[], Awaitable[str | None]], timeout: float | None = None) -> None:
        """Wait until ``check`` returns ``None``; its last answer says why not when time runs out.

        Without ``timeout``, the wait ends when :meth:`start` must be done.
        """
        deadline = self._start_deadline if timeout is None else time.monotonic() + timeout
        interval, reason = 0.02, "not checked yet"
        while True:
            exited = self._exited()
            if exited is not None and not self._stopped:
                raise StartError(f"waiting for {what}: {exited.describe_exit()}")
            found = await check()
            if found is None:
                return
            reason = found
            if time.monotonic() >= deadline:
                waited = self._start_timeout if timeout is None else timeout
                raise StartError(f"waited {waited:g} s for {what}: {reason}")
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 0.25)

    async def _answers(self, url: str) -> str | None:
        status, body = await asyncio.to_thread(http_get, url, timeout=2.0)
        return None if status == 200 else f"{url} answered {status or 'nothing'}: {body.strip()[:300]}"

    async def _ready(self, url: str, node: str) -> str | None:
        status, body = await asyncio.to_thread(get_json, url, timeout=2.0)
        if status == 200 and isinstance(body, dict):
            envoy = body.get("envoy") or {}
            self._envoys[node] = (int(envoy.get("pid") or 0), int(envoy.get("base_id") or 0))
            return None
        reasons = body.get("reasons") if isinstance(body, dict) else None
        return "; ".join(map(str, reasons)) if reasons else f"{url} answered {status or 'nothing'}"

    async def wait_synced(self, *, timeout: float | None = None) -> None:
        """Wait until every proxy has ACKed all meshd sent it and has no listener or cluster warming.

        meshd's CSDS must say SYNCED (or NOT SENT) for every type of every proxy, its ``/debug/syncz`` that
        no push is pending, and each Envoy's admin that nothing is warming.

        Raises:
            StartError: not within ``timeout`` seconds (``sync_timeout`` by default); the message says which
                proxies are behind and how.
        """
        await self._wait("every proxy to be SYNCED", self._unsynced, self._sync_timeout if timeout is None else timeout)

    async def _unsynced(self) -> str | None:
        layout = self._placed
        proxies = layout.proxies()
        nodes, admins = [node for _, _, node, _ in proxies], [admin for *_, admin in proxies]
        return await sync_problems(layout.control.debug_url, layout.control.xds_address, nodes, admins)

    async def proxy_statuses(self) -> tuple[ProxyStatus, ...]:
        """The view meshd has of every connected proxy, over CSDS (what ``meshctl proxy-status`` shows).

        Raises:
            StatusUnavailableError: meshd does not answer.
        """
        return await asyncio.to_thread(fetch_proxy_statuses, self.control_plane.xds_address, contents=False)

    # ---------------------------------------------------------------- traffic

    async def request(
        self,
        source: str,
        service: str,
        path: str = "/",
        *,
        headers: Mapping[str, str] | None = None,
        method: str = "GET",
        body: bytes | None = None,
        timeout: float = 10.0,
    ) -> Response:
        """Send a request as ``source``'s app would: to its sidecar's outbound listener, ``Host`` the service.

        Args:
            source: the calling workload (see :meth:`workload`).
            service: the service called: ``name`` (in the source's namespace, else the only one) or
                ``name.namespace``.
            path: the request target; the echo app reads controls from it (``/?status=503``).
            headers: more headers (``end-user``, ``x-echo-delay``, ...).
            method: the method.
            body: the body.
            timeout: seconds to wait for the answer.

        Returns:
            The answer; status 0 (with ``error``) when the sidecar refused or reset the connection.

        Raises:
            HarnessError: an unknown workload; TopologyError: an unknown service.
        """
        caller = self.workload(source)
        target = self._topology.resolve(service, caller.namespace)
        return await asyncio.to_thread(
            send,
            caller.outbound,
            target.port,
            path,
            host=target.host,
            headers=headers,
            method=method,
            body=body,
            timeout=timeout,
        )

    async def ingress(
        self,
        path: str = "/",
        *,
        headers: Mapping[str, str] | None = None,
        host: str = "mesh.example.com",
        method: str = "GET",
        body: bytes | None = None,
        timeout: float = 10.0,
    ) -> Response:
        """Send a request from outside the mesh to the ingress gateway (which routes every Host to the ingress).

        Raises:
            HarnessError: the topology has no ingress.
        """
        gateway = self.gateway
        if gateway is None:
            raise HarnessError("the topology has no ingress: set Topology(ingress=...)")
        return await asyncio.to_thread(
            send,
            gateway.address,
            gateway.port,
            path,
            host=host,
            headers=headers,
            method=method,
            body=body,
            timeout=timeout,
        )

    # ---------------------------------------------------------------- config at runtime

    async def apply(self, config: str | os.PathLike[str], *, name: str | None = None, wait: bool = True) -> str:
        """Apply Istio config: check it, write it to meshd's config directory and wait until it is in force.

        Applying again under the same name replaces that config (objects it no longer holds are removed).

        Args:
            config: YAML text, or the path of a YAML file (a ``Path``).
            name: the name to replace or :meth:`remove` it by; the file's stem, else ``config-<n>``.
            wait: wait until meshd serves it and every proxy has ACKed the push and put it in force. Without,
                only the file is written: meshd reads it within about half a second (:meth:`wait_synced` alone
                cannot tell whether it has).

        Returns:
            The name.

        Raises:
            ConfigRejectedError: the config does not validate, holds no Istio object, or meshd refused it
                (the message has every problem with its line and field).
            StartError: it was not pushed and ACKed within ``sync_timeout``.
        """
        if isinstance(config, str):
            text = config
            default = f"config-{len(self._applied) + 1}"
            while default in self._applied:
                default += "-1"
        else:
            path = Path(config)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise ConfigRejectedError(f"cannot read config file {str(path)!r}: {error}") from None
            default = path.stem
        name = check_name(name if name is not None else default)
        applied = ConfigFile(name, self.config_dir / f"{name}.yaml", text)
        for other in self._applied.values():
            shared = [key for key in applied.specs if key in other.specs]
            if other.name != name and shared:
                kind, namespace, object_name = shared[0]
                raise ConfigRejectedError(
                    f"{kind} {namespace}/{object_name} is applied already, as config {other.name!r}: apply under"
                    " that name to replace it, or remove it first"
                )
        previous = self._applied.get(name)
        gone = [] if previous is None else [key for key in previous.specs if key not in applied.specs]
        await self._change(
            applied.path, applied.text, {key: (spec, applied.path) for key, spec in applied.specs.items()}, gone, wait
        )
        self._applied[name] = applied
        return name

    async def remove(self, name: str, *, wait: bool = True) -> None:
        """Remove a config applied with :meth:`apply` and wait until that is in force.

        Raises:
            HarnessError: no config of that name is applied.
            StartError: the removal was not pushed and ACKed within ``sync_timeout``.
        """
        applied = self._applied.get(name)
        if applied is None:
            raise HarnessError(f"no config {name!r} is applied (applied: {', '.join(self._applied) or 'none'})")
        await self._change(applied.path, None, {}, list(applied.specs), wait)
        del self._applied[name]

    async def _change(
        self, path: Path, text: str | None, wanted: dict[Key, tuple[Any, Path]], gone: list[Key], wait: bool
    ) -> None:
        debug = self.control_plane.debug_url
        _, configz = await asyncio.to_thread(get_json, f"{debug}/debug/configz")
        changes = bool(pending(configz, wanted, gone)[0])
        _, push = await asyncio.to_thread(get_json, f"{debug}/debug/push")
        pushes = int(push.get("pushes", 0)) if isinstance(push, dict) else 0
        if text is None:
            path.unlink(missing_ok=True)
        else:
            write_atomically(path, text)
        if not wait:
            return

        async def served() -> str | None:
            _, configz = await asyncio.to_thread(get_json, f"{debug}/debug/configz")
            waiting, errors = pending(configz, wanted, gone)
            if errors:
                raise ConfigRejectedError(f"meshd refused {path.name}:\n  " + "\n  ".join(errors))
            return f"meshd does not serve {', '.join(waiting)} yet" if waiting else None

        async def pushed() -> str | None:
            _, push = await asyncio.to_thread(get_json, f"{debug}/debug/push")
            if not isinstance(push, dict):
                return "meshd's /debug/push does not answer"
            if int(push.get("pushes", 0)) <= pushes or push.get("pending_changes"):
                return f"the push is not done: {push}"
            return None

        began = time.monotonic()
        await self._wait(f"meshd to serve {path.name}", served, self._sync_timeout)
        if changes:
            await self._wait(f"meshd to push {path.name}", pushed, self._sync_timeout)
        await self.wait_synced(timeout=max(1.0, self._sync_timeout - (time.monotonic() - began)))


def _copy_config(source: Path, target: Path) -> None:
    """Copy the config files below ``source`` (``.yaml``, ``.yml``, ``.json``) to ``target``."""
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.suffix in CONFIG_SUFFIXES:
            copy = target / path.relative_to(source)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
