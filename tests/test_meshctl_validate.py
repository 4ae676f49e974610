"""``meshctl validate``: exit codes, one line per problem, JSON for machines, namespaces, standard input."""

import json
import subprocess
import sys

import pytest

from meshctl.cli import main

VALID = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: strict
spec:
  mtls:
    mode: STRICT
"""
WARNING = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: everyone
  namespace: shop
spec:
  selector:
    matchLabels: {}
"""
INVALID = """\
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: typo
spec:
  mtls:
    mode: STRCT
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
"""


@pytest.fixture
def files(tmp_path):
    (tmp_path / "valid.yaml").write_text(VALID)
    (tmp_path / "warning.yaml").write_text(WARNING)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "invalid.yaml").write_text(INVALID)
    return tmp_path


def run(capsys, *argv):
    code = main(["validate", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_valid_files_exit_0_and_warnings_are_printed(files, capsys):
    code, out, err = run(capsys, files / "valid.yaml", files / "warning.yaml")
    assert code == 0
    assert out == (
        f"{files / 'warning.yaml'}:7:3: warning: PeerAuthentication shop/everyone: spec.selector: "
        "selector has no labels and so selects every workload of the namespace\n"
    )
    assert err == "2 objects valid, 0 invalid, 0 skipped: 0 errors, 1 warning\n"


def test_anything_invalid_exits_1_with_one_line_per_problem(files, capsys):
    code, out, err = run(capsys, files)
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[1] == (
        f"{files / 'bad' / 'invalid.yaml'}:7:5: error: PeerAuthentication default/typo: spec.mtls.mode: "
        'Unsupported value: "STRCT": supported values: "UNSET", "DISABLE", "PERMISSIVE", "STRICT"'
    )
    assert lines[0].startswith(f"{files / 'warning.yaml'}:7:3: warning: ")
    assert err == "2 objects valid, 1 invalid, 1 skipped: 1 error, 1 warning\n"


def test_namespace_flag(files, capsys):
    code, out, _ = run(capsys, "--namespace", "payments", files / "bad")
    assert code == 1
    assert "PeerAuthentication payments/typo" in out


def test_json_output(files, capsys):
    code, out, _ = run(capsys, "-o", "json", "-n", "ns1", files)
    assert code == 1
    report = json.loads(out)
    assert report["valid"] is False
    assert report["counts"] == {"errors": 1, "warnings": 1, "accepted": 2, "invalid": 1, "skipped": 1}
    assert [(item["kind"], item["namespace"], item["name"]) for item in report["accepted"]] == [
        ("PeerAuthentication", "ns1", "strict"),
        ("PeerAuthentication", "shop", "everyone"),
    ]
    assert [(d["severity"], d["line"], d["field"]) for d in report["diagnostics"]] == [
        ("warning", 7, "spec.selector"),
        ("error", 7, "spec.mtls.mode"),
    ]


def test_missing_paths_are_problems(tmp_path, capsys):
    code, out, _ = run(capsys, tmp_path / "nope.yaml")
    assert code == 1
    assert out == f"{tmp_path / 'nope.yaml'}: error: no such file or directory\n"


@pytest.mark.parametrize("argv", [["validate"], ["validate", "--bogus", "x.yaml"], ["validate", "-o", "xml", "x"]])
def test_usage_errors_exit_2(capsys, argv):
    assert main(argv) == 2
    assert "usage: meshctl" in capsys.readouterr().err


def test_standard_input_and_the_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "meshctl", "validate", "-"],
        input=INVALID.encode() + b"---\nkind: \xff\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    offset = len(INVALID) + len("---\nkind: ")
    assert result.stdout.decode().splitlines() == [f"-:14:7: error: input is not UTF-8 text (byte {offset} is invalid)"]
    valid = subprocess.run(
        [sys.executable, "-m", "meshctl", "validate", "-"], input=VALID, text=True, capture_output=True, timeout=60
    )
    assert (valid.returncode, valid.stdout) == (0, "")
