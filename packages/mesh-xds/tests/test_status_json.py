"""StreamStatus.to_json: the syncz record of a stream, as JSON-ready data."""

import json
from datetime import UTC, datetime

from mesh_xds import CLUSTER_TYPE, ENDPOINT_TYPE, Ack, Nack, NodeInfo, Sent, StreamKind, StreamStatus, TypeStatus

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_stream_record_as_json():
    cds = TypeStatus(
        CLUSTER_TYPE,
        wildcard=True,
        names=(),
        last_sent=Sent("v2", "n2", AT, ("a", "b"), size=120),
        last_ack=Ack("v1", "n1", AT),
        last_nack=Nack("v2", "n2", AT, 13, "cluster a: bad weight"),
        responses=2,
        acks=1,
        nacks=1,
        stale=0,
        client_version="v1",
    )
    eds = TypeStatus(ENDPOINT_TYPE, False, ("a",), None, None, None, 0, 0, 0, 0)
    stream = StreamStatus(
        7,
        "ads",
        StreamKind.DELTA,
        NodeInfo("node-1"),
        "node-1",
        "ipv4:127.0.0.1:5",
        AT,
        {CLUSTER_TYPE: cds, ENDPOINT_TYPE: eds},
    )
    data = json.loads(json.dumps(stream.to_json()))
    assert (data["node_id"], data["kind"], data["synced"], data["connected_at"]) == (
        "node-1",
        "delta",
        False,
        "2026-01-02T03:04:05+00:00",
    )
    assert data["types"]["cds"]["state"] == "NACKED"
    assert data["types"]["cds"]["sent"] == {
        "version": "v2",
        "nonce": "n2",
        "at": "2026-01-02T03:04:05+00:00",
        "resources": 2,
        "removed": 0,
        "size": 120,
    }
    assert data["types"]["cds"]["acked"]["version"] == "v1"
    assert data["types"]["cds"]["nacked"] == {
        "version": "v2",
        "nonce": "n2",
        "at": "2026-01-02T03:04:05+00:00",
        "code": 13,
        "error": "cluster a: bad weight",
    }
    assert data["types"]["eds"]["state"] == "NOT SENT"
    assert (data["types"]["eds"]["sent"], data["types"]["eds"]["names"]) == (None, ["a"])
