"""How fast mesh_xds generates a sidecar's config from Istio config and a registry, and pushes a route change.

``make bench`` runs it; so does::

    ./scripts/uv.sh run --locked python benchmarks/xds_generation.py [--services 1000] [--proxies 100]

The mesh (``_gen_mesh``): 1,000 services of 10 endpoints each in an :class:`~mesh_model.InMemoryRegistry`,
DestinationRules with subsets and VirtualServices for one service in ten, a mesh-wide DestinationRule
(``ISTIO_MUTUAL``) and PeerAuthentication (``STRICT``), no Sidecar: every sidecar sees every service.

- **Cold**: :meth:`ProxyGenerator.generate` for one sidecar, on a fresh generator and a fresh
  :class:`~mesh_config.PushContext` (built before the clock starts): every cluster, load assignment, listener
  and route made and packed. The registry is built once, as a running control plane's is.
- **Warm**: right after, the same generator generates a second sidecar of the same scope (the same namespace,
  labels and Sidecar): it reuses the scope's clusters, load assignments and routes, and makes its own
  listeners and inbound clusters.
- **New push**: the first sidecar again, on the same generator, after a VirtualService change (a PushContext
  rebuilt for it): what the first proxy of a scope costs in a push.
- **Convergence**: an :class:`~mesh_xds.XdsServer` serving an :class:`~mesh_xds.generate.XdsController` in a
  fresh process, 100 simulated sidecars of that scope in another (``_xds_fleet``, SotW ADS, each asking for
  what it is sent as Envoy does). Once they all hold their config, each round changes the weights of one
  VirtualService in the store and measures from the change until the server has the ACK of every client for
  the new route configuration. The controller debounces changes: the figures are given with a quiet period
  of 10 ms and with the default 100 ms, both included in the time.

Times are wall-clock medians of several rounds, after a warm-up round. The figures are merged into
``benchmarks/results.json`` and shown in ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypedDict

import _gen_mesh as mesh
import _results

from mesh_config import InMemoryConfigStore, PushContext, load_text
from mesh_model import AggregateRegistry, ChangeSet, ConfigKey, InMemoryRegistry, Kind, Proxy
from mesh_xds import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, StreamStatus, SyncState, XdsServer
from mesh_xds.generate import GenerationContext, ProxyGenerator, SidecarAddresses, XdsController

_FLEET: Final = Path(__file__).with_name("_xds_fleet.py")
_SECTION: Final = "generation"
_TARGETS_MS: Final = {"cold": 150.0, "warm": 10.0, "convergence": 1000.0}
_TYPES: Final = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)
_QUIETS_MS: Final = (10, 100)
_SYNC_TIMEOUT: Final = 300.0


# ------------------------------------------------------------------------------------------ generation


class Generation(TypedDict):
    """What the generation rounds measured, in seconds."""

    build_s: list[float]
    cold_s: list[float]
    cold_cpu_s: list[float]
    warm_s: list[float]
    new_push_s: list[float]
    resources: dict[str, int]


def _context(index: int, push: PushContext, registry: AggregateRegistry) -> GenerationContext:
    return GenerationContext(mesh.proxy(index), push, registry, addresses=mesh.addresses(index))


def _changed_config(resources: Sequence[Any], service: int, weight: int) -> tuple[Any, ...]:
    """``resources`` with the VirtualService of ``service`` sending ``weight`` % to ``v1``."""
    changed = load_text(mesh.virtual_service(service, weight)).raise_for_errors().resources[0]
    return tuple(changed if resource.key == changed.key else resource for resource in resources)


def _generation_round(
    registry: InMemoryRegistry, resources: tuple[Any, ...], routed: int, weight: int
) -> tuple[dict[str, float], dict[str, int]]:
    """One round's times (in seconds) and the first sidecar's resource counts.

    A round's objects are gone when it returns, so that the next round does not collect them on its clock.
    """
    combined = mesh.all_services(registry, resources)
    started = time.perf_counter()
    push = PushContext.build(resources, combined)
    built = time.perf_counter()
    generator = ProxyGenerator()
    cpu = time.process_time()
    begin = time.perf_counter()
    first = generator.generate(_context(0, push, combined))
    cold = time.perf_counter()
    cold_cpu = time.process_time()
    generator.generate(_context(1, push, combined))
    warm = time.perf_counter()
    changed = _changed_config(resources, routed, weight)
    key = ConfigKey(Kind.VIRTUAL_SERVICE, mesh.namespace(routed), mesh.short_name(routed))
    next_push = push.rebuild(ChangeSet.of(key), changed, combined)
    again = time.perf_counter()
    generator.generate(_context(0, next_push, combined), first)
    done = time.perf_counter()
    times = {
        "build_s": built - started,
        "cold_s": cold - begin,
        "cold_cpu_s": cold_cpu - cpu,
        "warm_s": warm - cold,
        "new_push_s": done - again,
    }
    return times, {url.rpartition(".")[2]: len(first.resources(url)) for url in _TYPES}


def measure_generation(services: int, rounds: int) -> Generation:
    """Cold, warm and new-push generation times of the benchmark's sidecars."""
    registry = mesh.registry(services)
    resources = mesh.config(services)
    routed = mesh.routed_service(services)
    result: Generation = {
        "build_s": [],
        "cold_s": [],
        "cold_cpu_s": [],
        "warm_s": [],
        "new_push_s": [],
        "resources": {},
    }
    for round_ in range(rounds + 1):  # the first round warms up
        gc.collect()  # the previous round's garbage, cycles included
        times, counts = _generation_round(registry, resources, routed, 80 if round_ % 2 == 0 else 70)
        if round_ == 0:
            result["resources"] = counts
            continue
        for name in ("build_s", "cold_s", "cold_cpu_s", "warm_s", "new_push_s"):
            result[name].append(times[name])
    return result


# ------------------------------------------------------------------------------------------ convergence


class Convergence(TypedDict):
    """What one controller's convergence rounds measured (crosses the process boundary as JSON)."""

    quiet_ms: int
    delta: bool
    first_sync_s: float
    convergence_s: list[float]
    push_s: list[float]
    server_cpu_s: list[float]


def _addresses_for(proxy: Proxy) -> SidecarAddresses:
    index = int(proxy.id.partition(".")[0].rpartition("-")[2])
    return mesh.addresses(index)


def _routes_synced(old_digest: str | None) -> Any:
    """A status predicate: a stream holds routes other than ``old_digest`` and has ACKed everything sent."""

    def synced(statuses: tuple[StreamStatus, ...]) -> bool:
        for status in statuses:
            view = status.view
            routes = status.type(ROUTE_TYPE)
            if view is None or routes is None or not status.synced or routes.state is not SyncState.SYNCED:
                continue
            if old_digest is None or view.resources(ROUTE_TYPE).digest != old_digest:
                return all(status.type(url) is not None for url in _TYPES)
        return False

    return synced


async def _all_routes_synced(server: XdsServer, nodes: Sequence[str], old_digest: str | None) -> None:
    await asyncio.gather(
        *(server.wait_until(_routes_synced(old_digest), node_id=node, timeout=_SYNC_TIMEOUT) for node in nodes)
    )


async def _start_fleet(port: int, proxies: int, *, delta: bool) -> asyncio.subprocess.Process:
    command = [sys.executable, str(_FLEET), "--target", f"127.0.0.1:{port}", "--proxies", str(proxies), "--istio"]
    command += ["--delta"] if delta else []
    fleet = await asyncio.create_subprocess_exec(*command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert fleet.stdout is not None
    line = await asyncio.wait_for(fleet.stdout.readline(), _SYNC_TIMEOUT)
    if line.strip() != b"ready":
        await fleet.wait()
        raise RuntimeError(f"the proxies' process did not start (exit status {fleet.returncode})")
    return fleet


async def _stop_fleet(fleet: asyncio.subprocess.Process) -> None:
    assert fleet.stdin is not None
    fleet.stdin.close()
    await asyncio.wait_for(fleet.communicate(), _SYNC_TIMEOUT)
    if fleet.returncode != 0:
        raise RuntimeError(f"the proxies' process failed (exit status {fleet.returncode})")


async def measure_convergence(services: int, proxies: int, rounds: int, quiet_ms: int, *, delta: bool) -> Convergence:
    """Convergence of ``proxies`` sidecars after VirtualService changes, with a server in this process."""
    logging.getLogger("mesh_xds").setLevel(logging.ERROR)
    store = InMemoryConfigStore(mesh.config(services))
    registry = mesh.registry(services)
    controller = XdsController(store, registry, addresses_for=_addresses_for, quiet=quiet_ms / 1000)
    await controller.start()
    server = XdsServer(controller)
    port = await server.start("127.0.0.1:0")
    nodes = [mesh.node_id(index) for index in range(proxies)]
    routed = mesh.routed_service(services)
    result: Convergence = {
        "quiet_ms": quiet_ms,
        "delta": delta,
        "first_sync_s": 0.0,
        "convergence_s": [],
        "push_s": [],
        "server_cpu_s": [],
    }
    try:
        fleet = await _start_fleet(port, proxies, delta=delta)
        try:
            started = time.perf_counter()
            await _all_routes_synced(server, nodes, None)
            result["first_sync_s"] = time.perf_counter() - started
            for round_ in range(rounds + 1):  # the first round warms up
                digest = controller.views()[nodes[0]].resources(ROUTE_TYPE).digest
                text = mesh.virtual_service(routed, 80 if round_ % 2 == 0 else 70)
                changed = load_text(text).raise_for_errors().resources[0]
                cpu = time.process_time()
                begin = time.perf_counter()
                store.update(changed)
                await _all_routes_synced(server, nodes, digest)
                end = time.perf_counter()
                if round_ > 0:
                    result["convergence_s"].append(end - begin)
                    result["push_s"].append(controller.stats.last_push_seconds)
                    result["server_cpu_s"].append(time.process_time() - cpu)
                await controller.wait_idle(timeout=_SYNC_TIMEOUT)
        except BaseException:
            fleet.kill()
            await fleet.wait()
            raise
        await _stop_fleet(fleet)
    finally:
        await server.stop(grace=0)
        await controller.close()
    return result


def _run_convergence(options: argparse.Namespace, quiet_ms: int) -> Convergence:
    """One controller's convergence rounds, in a fresh server process."""
    command = [sys.executable, __file__, "--serve-quiet-ms", str(quiet_ms), "--services", str(options.services)]
    command += ["--proxies", str(options.proxies), "--changes", str(options.changes)]
    command += ["--delta"] if options.delta else []
    done = subprocess.run(command, stdout=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the convergence benchmark (quiet {quiet_ms} ms) failed (exit status {done.returncode})")
    result: Convergence = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------------------------ report


def _ms(values: Sequence[float]) -> float:
    return statistics.median(values) * 1000


def _figures(generation: Generation, runs: Sequence[Convergence], services: int, proxies: int) -> dict[str, Any]:
    """The figures of the run, named as ``results.json`` records them."""
    figure = _results.figure
    base = f"xds-generation-{services}-services"
    figures = {
        f"{base}-cold-median": figure(_ms(generation["cold_s"]), "ms"),
        f"{base}-cold-min": figure(min(generation["cold_s"]) * 1000, "ms"),
        f"{base}-warm-median": figure(_ms(generation["warm_s"]), "ms"),
        f"{base}-new-push-median": figure(_ms(generation["new_push_s"]), "ms"),
        f"{base}-push-context-median": figure(_ms(generation["build_s"]), "ms"),
    }
    for run in runs:
        protocol = "-delta" if run["delta"] else ""
        name = f"{base}-{proxies}-clients-convergence-quiet-{run['quiet_ms']}ms{protocol}"
        figures[f"{name}-median"] = figure(_ms(run["convergence_s"]), "ms")
        figures[f"{name}-max"] = figure(max(run["convergence_s"]) * 1000, "ms")
    return figures


def _machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.machine(),
    )
    return f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, Python {platform.python_version()}"


def _verdict(name: str, value_ms: float) -> str:
    target = _TARGETS_MS[name]
    return f"{name} {'met' if value_ms <= target else 'not met'} ({value_ms:,.1f} ms for at most {target:,.0f} ms)"


def _table(
    generation: Generation, runs: Sequence[Convergence], services: int, proxies: int, rounds: int, load: float
) -> str:
    """The report's section: the machine, the scale, the figures of this run and the verdicts."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    counts = ", ".join(f"{count:,} {kind}" for kind, count in generation["resources"].items())
    changes = len(runs[0]["convergence_s"]) if runs else 0
    protocol = "Delta" if runs and runs[0]["delta"] else "SotW"
    about = (
        f"Run of {when} on {_machine()}; load average {load:.2f} when it started. {services:,} services of "
        f"{mesh.ENDPOINTS} endpoints; one sidecar's config: {counts}. Generation: {rounds} rounds after a "
        f"warm-up round; convergence: {proxies} {protocol} clients, {changes} VirtualService changes after a "
        "warm-up one."
    )
    rows = [
        ("PushContext.build (ms)", generation["build_s"]),
        ("cold: first sidecar, fresh generator and PushContext (ms)", generation["cold_s"]),
        ("warm: second sidecar of the same scope (ms)", generation["warm_s"]),
        ("new push: first sidecar after a VirtualService change (ms)", generation["new_push_s"]),
    ]
    lines = [textwrap.fill(about, width=110), "", "| figure | median | min | max |", "|---|---:|---:|---:|"]
    for label, values in rows:
        lines.append(f"| {label} | {_ms(values):,.1f} | {min(values) * 1000:,.1f} | {max(values) * 1000:,.1f} |")
    cpu = _ms(generation["cold_cpu_s"])
    lines.append(
        f"| cold, CPU time of the process (ms) | {cpu:,.1f} | {min(generation['cold_cpu_s']) * 1000:,.1f} | "
        f"{max(generation['cold_cpu_s']) * 1000:,.1f} |"
    )
    for run in runs:
        quiet = run["quiet_ms"]
        for label, values in (
            (f"convergence, quiet {quiet} ms: all {proxies} clients ACKed the new routes (ms)", run["convergence_s"]),
            (f"of which the controller's push (rebuild and generation), quiet {quiet} ms (ms)", run["push_s"]),
            (f"server CPU per change, quiet {quiet} ms (ms)", run["server_cpu_s"]),
        ):
            lines.append(f"| {label} | {_ms(values):,.0f} | {min(values) * 1000:,.0f} | {max(values) * 1000:,.0f} |")
    for run in runs:
        lines.append(
            f"| first sync: {proxies} clients connect and ACK everything, quiet {run['quiet_ms']} ms (ms) "
            f"| {run['first_sync_s'] * 1000:,.0f} | | |"
        )
    verdicts = [_verdict("cold", _ms(generation["cold_s"])), _verdict("warm", _ms(generation["warm_s"]))]
    verdicts += [
        _verdict("convergence", _ms(run["convergence_s"])) + f" with a quiet period of {run['quiet_ms']} ms"
        for run in runs
    ]
    lines += ["", "Targets, medians: " + "; ".join(verdicts) + "."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and record its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=1000, help="services in the mesh (default 1000)")
    parser.add_argument("--rounds", type=int, default=15, help="generation rounds (default 15)")
    parser.add_argument("--proxies", type=int, default=100, help="simulated clients (default 100)")
    parser.add_argument("--changes", type=int, default=10, help="VirtualService changes per controller (default 10)")
    parser.add_argument("--no-convergence", action="store_true", help="measure generation only")
    parser.add_argument("--delta", action="store_true", help="clients speak Delta ADS instead of SotW")
    parser.add_argument("--no-save", action="store_true", help="print the figures without recording them")
    parser.add_argument("--serve-quiet-ms", type=int, help=argparse.SUPPRESS)  # one convergence run, here
    options = parser.parse_args(argv)
    if options.services < 10 or options.rounds < 1 or options.proxies < 1 or options.changes < 1:
        parser.error("--services must be at least 10; --rounds, --proxies and --changes at least 1")
    if options.serve_quiet_ms is not None:
        try:
            result = asyncio.run(
                measure_convergence(
                    options.services, options.proxies, options.changes, options.serve_quiet_ms, delta=options.delta
                )
            )
        except (TimeoutError, RuntimeError, OSError) as error:
            raise SystemExit(f"the convergence benchmark failed: {error}") from None
        print(json.dumps(result), flush=True)
        return
    load = os.getloadavg()[0]
    logging.getLogger("mesh_xds").setLevel(logging.ERROR)
    generation = measure_generation(options.services, options.rounds)
    runs = [] if options.no_convergence else [_run_convergence(options, quiet) for quiet in _QUIETS_MS]
    table = _table(generation, runs, options.services, options.proxies, options.rounds, load)
    print(table)
    if not options.no_save:
        try:
            _results.merge(_figures(generation, runs, options.services, options.proxies))
            _results.replace_section(_SECTION, table)
        except _results.ResultsError as error:
            raise SystemExit(str(error)) from None
        print(f"\nrecorded in {_results.RESULTS} and {_results.REPORT}")


if __name__ == "__main__":
    main()
