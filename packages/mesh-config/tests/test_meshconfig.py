"""MeshConfig: loading from text or a file, Istio's defaults and how they merge, and the mesh config rules."""

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mesh_config
from mesh_config.meshconfig import (
    AuthenticationPolicy,
    InboundMode,
    OutboundMode,
    ProviderKind,
    default_mesh_config,
    load_mesh_config,
)


def load(text):
    return load_mesh_config(textwrap.dedent(text))


def errors(result, field):
    return [d.message for d in result.errors if d.field == field]


def warnings(result, field):
    return [d.message for d in result.warnings if d.field == field]


def test_an_empty_mesh_config_means_istios_defaults():
    result = load_mesh_config("")
    assert result.ok
    assert not result.diagnostics
    mesh = result.config
    assert mesh == default_mesh_config()
    assert (mesh.trust_domain, mesh.root_namespace) == ("cluster.local", "istio-system")
    assert (mesh.proxy_listen_port, mesh.proxy_inbound_listen_port) == (15001, 15006)
    assert mesh.connect_timeout == mesh_config.Duration.of(seconds=10)
    assert mesh.dns_refresh_rate == mesh_config.Duration.of(seconds=60)
    assert mesh.protocol_detection_timeout == mesh_config.Duration(0)
    assert mesh.default_service_export_to == mesh.default_virtual_service_export_to == ("*",)
    assert mesh.default_destination_rule_export_to == ("*",)
    assert mesh.enable_auto_mtls is True
    assert mesh.enable_prometheus_merge is True
    assert mesh.outbound_traffic_policy.mode is OutboundMode.ALLOW_ANY
    assert mesh.inbound_traffic_policy.mode is InboundMode.PASSTHROUGH
    assert mesh.locality_lb_setting.enabled is True
    assert [(p.name, p.kind) for p in mesh.extension_providers] == [
        ("prometheus", ProviderKind.PROMETHEUS),
        ("stackdriver", ProviderKind.STACKDRIVER),
        ("envoy", ProviderKind.FILE_ACCESS_LOG),
    ]
    proxy = mesh.default_config
    assert proxy.discovery_address == "istiod.istio-system.svc:15012"
    assert proxy.drain_duration == mesh_config.Duration.of(seconds=45)
    assert proxy.termination_drain_duration == mesh_config.Duration.of(seconds=5)
    assert proxy.control_plane_auth_policy is AuthenticationPolicy.MUTUAL_TLS
    assert (proxy.stat_name_length, proxy.concurrency, proxy.status_port) == (189, 2, 15020)


def test_a_mesh_config_is_read_from_a_file(tmp_path):
    path = tmp_path / "mesh.yaml"
    path.write_text("trustDomain: example.org\ndefaultConfig:\n  proxyMetadata: {ISTIO_META_DNS_CAPTURE: 'true'}\n")
    for source in (path, str(path)):
        mesh = load_mesh_config(source).raise_for_errors().config
        assert mesh.trust_domain == "example.org"
        assert mesh.default_config.proxy_metadata == {"ISTIO_META_DNS_CAPTURE": "true"}
    assert load_mesh_config(path.read_bytes()).config == mesh


def test_a_missing_file_is_an_error(tmp_path):
    result = load_mesh_config(tmp_path / "missing.yaml")
    assert not result.ok
    assert result.errors[0].message.startswith("cannot read")


def test_unknown_fields_and_wrong_types_are_errors_with_positions():
    result = load("""\
        trustDomain: example.org
        defaultConfig:
          discoveryAdress: istiod:15012
        enableAutoMtls: "yes"
    """)
    assert result.config is None
    assert [(d.field, d.position.line) for d in result.errors] == [
        ("defaultConfig.discoveryAdress", 3),
        ("enableAutoMtls", 4),
    ]
    assert 'did you mean "discoveryAddress"?' in result.errors[0].message
    with pytest.raises(mesh_config.InvalidConfigError):
        result.raise_for_errors()


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a\n- b\n", "must be a map"), ("a: 1\n---\nb: 2\n", "one YAML document"), ("a: [1\n", "YAML syntax error")],
)
def test_a_mesh_config_is_one_yaml_map(text, message):
    result = load_mesh_config(text)
    assert not result.ok
    assert message in result.errors[0].message


def test_defaults_merge_into_the_proxy_config():
    mesh = load("""\
        defaultConfig:
          concurrency: 0
          proxyMetadata: {A: "1"}
          tracing:
            sampling: 10
    """).config
    proxy = mesh.default_config
    assert proxy.concurrency == 0
    assert proxy.discovery_address == "istiod.istio-system.svc:15012"
    assert proxy.proxy_metadata == {"A": "1"}
    # Messages merge field by field: the default Zipkin tracer stays, the sampling is the user's.
    assert proxy.tracing.zipkin.address == "zipkin.istio-system:9411"
    assert proxy.tracing.sampling == 10


def test_setting_a_oneof_member_clears_the_default_one():
    proxy = load("""\
        defaultConfig:
          tracing: {datadog: {address: "$(HOST_IP):8126"}}
          tracingServiceName: CANONICAL_NAME_AND_NAMESPACE
    """).config.default_config
    assert proxy.tracing.zipkin is None
    assert proxy.tracing.datadog.address == "$(HOST_IP):8126"
    assert proxy.service_cluster == ""


def test_lists_are_replaced_and_messages_merged():
    mesh = load("""\
        defaultServiceExportTo: ["."]
        localityLbSetting:
          failover: [{from: us-east, to: us-west}]
        outboundTrafficPolicy: {mode: REGISTRY_ONLY}
    """).config
    assert mesh.default_service_export_to == (".",)
    assert mesh.default_virtual_service_export_to == ("*",)
    assert mesh.locality_lb_setting.enabled is True
    assert [(f.from_, f.to) for f in mesh.locality_lb_setting.failover] == [("us-east", "us-west")]
    assert mesh.outbound_traffic_policy.mode is OutboundMode.REGISTRY_ONLY


def test_extension_providers_merge_by_name_and_aliases_are_unioned():
    mesh = load("""\
        trustDomainAliases: [td2.example, td1.example]
        extensionProviders:
        - name: envoy
          envoyFileAccessLog: {path: /dev/stderr, logFormat: {labels: {code: "%RESPONSE_CODE%"}}}
        - name: ext-authz
          envoyExtAuthzHttp:
            service: ext-authz.foo.svc.cluster.local
            port: 8000
            includeRequestHeadersInCheck: [x-ext-authz]
        - name: otel
          opentelemetry: {service: otel.istio-system.svc.cluster.local, port: 4317, grpc: {timeout: 3s}}
        - name: zipkin
          zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
    """).config
    assert mesh.trust_domain_aliases == ("td1.example", "td2.example")
    providers = {p.name: p for p in mesh.extension_providers}
    assert list(providers) == ["prometheus", "stackdriver", "envoy", "ext-authz", "otel", "zipkin"]
    assert providers["envoy"].envoy_file_access_log.path == "/dev/stderr"
    assert providers["envoy"].envoy_file_access_log.log_format.labels == {"code": "%RESPONSE_CODE%"}
    assert providers["ext-authz"].kind is ProviderKind.EXT_AUTHZ_HTTP
    assert providers["otel"].opentelemetry.grpc.timeout == mesh_config.Duration.of(seconds=3)


@pytest.mark.parametrize("domain", ["example_org", "", ".example.org", "-a.org", "a..b", "x" * 64 + ".org"])
def test_trust_domains_are_dns_labels(domain):
    result = load_mesh_config(f"trustDomain: {domain!r}\ntrustDomainAliases: [ok.org, {domain!r}]\n")
    assert errors(result, "trustDomain")
    assert errors(result, "trustDomainAliases[1]")


@given(st.lists(st.from_regex(r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,10}[a-zA-Z0-9])?", fullmatch=True), min_size=1, max_size=4))
def test_dns_label_trust_domains_are_accepted_in_any_case(labels):
    assert load_mesh_config(f"trustDomain: '{'.'.join(labels)}'\n").ok


def test_root_namespace_is_a_dns_label():
    assert errors(load_mesh_config("rootNamespace: Istio_System\n"), "rootNamespace") == [
        "rootNamespace 'Istio_System' must be a lower-case DNS label"
    ]


@given(st.integers(min_value=-5, max_value=70000))
def test_proxy_listen_port_is_a_port(port):
    assert load_mesh_config(f"proxyListenPort: {port}\n").ok == (1 <= port <= 65535)


@pytest.mark.parametrize(
    ("timeout", "ok"),
    [("1ms", True), ("10s", True), ("1h", True), ("0.5ms", False), ("1.5ms", False), ("1h1ms", False)],
)
def test_connect_timeout_is_1ms_to_1h_in_milliseconds(timeout, ok):
    assert load_mesh_config(f"connectTimeout: {timeout}\n").ok == ok
    assert not load_mesh_config("connectTimeout: 1000001ns\n").ok


@given(st.integers(min_value=0, max_value=10**10))
def test_protocol_detection_timeout_is_zero_or_whole_milliseconds(nanos):
    result = load_mesh_config(f"protocolDetectionTimeout: {nanos}ns\n")
    assert result.ok == (nanos % 1_000_000 == 0)


@pytest.mark.parametrize(
    ("proxy", "field", "fragment"),
    [
        ("discoveryAddress: istiod", "defaultConfig.discoveryAddress", "missing a port"),
        ("discoveryAddress: 'istiod:99999'", "defaultConfig.discoveryAddress", "must be in the range 1..65535"),
        ("discoveryAddress: 'bad_host:15012'", "defaultConfig.discoveryAddress", "not a valid hostname"),
        ("discoveryAddress: ''", "defaultConfig.discoveryAddress", "discovery address must be set"),
        ("drainDuration: 1.5s", "defaultConfig.drainDuration", "seconds precision"),
        ("drainDuration: 0s", "defaultConfig.drainDuration", "at least 1ms"),
        ("proxyAdminPort: 0", "defaultConfig.proxyAdminPort", "1..65535"),
        ("statusPort: 70000", "defaultConfig.statusPort", "1..65535"),
        ("configPath: ''", "defaultConfig.configPath", "config path must be set"),
        ("serviceCluster: ''", "defaultConfig.serviceCluster", "service cluster must be specified"),
        ("controlPlaneAuthPolicy: INHERIT", "defaultConfig.controlPlaneAuthPolicy", "INHERIT"),
        ("statsdUdpAddress: statsd", "defaultConfig.statsdUdpAddress", "missing a port"),
        ("tracing: {zipkin: {address: zipkin}}", "defaultConfig.tracing.zipkin.address", "missing a port"),
        ("tracing: {lightstep: {address: 'ls:8080'}}", "defaultConfig.tracing.lightstep.accessToken", "token"),
        ("envoyAccessLogService: {address: als}", "defaultConfig.envoyAccessLogService.address", "missing a port"),
        (
            "privateKeyProvider: {cryptomb: {pollDelay: 0s}}",
            "defaultConfig.privateKeyProvider.cryptomb.pollDelay",
            "non zero",
        ),
        ("privateKeyProvider: {qat: {}}", "defaultConfig.privateKeyProvider.qat.pollDelay", "required"),
    ],
)
def test_proxy_config_rules(proxy, field, fragment):
    result = load_mesh_config(f"defaultConfig:\n  {proxy}\n")
    [message] = errors(result, field)
    assert fragment in message


@pytest.mark.parametrize("address", ["istiod.istio-system.svc:15012", "10.0.0.1:15012", "[::1]:15012"])
def test_proxy_addresses(address):
    assert load_mesh_config(f"defaultConfig: {{discoveryAddress: '{address}'}}\n").ok


def test_tls_settings_rules():
    mtls = load_mesh_config("meshMTLS: {minProtocolVersion: TLSV1_3, ecdhCurves: [P-256]}\n")
    assert errors(mtls, "meshMTLS.ecdhCurves") == ["mesh TLS does not support ECDH curves configuration"]
    curves = load_mesh_config("tlsDefaults: {ecdhCurves: [P-256, X25519, P-256, P-999]}\n")
    assert curves.ok
    assert warnings(curves, "tlsDefaults.ecdhCurves") == [
        "detected unrecognized ECDH curves: ['P-999']",
        "detected duplicate ECDH curves: ['P-256']",
    ]


def test_locality_and_service_settings_rules():
    result = load("""\
        localityLbSetting:
          distribute: [{from: us-east/*, to: {us-west/*: 60}}]
          failover: [{from: us-east, to: us-west}]
        serviceSettings:
        - hosts: ["*.foo.svc.cluster.local", "bad host"]
          settings: {clusterLocal: true}
    """)
    assert errors(result, "localityLbSetting") == ["can not simultaneously specify 'distribute' and 'failover'"]
    assert errors(result, "serviceSettings[0].hosts[1]")


def test_extension_provider_problems_are_warnings():
    result = load("""\
        extensionProviders:
        - name: authz
          envoyExtAuthzGrpc: {service: bad_host, port: 0, statusOnError: "999"}
        - name: authz
          envoyExtAuthzHttp: {service: ns/authz.example.com, port: 80, pathPrefix: check}
        - name: nothing
        - name: ls
          lightstep: {service: ls.example.com, port: 8080}
    """)
    assert result.ok
    assert warnings(result, "extensionProviders[0].envoyExtAuthzGrpc.port") == [
        "invalid extension provider authz: port number 0 must be in the range 1..65535"
    ]
    assert warnings(result, "extensionProviders[0].envoyExtAuthzGrpc.service")
    assert warnings(result, "extensionProviders[0].envoyExtAuthzGrpc.statusOnError")
    assert warnings(result, "extensionProviders[1].name") == [
        "invalid extension provider authz: duplicate extension provider name"
    ]
    assert warnings(result, "extensionProviders[1].envoyExtAuthzHttp.pathPrefix")
    assert not warnings(result, "extensionProviders[1].envoyExtAuthzHttp.service")
    assert warnings(result, "extensionProviders[2]")
    assert warnings(result, "extensionProviders[3].lightstep.accessToken")
