"""How many workload certificates mesh_ca issues per second on one core: in-process, and through its gRPC API.

``make bench`` runs it; so does::

    ./scripts/uv.sh run --locked python benchmarks/ca_issuance.py [--seconds 4] [--concurrency 64] [--no-save]

Every measurement signs the same kind of request: a CSR for an ECDSA P-256 key naming the caller's SPIFFE
id, signed by a self-signed ECDSA P-256 CA into a 24-hour certificate. The CSRs are built beforehand, so
that the figures are the CA's and not the workloads' (a workload makes one key and one CSR per certificate).
Each measurement runs in a fresh process pinned to the first core:

* **``sign_csr`` in-process**: ``CertificateAuthority.sign_csr`` in a loop.
* **``create_certificate`` in-process**: ``CaServer.create_certificate`` in a loop, that is the API's whole
  handling of a call without the transport: the bearer token checked by a ``JwtAuthenticator``, the request
  parsed, the CSR checked and signed, the answer built and serialized.
* **gRPC API**: ``CaServer`` serves over TLS on 127.0.0.1; another process, pinned to the other cores, keeps
  ``--concurrency`` calls of ``CreateCertificate`` in flight on one channel, each with a pre-built CSR and a
  valid bearer token, and counts the certificates it receives.
* **gRPC, fixed answer**: the same callers against a bare ``grpc.aio`` server with the same kind of TLS
  certificate, answering every call with one certificate chain: what a unary call costs gRPC itself.

Each measurement first warms up, then counts for ``--seconds``; the serving process's CPU time is sampled
at both ends of the counted window. The figures are merged into ``benchmarks/results.json`` and shown in
``docs/performance.md``. The targets: the API reaches at least half of the in-process signing rate, and at
least 2,000 certificates per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Final, TypedDict

import _results
import grpc
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mesh_ca import (
    CallerCredentials,
    CaServer,
    CertificateAuthority,
    JwtAuthenticator,
    JwtIssuer,
    generate_private_key,
)
from mesh_ca._proto import CREATE_CERTIFICATE_METHOD, SERVICE_NAME, IstioCertificateRequest  # the API's messages
from mesh_model import SpiffeId

_SECTION: Final = "ca"
_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"
_CALLER: Final = SpiffeId("cluster.local", "bench", "client")
_TTL: Final = timedelta(hours=24)
_CSRS: Final = 256
_TARGET_RATE: Final = 2000.0
_TARGET_SHARE: Final = 0.5
_TIMEOUT: Final = 120.0


# ------------------------------------------------------------------------------------------ common


def _pin(cpus: set[int]) -> set[int]:
    """Run this process on ``cpus`` only (where the platform allows); return the CPUs it runs on."""
    if hasattr(os, "sched_setaffinity") and cpus:
        os.sched_setaffinity(0, cpus)
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]


def _cpu_seconds(pid: int | str = "self") -> float:
    """The CPU time a process used so far, every thread, user and system."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _csrs(count: int) -> list[bytes]:
    """PEM CSRs for new P-256 keys naming the caller, as a node agent builds them."""
    requests = []
    for _ in range(count):
        key = generate_private_key()
        builder = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(_CALLER.uri)]), critical=True)
        )
        requests.append(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return requests


# ------------------------------------------------------------------------------------------ in-process


def _requests(csrs: Sequence[bytes]) -> list[bytes]:
    """Serialized ``IstioCertificateRequest`` messages for the CSRs, asking for the usual 24 hours."""
    ttl = int(_TTL.total_seconds())
    return [IstioCertificateRequest(csr=csr.decode("ascii"), validity_duration=ttl).SerializeToString() for csr in csrs]


def _issuer() -> tuple[JwtAuthenticator, str]:
    """A token issuer's authenticator, and a valid token of the caller's service account."""
    issuer_key = generate_private_key()
    public = issuer_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    authenticator = JwtAuthenticator([JwtIssuer(_ISSUER, public_keys=[public])], trust_domain=_CALLER.trust_domain)
    claims = {
        "iss": _ISSUER,
        "aud": "istio-ca",
        "sub": f"system:serviceaccount:{_CALLER.namespace}:{_CALLER.service_account}",
        "exp": int(time.time()) + 3600,
    }
    return authenticator, jwt.encode(claims, issuer_key, algorithm="ES256")


class Rate(TypedDict):
    """Certificates issued in a counted window, and the CPU time the process spent in it."""

    issued: int
    seconds: float
    cpu_seconds: float


def _loop(issue: Callable[[int], object], seconds: float, warmup: float) -> Rate:
    """Call ``issue(n)`` for n = 0, 1, ...: ``warmup`` seconds, then ``seconds`` counted."""
    count = 0
    phase_end = time.perf_counter() + warmup
    counting = False
    start = cpu_start = 0.0
    while True:
        for _ in range(64):
            issue(count)
            count += 1
        now = time.perf_counter()
        if now < phase_end:
            continue
        if counting:
            return {"issued": count, "seconds": now - start, "cpu_seconds": _cpu_seconds() - cpu_start}
        counting, count, start, cpu_start, phase_end = True, 0, now, _cpu_seconds(), now + seconds


class InProcess(TypedDict):
    """What the in-process run measured: signing alone, and the API's whole handling without the transport."""

    sign: Rate
    handle: Rate


def _in_process(seconds: float, warmup: float) -> InProcess:
    """``CertificateAuthority.sign_csr`` in a loop, then ``CaServer.create_certificate`` (token, CSR, signature)."""
    authority = CertificateAuthority.self_signed(None)
    csrs = _csrs(_CSRS)
    identities = [_CALLER]
    sign = _loop(lambda n: authority.sign_csr(csrs[n % _CSRS], identities, ttl=_TTL), seconds, warmup)
    authenticator, token = _issuer()
    server = CaServer(authority, authenticators=[authenticator])  # not started: its handler is called directly
    credentials = CallerCredentials.of({"authorization": f"Bearer {token}"}, peer="ipv4:127.0.0.1:1")
    requests = _requests(csrs)
    handle = _loop(
        lambda n: server.create_certificate(requests[n % _CSRS], credentials).SerializeToString(), seconds, warmup
    )
    return {"sign": sign, "handle": handle}


# ------------------------------------------------------------------------------------------ gRPC


async def _serve(fixed: bool) -> None:
    """Serve on loopback; print where and with what to call it; stop when stdin closes.

    With ``fixed``, a bare ``grpc.aio`` server with the same kind of TLS certificate answers every call with
    the same certificate chain, without authenticating or signing: what a unary call costs gRPC itself.
    """
    authority = CertificateAuthority.self_signed(None)
    authenticator, token = _issuer()
    roots = authority.trust_bundle().pem()
    stop: Callable[[], Awaitable[None]]
    if fixed:
        credentials = CallerCredentials.of({"authorization": f"Bearer {token}"})
        request = _requests(_csrs(1))[0]
        answer = CaServer(authority, authenticators=[authenticator]).create_certificate(request, credentials)
        body: bytes = answer.SerializeToString()

        async def handle(_request: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            return body

        key = generate_private_key()
        issued = authority.sign_server_key(key.public_key(), ["localhost"], ip_addresses=["127.0.0.1"])
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        bare = grpc.aio.server()
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(handle)
        bare.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SERVICE_NAME, {"CreateCertificate": handler})]
        )
        port = bare.add_secure_port(
            "127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, issued.certificate_pem.encode("ascii"))])
        )
        await bare.start()
        address = f"127.0.0.1:{port}"
        stop = lambda: bare.stop(0)  # noqa: E731 - the two servers stop alike
    else:
        server = CaServer(authority, authenticators=[authenticator])
        await server.start("127.0.0.1:0")
        address = server.address
        stop = lambda: server.stop(grace=0)  # noqa: E731 - the two servers stop alike
    print(json.dumps({"address": address, "roots": roots, "token": token}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await stop()


class Load(TypedDict):
    """What the load process measured (crosses the process boundary as JSON)."""

    issued: int
    failed: int
    seconds: float
    cpu_seconds: float
    latencies_ms: list[float]
    first_error: str


async def _load(target: dict[str, str], seconds: float, warmup: float, concurrency: int) -> Load:
    """Keep ``concurrency`` calls in flight; count answers during ``seconds`` after ``warmup``.

    Prints ``start`` and ``end`` lines around the counted window, so that the caller can sample the server.
    """
    requests = _requests(_csrs(_CSRS))
    metadata_ = (("authorization", f"Bearer {target['token']}"),)
    credentials = grpc.ssl_channel_credentials(target["roots"].encode("ascii"))
    counting = False
    issued = failed = 0
    latencies: list[float] = []
    first_error = ""
    stop = asyncio.Event()
    async with grpc.aio.secure_channel(target["address"], credentials) as channel:
        # Bytes in, bytes out: the callers only count answers, so that their process costs little.
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(CREATE_CERTIFICATE_METHOD)

        async def worker(offset: int) -> None:
            nonlocal issued, failed, first_error
            index = offset
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    answer = await call(requests[index % len(requests)], metadata=metadata_, timeout=30)
                except grpc.aio.AioRpcError as error:
                    if counting:
                        failed += 1
                        first_error = first_error or f"{error.code().name}: {error.details()}"
                    continue
                if counting and answer:
                    issued += 1
                    latencies.append((time.perf_counter() - began) * 1000)
                index += concurrency

        workers = [asyncio.create_task(worker(offset)) for offset in range(concurrency)]
        await asyncio.sleep(warmup)
        print("start", flush=True)
        counting, started, cpu_start = True, time.perf_counter(), _cpu_seconds()
        await asyncio.sleep(seconds)
        counting = False
        elapsed, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_start
        print("end", flush=True)
        stop.set()
        await asyncio.gather(*workers)
    return {
        "issued": issued,
        "failed": failed,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "latencies_ms": sorted(latencies),
        "first_error": first_error,
    }


class Grpc(TypedDict):
    """What the gRPC run measured: the load process's figures and the server's CPU during the window."""

    load: Load
    server_cpu_seconds: float


def _child(mode: str, cpus: set[int], *arguments: str) -> list[str]:
    """The command line of this script in ``mode``, pinned to ``cpus``."""
    return [sys.executable, __file__, mode, "--cpus", ",".join(str(cpu) for cpu in sorted(cpus)), *arguments]


def _run_grpc(options: argparse.Namespace, mode: str, server_cpus: set[int], load_cpus: set[int]) -> Grpc:
    """Start the server (``--serve`` or ``--serve-fixed``) and the callers; return what they measured."""
    server = subprocess.Popen(_child(mode, server_cpus), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        target = server.stdout.readline()
        if not target:
            raise SystemExit(f"the CA server did not start (exit status {server.wait()})")
        command = _child("--load", load_cpus, "--seconds", str(options.seconds), "--warmup", str(options.warmup))
        command += ["--concurrency", str(options.concurrency)]
        load = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert load.stdin is not None
        assert load.stdout is not None
        load.stdin.write(target)
        load.stdin.close()
        samples: list[float] = []
        result: Load | None = None
        for line in load.stdout:
            if line.strip() in ("start", "end"):
                samples.append(_cpu_seconds(server.pid))
            elif line.startswith("{"):
                result = json.loads(line)
        if load.wait(_TIMEOUT) != 0 or result is None or len(samples) != 2:
            raise SystemExit(f"the load process failed (exit status {load.returncode})")
        return {"load": result, "server_cpu_seconds": samples[1] - samples[0]}
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _run_in_process(options: argparse.Namespace, cpus: set[int]) -> InProcess:
    command = _child("--in-process", cpus, "--seconds", str(options.seconds), "--warmup", str(options.warmup))
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False, timeout=_TIMEOUT)
    if done.returncode != 0:
        raise SystemExit(f"the in-process run failed (exit status {done.returncode})")
    result: InProcess = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------------------------ report


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted values (NaN when there are none)."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _rate(rate: Rate) -> float:
    return rate["issued"] / rate["seconds"]


def _grpc_rate(remote: Grpc) -> float:
    return remote["load"]["issued"] / remote["load"]["seconds"]


def _figures(local: InProcess, remote: Grpc, fixed: Grpc) -> dict[str, _results.Figure]:
    """The figures of the run, named as ``results.json`` records them."""
    figure = _results.figure
    in_process, over_grpc = _rate(local["sign"]), _grpc_rate(remote)
    latencies = remote["load"]["latencies_ms"]
    return {
        "ca-issuance-inprocess-p256": figure(round(in_process), "certs/s"),
        "ca-issuance-handler-inprocess-p256": figure(round(_rate(local["handle"])), "certs/s"),
        "ca-issuance-grpc-p256": figure(round(over_grpc), "certs/s"),
        "ca-issuance-grpc-inprocess-ratio": figure(over_grpc / in_process, "ratio"),
        "ca-issuance-grpc-p256-latency-p50": figure(_percentile(latencies, 0.5), "ms"),
        "ca-issuance-grpc-p256-latency-p99": figure(_percentile(latencies, 0.99), "ms"),
        "ca-issuance-grpc-fixed-answer": figure(round(_grpc_rate(fixed)), "calls/s"),
    }


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
        f"cryptography {metadata.version('cryptography')}, grpcio {metadata.version('grpcio')}, "
        f"pyjwt {metadata.version('pyjwt')}"
    )


def _per_certificate_ms(cpu_seconds: float, issued: int) -> str:
    return f"{cpu_seconds / issued * 1000:.3f}" if issued else "-"


def _grpc_cells(run: Grpc) -> dict[str, str]:
    load = run["load"]
    latencies = load["latencies_ms"]
    return {
        "rate": f"{_grpc_rate(run):,.0f}",
        "cost": _per_certificate_ms(run["server_cpu_seconds"], load["issued"]),
        "cores": f"{run['server_cpu_seconds'] / load['seconds']:.2f}",
        "callers": f"{load['cpu_seconds'] / load['seconds']:.2f}",
        "latency": f"{_percentile(latencies, 0.5):.1f} / {_percentile(latencies, 0.99):.1f}",
        "failed": f"{load['failed']:,}",
    }


def _table(local: InProcess, remote: Grpc, fixed: Grpc, options: argparse.Namespace, load_average: float) -> str:
    """The report's section: the machine, the setting, the figures of this run and the verdict."""
    sign, handle = local["sign"], local["handle"]
    in_process, over_grpc = _rate(sign), _grpc_rate(remote)
    api, bare = _grpc_cells(remote), _grpc_cells(fixed)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    about = (
        f"Run of {when} on {_machine()}; load average {load_average:.2f} when it started. Each figure counted "
        f"for {options.seconds:g} s after {options.warmup:g} s of warm-up; {options.concurrency} calls in flight "
        "on one TLS channel."
    )
    rows = [
        (
            "per second (certificates, or calls)",
            f"{in_process:,.0f}",
            f"{_rate(handle):,.0f}",
            api["rate"],
            bare["rate"],
        ),
        (
            "CPU per certificate or call, serving process (ms)",
            _per_certificate_ms(sign["cpu_seconds"], sign["issued"]),
            _per_certificate_ms(handle["cpu_seconds"], handle["issued"]),
            api["cost"],
            bare["cost"],
        ),
        (
            "CPU of the serving process (cores)",
            f"{sign['cpu_seconds'] / sign['seconds']:.2f}",
            f"{handle['cpu_seconds'] / handle['seconds']:.2f}",
            api["cores"],
            bare["cores"],
        ),
        ("CPU of the callers' process (cores)", "-", "-", api["callers"], bare["callers"]),
        ("latency of a call, p50 / p99 (ms)", "-", "-", api["latency"], bare["latency"]),
        ("failed calls", "-", "-", api["failed"], bare["failed"]),
    ]
    share = over_grpc / in_process
    lines = [
        textwrap.fill(about, width=110, break_on_hyphens=False),
        "",
        "| figure | `sign_csr` in-process | `create_certificate` in-process | gRPC API | gRPC, fixed answer |",
        "|---|---:|---:|---:|---:|",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
        f"Targets: the API at least {_TARGET_SHARE:.0%} of the in-process rate: "
        f"{'met' if share >= _TARGET_SHARE else 'not met'} ({share:.0%}); at least {_TARGET_RATE:,.0f} "
        f"certificates per second: {'met' if over_grpc >= _TARGET_RATE else 'not met'} ({over_grpc:,.0f}/s).",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> None:
    """Run both measurements and record their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds counted per measurement (default 4)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before counting (default 1)")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight (default 64)")
    parser.add_argument("--no-save", action="store_true", help="print the figures without recording them")
    parser.add_argument("--cpus", help=argparse.SUPPRESS)  # this process's CPUs, for the modes below
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    mode.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    mode.add_argument("--serve-fixed", action="store_true", help=argparse.SUPPRESS)
    mode.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.seconds <= 0 or options.warmup < 0 or options.concurrency < 1:
        parser.error("--seconds must be positive, --warmup not negative, --concurrency at least 1")
    if options.cpus:
        _pin({int(cpu) for cpu in options.cpus.split(",")})
    if options.in_process:
        print(json.dumps(_in_process(options.seconds, options.warmup)), flush=True)
        return
    if options.serve or options.serve_fixed:
        asyncio.run(_serve(fixed=options.serve_fixed))
        return
    if options.load:
        target = json.loads(sys.stdin.readline())
        result = asyncio.run(_load(target, options.seconds, options.warmup, options.concurrency))
        print(json.dumps(result), flush=True)
        return

    cpus = _cpus()
    signing = {cpus[0]}
    callers = set(cpus[1:]) or signing
    load_average = os.getloadavg()[0]
    local = _run_in_process(options, signing)
    remote = _run_grpc(options, "--serve", signing, callers)
    fixed = _run_grpc(options, "--serve-fixed", signing, callers)
    for name, run in (("API", remote), ("fixed-answer", fixed)):
        if run["load"]["failed"]:
            print(
                f"warning: {run['load']['failed']} {name} calls failed: {run['load']['first_error']}", file=sys.stderr
            )
    table = _table(local, remote, fixed, options, load_average)
    print(table)
    if not options.no_save:
        try:
            _results.merge(_figures(local, remote, fixed))
            _results.replace_section(_SECTION, table)
        except _results.ResultsError as error:
            raise SystemExit(str(error)) from None
        print(f"\nrecorded in {_results.RESULTS} and {_results.REPORT}")


if __name__ == "__main__":
    main()
