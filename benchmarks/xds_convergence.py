"""How fast mesh_xds pushes a change of 1,000 clusters to 100 proxies, how many bytes it sends, what memory it holds.

``make bench`` runs it; so does::

    ./scripts/uv.sh run --locked python benchmarks/xds_convergence.py [--proxies 100] [--services 1000]

For each protocol (SotW, then Delta) a fresh server process starts an :class:`~mesh_xds.XdsServer` on
loopback, sets one snapshot (see ``_xds_mesh``) for the node id of every proxy, and starts the proxies in
another process (``_xds_fleet``: one ADS stream and one TCP connection per proxy, on one asyncio loop).
Once every proxy has ACKed its first view, each round builds a snapshot in which every cluster and every
load assignment changed, and measures the time from the first ``set_snapshot`` until the server has the
ACK of every proxy for every type of the new view (``XdsServer.wait_synced`` for each node), with the CPU
time both processes spent meanwhile. The bytes of a push are the sizes of the responses it caused (the
``pilot_xds_config_size_bytes`` metric), checked against what the proxies received. Memory is the server
process's resident set (``VmRSS``) before the proxies connect and once they all hold their view, as it
is and after ``malloc_trim`` (what is in use, without the free memory the allocator keeps).

The figures are merged into ``benchmarks/results.json`` and shown in ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final, TypedDict

import _results
import _xds_mesh as mesh

from mesh_xds import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, Snapshot, SnapshotCache, XdsServer

_FLEET: Final = Path(__file__).with_name("_xds_fleet.py")
_TYPES: Final = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)
_MODES: Final = ("sotw", "delta")
_SECTION: Final = "xds-convergence"
_TARGET_MS: Final = 1000.0
_SYNC_TIMEOUT: Final = 120.0


def _memory(field: str, pid: int | str = "self") -> float:
    """A memory figure of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def _trimmed_rss() -> float:
    """``VmRSS`` once the allocators gave back what they hold free: the memory in use, in MiB."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return _memory("VmRSS")


def _cpu_seconds(pid: int) -> float:
    """The CPU time a process used so far, every thread, user and system."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _sent(server: XdsServer) -> tuple[float, float]:
    """The responses sent so far and their bytes, every type together."""
    responses = size = 0.0
    for family in server.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "pilot_xds_config_size_bytes_sum":
                size += sample.value
            elif sample.name == "pilot_xds_config_size_bytes_count":
                responses += sample.value
    return responses, size


async def _all_synced(server: XdsServer, nodes: Sequence[str], view: Snapshot) -> None:
    """Wait until every node has ACKed every type of ``view``."""
    await asyncio.gather(
        *(server.wait_synced(node, type_urls=_TYPES, view=view, timeout=_SYNC_TIMEOUT) for node in nodes)
    )


async def _start_fleet(address: str, proxies: int, services: int, mode: str) -> asyncio.subprocess.Process:
    command = [sys.executable, str(_FLEET), "--target", address, "--proxies", str(proxies)]
    command += ["--services", str(services), *(["--delta"] if mode == "delta" else [])]
    fleet = await asyncio.create_subprocess_exec(*command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert fleet.stdout is not None
    line = await asyncio.wait_for(fleet.stdout.readline(), _SYNC_TIMEOUT)
    if line.strip() != b"ready":
        await fleet.wait()
        raise RuntimeError(f"the proxies' process did not start (exit status {fleet.returncode})")
    return fleet


async def _stop_fleet(fleet: asyncio.subprocess.Process) -> dict[str, Any]:
    assert fleet.stdin is not None
    fleet.stdin.close()  # the proxies end their streams and report
    output, _ = await asyncio.wait_for(fleet.communicate(), _SYNC_TIMEOUT)
    if fleet.returncode != 0:
        raise RuntimeError(f"the proxies' process failed (exit status {fleet.returncode})")
    summary: dict[str, Any] = json.loads(output.decode().strip().splitlines()[-1])
    return summary


class Measurement(TypedDict):
    """What one protocol's run measured (crosses the process boundary as JSON)."""

    mode: str
    convergence_s: list[float]
    set_snapshot_s: list[float]
    first_sync_s: float
    server_cpu_s: list[float]
    fleet_cpu_s: list[float]
    push_responses: float
    push_bytes: float
    rss_before_mib: float
    rss_connected_mib: float
    live_before_mib: float
    live_connected_mib: float
    rss_end_mib: float
    rss_peak_mib: float
    sent_total: list[float]
    received_total: list[float]


async def _measure(mode: str, proxies: int, services: int, rounds: int) -> Measurement:
    """Run one protocol's benchmark with the server in this process; return what it measured."""
    cache = SnapshotCache()
    server = XdsServer(cache)
    port = await server.start("127.0.0.1:0")
    try:
        return await _rounds(server, cache, port, mode, proxies, services, rounds)
    finally:
        await server.stop(grace=0)


async def _rounds(
    server: XdsServer, cache: SnapshotCache, port: int, mode: str, proxies: int, services: int, rounds: int
) -> Measurement:
    nodes = [mesh.node_id(index) for index in range(proxies)]
    current = mesh.snapshot(services, 0)
    for node in nodes:
        cache.set_snapshot(node, current)
    gc.collect()
    rss_before = _memory("VmRSS")
    live_before = _trimmed_rss()
    fleet = await _start_fleet(f"127.0.0.1:{port}", proxies, services, mode)
    started = time.perf_counter()  # the proxies connect now
    try:
        await _all_synced(server, nodes, current)
        first_sync = time.perf_counter() - started
        gc.collect()
        rss_connected = _memory("VmRSS")
        live_connected = _trimmed_rss()
        converge: list[float] = []
        set_times: list[float] = []
        server_cpu: list[float] = []
        fleet_cpu: list[float] = []
        pushes: list[tuple[float, float]] = []
        for generation in range(1, rounds + 2):  # the first round warms up
            changed = current.replace(*mesh.changed_sets(services, generation))
            sent_before = _sent(server)
            waiters = [
                asyncio.create_task(server.wait_synced(node, type_urls=_TYPES, view=changed, timeout=_SYNC_TIMEOUT))
                for node in nodes
            ]
            cpu_before = (time.process_time(), _cpu_seconds(fleet.pid))
            begin = time.perf_counter()
            for node in nodes:
                cache.set_snapshot(node, changed)
            set_done = time.perf_counter()
            await asyncio.gather(*waiters)
            end = time.perf_counter()
            cpu_after = (time.process_time(), _cpu_seconds(fleet.pid))
            sent_after = _sent(server)
            current = changed
            if generation > 1:
                converge.append(end - begin)
                set_times.append(set_done - begin)
                server_cpu.append(cpu_after[0] - cpu_before[0])
                fleet_cpu.append(cpu_after[1] - cpu_before[1])
                pushes.append((sent_after[0] - sent_before[0], sent_after[1] - sent_before[1]))
        rss_end = _memory("VmRSS")
        sent_total = _sent(server)
    except BaseException:
        fleet.kill()
        await fleet.wait()
        raise
    received = await _stop_fleet(fleet)
    return {
        "mode": mode,
        "convergence_s": converge,
        "set_snapshot_s": set_times,
        "first_sync_s": first_sync,
        "server_cpu_s": server_cpu,
        "fleet_cpu_s": fleet_cpu,
        "push_responses": statistics.median(count for count, _ in pushes),
        "push_bytes": statistics.median(size for _, size in pushes),
        "rss_before_mib": rss_before,
        "rss_connected_mib": rss_connected,
        "live_before_mib": live_before,
        "live_connected_mib": live_connected,
        "rss_end_mib": rss_end,
        "rss_peak_mib": _memory("VmHWM"),
        "sent_total": list(sent_total),
        "received_total": [sum(received["responses"].values()), sum(received["bytes"].values())],
    }


def _run_mode(mode: str, options: argparse.Namespace) -> Measurement:
    """Run one protocol's benchmark in a fresh server process, so that its memory is its own."""
    command = [sys.executable, __file__, "--serve", mode, "--proxies", str(options.proxies)]
    command += ["--services", str(options.services), "--rounds", str(options.rounds)]
    done = subprocess.run(command, stdout=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {mode} benchmark failed (exit status {done.returncode})")
    result: Measurement = json.loads(done.stdout.decode().strip().splitlines()[-1])
    if result["sent_total"] != result["received_total"]:
        print(
            f"warning: {mode}: the server sent {result['sent_total']} (responses, bytes) "
            f"but the proxies received {result['received_total']}",
            file=sys.stderr,
        )
    return result


def _label(mode: str) -> str:
    return "SotW" if mode == "sotw" else "Delta"


def _per_client_kib(result: Measurement, proxies: int) -> float:
    return (result["live_connected_mib"] - result["live_before_mib"]) * 1024 / proxies


def _figures(results: Sequence[Measurement], proxies: int, services: int) -> dict[str, _results.Figure]:
    """The figures of the run, named as ``results.json`` records them."""
    figure = _results.figure
    figures: dict[str, _results.Figure] = {}
    scale = f"{services}-clusters-{proxies}-clients"
    for result in results:
        mode = result["mode"]
        suffix = "" if mode == "sotw" else f"-{mode}"
        times = [seconds * 1000 for seconds in result["convergence_s"]]
        figures[f"xds-convergence-{scale}-{mode}-median"] = figure(statistics.median(times), "ms")
        figures[f"xds-convergence-{scale}-{mode}-p90"] = figure(_percentile(times, 0.9), "ms")
        figures[f"xds-convergence-{scale}-{mode}-max"] = figure(max(times), "ms")
        figures[f"xds-first-sync-{scale}-{mode}"] = figure(result["first_sync_s"] * 1000, "ms")
        figures[f"xds-push-bytes-{scale}{suffix}"] = figure(result["push_bytes"], "bytes")
        figures[f"xds-server-rss-0-clients{suffix}"] = figure(result["rss_before_mib"], "MiB")
        figures[f"xds-server-rss-{proxies}-clients{suffix}"] = figure(result["rss_connected_mib"], "MiB")
        figures[f"xds-server-rss-per-client{suffix}"] = figure(_per_client_kib(result, proxies), "KiB")
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
    return (
        f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, Python {platform.python_version()}, "
        f"grpcio {metadata.version('grpcio')}, protobuf {metadata.version('protobuf')}"
    )


def _table(results: Sequence[Measurement], proxies: int, services: int, rounds: int, load: float) -> str:
    """The report's section: the machine, the scale, the figures of this run and the verdict."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows: list[tuple[str, Callable[[Measurement], str]]] = [
        ("convergence, median (ms)", lambda r: f"{statistics.median(r['convergence_s']) * 1000:,.0f}"),
        ("convergence, p90 (ms)", lambda r: f"{_percentile(r['convergence_s'], 0.9) * 1000:,.0f}"),
        ("convergence, max (ms)", lambda r: f"{max(r['convergence_s']) * 1000:,.0f}"),
        (
            f"of which {proxies} `set_snapshot` calls, median (ms)",
            lambda r: f"{statistics.median(r['set_snapshot_s']) * 1000:,.1f}",
        ),
        (
            f"first sync: {proxies} proxies connect and ACK everything (ms)",
            lambda r: f"{r['first_sync_s'] * 1000:,.0f}",
        ),
        ("server CPU per push, median (ms)", lambda r: f"{statistics.median(r['server_cpu_s']) * 1000:,.0f}"),
        ("proxies' CPU per push, median (ms)", lambda r: f"{statistics.median(r['fleet_cpu_s']) * 1000:,.0f}"),
        ("responses per push", lambda r: f"{r['push_responses']:,.0f}"),
        ("bytes per push, all proxies (MB)", lambda r: f"{r['push_bytes'] / 1e6:,.1f}"),
        ("bytes per push and proxy (kB)", lambda r: f"{r['push_bytes'] / proxies / 1e3:,.0f}"),
        ("server RSS before the proxies connect (MiB)", lambda r: f"{r['rss_before_mib']:,.1f}"),
        (f"server RSS with {proxies} proxies synced (MiB)", lambda r: f"{r['rss_connected_mib']:,.1f}"),
        (
            "the same, trimmed: before / with the proxies (MiB)",
            lambda r: f"{r['live_before_mib']:,.1f} / {r['live_connected_mib']:,.1f}",
        ),
        ("RSS per proxy, trimmed (KiB)", lambda r: f"{_per_client_kib(r, proxies):,.0f}"),
        ("server RSS after the rounds (MiB)", lambda r: f"{r['rss_end_mib']:,.1f}"),
        ("server peak RSS (MiB)", lambda r: f"{r['rss_peak_mib']:,.1f}"),
    ]
    about = (
        f"Run of {when} on {_machine()}; load average {load:.2f} when it started. {proxies} proxies; "
        f"{services} clusters and load assignments ({mesh.ENDPOINTS_PER_CLUSTER} endpoints each), 1 listener, "
        f"1 route configuration of {services} virtual hosts; {rounds} rounds after a warm-up round."
    )
    lines = [
        textwrap.fill(about, width=110),
        "",
        "| figure | " + " | ".join(_label(result["mode"]) for result in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    lines += [f"| {label} | " + " | ".join(cell(result) for result in results) + " |" for label, cell in rows]
    verdicts = []
    for result in results:
        median_ms = statistics.median(result["convergence_s"]) * 1000
        verdict = "met" if median_ms <= _TARGET_MS else "not met"
        verdicts.append(f"{_label(result['mode'])} {verdict} (median {median_ms:,.0f} ms)")
    lines += ["", f"Target, convergence in at most {_TARGET_MS:,.0f} ms: " + "; ".join(verdicts) + "."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and record its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--proxies", type=int, default=100, help="simulated proxies (default 100)")
    parser.add_argument("--services", type=int, default=1000, help="clusters in the view (default 1000)")
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds (default 15)")
    parser.add_argument("--modes", default=",".join(_MODES), help="sotw, delta or both (default sotw,delta)")
    parser.add_argument("--no-save", action="store_true", help="print the figures without recording them")
    parser.add_argument("--serve", choices=_MODES, help=argparse.SUPPRESS)  # one protocol, in this process
    options = parser.parse_args(argv)
    if options.proxies < 1 or options.services < 1 or options.rounds < 1:
        parser.error("--proxies, --services and --rounds must be at least 1")
    if options.serve:
        try:
            result = asyncio.run(_measure(options.serve, options.proxies, options.services, options.rounds))
        except (TimeoutError, RuntimeError, OSError) as error:
            raise SystemExit(f"the {options.serve} benchmark failed: {error}") from None
        print(json.dumps(result), flush=True)
        return
    modes = [mode.strip() for mode in options.modes.split(",") if mode.strip()]
    if not modes or any(mode not in _MODES for mode in modes):
        parser.error(f"--modes takes sotw, delta or both, not {options.modes!r}")
    load = os.getloadavg()[0]
    results = [_run_mode(mode, options) for mode in modes]
    table = _table(results, options.proxies, options.services, options.rounds, load)
    print(table)
    if not options.no_save:
        try:
            _results.merge(_figures(results, options.proxies, options.services))
            _results.replace_section(_SECTION, table)
        except _results.ResultsError as error:
            raise SystemExit(str(error)) from None
        print(f"\nrecorded in {_results.RESULTS} and {_results.REPORT}")


if __name__ == "__main__":
    main()
