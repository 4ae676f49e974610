"""Reports of a load: one line per problem for people, a JSON object for machines."""

import json

from mesh_config import LoadResult, load_text
from mesh_config.report import format_text, summary, to_json

TEXT = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: good, namespace: shop}
spec:
  selector: {matchLabels: {}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: bad}
spec:
  mtls: {mode: NOPE}
---
apiVersion: v1
kind: Service
metadata: {name: web}
"""


def result():
    return load_text(TEXT, source="mesh.yaml", default_namespace="default")


def test_format_text_is_one_line_per_diagnostic():
    assert format_text(result().diagnostics).splitlines() == [
        "mesh.yaml:5:3: warning: PeerAuthentication shop/good: spec.selector: "
        "selector has no labels and so selects every workload of the namespace",
        'mesh.yaml:11:10: error: PeerAuthentication default/bad: spec.mtls.mode: Unsupported value: "NOPE": '
        'supported values: "UNSET", "DISABLE", "PERMISSIVE", "STRICT"',
    ]
    assert format_text(()) == ""


def test_summary_counts():
    assert summary(result()) == "1 object valid, 1 invalid, 1 skipped: 1 error, 1 warning"
    assert summary(LoadResult()) == "0 objects valid, 0 invalid, 0 skipped: 0 errors, 0 warnings"


def test_to_json_is_ready_for_json_dumps():
    report = to_json(result())
    assert json.loads(json.dumps(report)) == report
    assert report["valid"] is False
    assert report["counts"] == {"errors": 1, "warnings": 1, "accepted": 1, "invalid": 1, "skipped": 1}
    assert report["accepted"] == [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "namespace": "shop",
            "name": "good",
            "file": "mesh.yaml",
        }
    ]
    assert report["skipped"] == [{"file": "mesh.yaml", "kind": "Service"}]
    error = report["diagnostics"][1]
    assert error == {
        "severity": "error",
        "file": "mesh.yaml",
        "line": 11,
        "column": 10,
        "kind": "PeerAuthentication",
        "namespace": "default",
        "name": "bad",
        "field": "spec.mtls.mode",
        "message": 'Unsupported value: "NOPE": supported values: "UNSET", "DISABLE", "PERMISSIVE", "STRICT"',
    }


def test_to_json_of_a_result_made_by_hand():
    loaded = result()
    by_hand = LoadResult(resources=loaded.resources)
    assert to_json(by_hand)["accepted"][0]["file"] == ""
    assert to_json(by_hand)["valid"] is True
