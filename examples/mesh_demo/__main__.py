"""``python -m mesh_demo`` (``make demo``) and ``python -m mesh_demo run`` (``make run``).

Exit codes: 0 when every observation matched (``run``: after a clean stop), 1 on a mismatch, a failure or
something left behind, 2 on a usage error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mesh_demo.report import print_table
from mesh_demo.steps import CONFIGS, STEPS
from mesh_harness import HarnessError, Mesh, bookinfo


def _say(line: str) -> None:
    print(line, flush=True)


def _progress(line: str) -> None:
    _say(f"      {line}")


def _cancel_on_signals() -> None:
    """SIGINT and SIGTERM cancel the program once: the mesh is then stopped in order."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    signalled: list[int] = []

    def cancel(signum: int) -> None:
        if not signalled:
            signalled.append(signum)
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, cancel, signum)


async def demo(requests: int, workdir: Path | None) -> int:
    """Start bookinfo, apply each step's config, check the traffic, stop; 0 when everything matched."""
    _cancel_on_signals()
    began = time.monotonic()
    _say("mesh demo: Istio's bookinfo on real Envoy sidecars, one config at a time")
    _say("[start] meshd, then per workload an app, its mesh-agent and its Envoy; an ingress gateway")
    mesh = Mesh(bookinfo(), workdir=workdir, progress=_progress)
    matched = failed = 0
    interrupted = False
    try:
        await mesh.start()
        for number, step in enumerate(STEPS, 1):
            _say(f"[{number}/{len(STEPS)}] {step.title}")
            applied = time.monotonic()
            await mesh.apply(CONFIGS / step.config, name=step.name)
            _progress(f"applied {step.config}: served, pushed and ACKed in {time.monotonic() - applied:.1f} s")
            checks = await step.observe(mesh, requests)
            print_table(checks)
            matched += sum(check.ok for check in checks)
            failed += sum(not check.ok for check in checks)
    except HarnessError as error:
        print(f"mesh demo: {error}", file=sys.stderr, flush=True)
        failed += 1
    except asyncio.CancelledError:
        interrupted = True
    finally:
        _say("[stop] agents (and their Envoys), apps, meshd")
        leftovers = await mesh.stop()
    elapsed = time.monotonic() - began
    if interrupted:
        _say("mesh demo: interrupted")
        return 130
    if failed or leftovers:
        _say(
            f"mesh demo: FAILED: {failed} mismatches or failures, {len(leftovers)} things left behind ({elapsed:.0f} s)"
        )
        return 1
    _say(f"mesh demo: all {matched} observations match the config; nothing left behind ({elapsed:.0f} s)")
    return 0


async def run(workdir: Path | None) -> int:
    """Start bookinfo with its DestinationRules, print where to look, and wait for Ctrl-C."""
    _cancel_on_signals()
    mesh = Mesh(bookinfo(), workdir=workdir, progress=_progress)
    try:
        _say("mesh run: starting Istio's bookinfo on real Envoy sidecars")
        await mesh.start()
        await mesh.apply(CONFIGS / "destination-rule-all.yaml", name="destination-rules")
        _print_urls(mesh)
        await asyncio.Event().wait()
    except HarnessError as error:
        print(f"mesh run: {error}", file=sys.stderr, flush=True)
        return 1
    except asyncio.CancelledError:
        _say("mesh run: stopping")
    finally:
        leftovers = await mesh.stop()
    return 1 if leftovers else 0


def _print_urls(mesh: Mesh) -> None:
    control, gateway = mesh.control_plane, mesh.gateway
    assert gateway is not None
    productpage = mesh.workload("productpage")
    debug = control.debug_url
    lines = [
        "",
        "The mesh is running. Try:",
        f"  curl -s {gateway.url}/productpage                          # through the ingress gateway",
        f"  curl -s -H 'end-user: jason' {gateway.url}/productpage     # as the user jason",
        f"  curl -s -H 'Host: reviews.default.svc.cluster.local' http://{productpage.outbound}:9080/"
        "   # as productpage's app, through its sidecar",
        f"  uv run meshctl proxy-status --xds-address {control.xds_address}",
        f"  uv run meshctl proxy-config route productpage-v1 --xds-address {control.xds_address}",
        f"  meshd's pages: {debug}/debug/syncz  {debug}/debug/configz  {debug}/debug/push  {debug}/metrics",
        f"Change the config: copy Istio YAML into {mesh.config_dir}/ (meshd applies it within a second), e.g.",
        f"  cp {CONFIGS}/virtual-service-reviews-v1.yaml {mesh.config_dir}/",
        "Workloads (inbound: other sidecars reach it; app: the echo app; outbound: its sidecar's outbound listeners):",
    ]
    for workload in mesh.workloads.values():
        lines.append(
            f"  {workload.name:<16} inbound {workload.inbound:<17} app {workload.application:<17} "
            f"outbound {workload.outbound:<17} admin {workload.admin_url}"
        )
    lines += [f"Logs: {mesh.workdir / 'logs'}", "Press Ctrl-C to stop.", ""]
    _say("\n".join(lines))


def _requests(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 10 <= int(text) <= 10000):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of requests from 10 to 10000")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo (or, with ``run``, the mesh until Ctrl-C); returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m mesh_demo", description="Istio's bookinfo on real Envoy sidecars, driven by meshd."
    )
    parser.add_argument("command", nargs="?", choices=("demo", "run"), default="demo", help="default: demo")
    parser.add_argument("--requests", type=_requests, default=40, help="requests per step (default: 40)")
    parser.add_argument("--workdir", type=Path, help="keep the mesh's files and logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.command == "run":
        return asyncio.run(run(args.workdir))
    return asyncio.run(demo(args.requests, args.workdir))


if __name__ == "__main__":
    sys.exit(main())
