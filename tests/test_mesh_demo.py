"""``make demo`` and ``make run``: bookinfo on real Envoy sidecars, every step checked, nothing left behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest

from mesh_demo import STEPS, binomial_bounds

DEMO = [sys.executable, "-m", "mesh_demo"]
DEADLINE = 180.0  # the demo takes about half a minute; a loaded machine gets room


@pytest.mark.slow
def test_the_demo_checks_every_step_and_exits_0():
    result = subprocess.run(DEMO, capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for number, step in enumerate(STEPS, 1):
        assert f"[{number}/{len(STEPS)}] {step.title}" in lines
    assert "MISMATCH" not in result.stdout
    assert "      stopped 14 processes, nothing left behind" in lines
    assert lines[-1].startswith("mesh demo: all 22 observations match the config; nothing left behind (")


@pytest.mark.slow
def test_make_run_serves_until_interrupted_and_then_stops_cleanly():
    lines: list[str] = []
    running = threading.Event()
    with subprocess.Popen([*DEMO, "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line.rstrip("\n"))
                if line.startswith("Press Ctrl-C to stop."):
                    running.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert running.wait(DEADLINE), "\n".join(lines)
        finally:
            process.send_signal(signal.SIGINT)
            code = process.wait(DEADLINE)
            reader.join(10)
    output = "\n".join(lines)
    assert code == 0, output
    assert "The mesh is running. Try:" in lines
    assert any(line.strip().startswith("curl -s http://127.") and "/productpage" in line for line in lines), output
    assert "      stopped 14 processes, nothing left behind" in lines


def test_bad_arguments_are_a_usage_error():
    result = subprocess.run([*DEMO, "--requests", "5"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "'5' is not a number of requests from 10 to 10000" in result.stderr


def test_the_split_bounds_are_four_standard_deviations_wide():
    assert binomial_bounds(40, 0.5) == (8, 32)  # 20 +- 4 * 3.16
    assert binomial_bounds(200, 0.2) == (18, 62)  # 40 +- 4 * 5.66
    assert binomial_bounds(10, 0.0) == (0, 0)
