"""mesh-agent's sidecar address, drain and certificate flags: node metadata, Envoy's drain time, the TTL asked."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mesh_agent.__main__ import main
from mesh_agent.flags import build_parser, options_from_args
from mesh_xds.generate.addresses import APPLICATION_ADDRESS_KEY, INBOUND_ADDRESS_KEY, OUTBOUND_ADDRESS_KEY

BASE = ["--root-cert", "roots.pem", "--token-file", "token", "--pod-name", "reviews-v1", "--ip", "127.0.10.1"]


def _options(*flags: str):
    return options_from_args(build_parser().parse_args([*BASE, *flags]))


def test_the_three_sidecar_addresses_go_into_the_node_metadata():
    options = _options(
        *("--inbound-address", "127.0.10.1", "--application-address", "127.0.11.1"),
        *("--outbound-address", "127.0.12.1"),
    )
    assert dict(options.node.extra_metadata) == {
        INBOUND_ADDRESS_KEY: "127.0.10.1",
        APPLICATION_ADDRESS_KEY: "127.0.11.1",
        OUTBOUND_ADDRESS_KEY: "127.0.12.1",
    }
    assert dict(_options().node.extra_metadata) == {}  # meshd then binds everything on the node's IP


def test_envoy_drains_for_istios_45_seconds_unless_told_otherwise():
    assert _options().drain_duration == 45
    assert _options("--drain-duration", "0").drain_duration == 0


def test_certificates_last_istios_24_hours_unless_told_otherwise():
    assert _options().secret_ttl == timedelta(hours=24)
    assert _options("--secret-ttl", "90s").secret_ttl == timedelta(seconds=90)
    assert _options("--secret-ttl", "1h30m").secret_ttl == timedelta(minutes=90)  # Go's syntax, as SECRET_TTL


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--inbound-address", "reviews"], "'reviews' is not an IP address"),
        (["--gateway", "--outbound-address", "127.0.12.1"], "are for sidecars, not --gateway"),
        (["--drain-duration", "-1"], "'-1' is not whole seconds from 0 to 86400"),
        (["--drain-duration", "1.5"], "'1.5' is not whole seconds from 0 to 86400"),
        (["--secret-ttl", "500ms"], "'500ms' is not a duration of at least 1s"),
        (["--secret-ttl", "soon"], "'soon' is not a duration of at least 1s"),
        (["--secret-ttl=-1h"], "'-1h' is not a duration of at least 1s"),
    ],
)
def test_bad_values_are_a_usage_error_naming_them(flags, message, capsys):
    assert main([*BASE, *flags]) == 2
    error = capsys.readouterr().err
    assert "usage: mesh-agent" in error
    assert message in error
