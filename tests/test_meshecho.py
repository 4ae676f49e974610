"""The echo app of the demo: what it answers, its controls, call chains, bad input, and the mesh-echo command."""

import asyncio
import contextlib
import http.client
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from meshecho import Dependency, EchoApp, ForwardedClientCert, parse_xfcc

XFCC = (
    'By=spiffe://cluster.local/ns/default/sa/reviews;Hash=1f2e;Subject="";'
    "URI=spiffe://cluster.local/ns/default/sa/productpage"
)


def _request(address, target, headers=None, method="GET", body=None):
    connection = http.client.HTTPConnection(*address, timeout=60)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


async def get(app, target, headers=None, method="GET", body=None):
    return await asyncio.to_thread(_request, app.address, target, headers, method, body)


async def raw_exchange(app, data):
    """Send bytes as they are and return everything the app sends back until it closes the connection."""
    reader, writer = await asyncio.open_connection(*app.address)
    writer.write(data)
    await writer.drain()
    async with asyncio.timeout(30):
        answer = await reader.read()
    writer.close()
    return answer.decode()


@pytest.fixture
async def app():
    async with EchoApp("reviews", version="v2", namespace="bookinfo") as echo:
        yield echo


async def test_answers_with_who_it_is_and_what_it_saw(app):
    status, answer = await get(
        app, "/any/path?x=1", {"X-Custom": "yes", "x-forwarded-client-cert": XFCC}, "POST", b"hi"
    )
    assert status == 200
    assert answer["service"] == "reviews"
    assert (answer["version"], answer["namespace"]) == ("v2", "bookinfo")
    assert (answer["method"], answer["path"], answer["query"], answer["body"]) == ("POST", "/any/path", "x=1", "hi")
    assert answer["host"] == f"{app.address[0]}:{app.address[1]}"
    assert answer["headers"]["x-custom"] == "yes"
    assert answer["peer"] == "spiffe://cluster.local/ns/default/sa/productpage"
    assert answer["by"] == "spiffe://cluster.local/ns/default/sa/reviews"
    assert answer["code"] == 200
    assert "calls" not in answer


@pytest.mark.parametrize(
    ("target", "path", "query"), [("//admin?x=1", "//admin", "x=1"), ("/a//b/%2F", "/a//b/%2F", "")]
)
async def test_the_path_is_reported_as_sent(app, target, path, query):
    status, answer = await get(app, target)
    assert (status, answer["path"], answer["query"]) == (200, path, query)


async def test_without_mtls_there_is_no_peer(app):
    _, answer = await get(app, "/")
    assert answer["peer"] is None
    assert answer["by"] is None


@pytest.mark.parametrize(
    ("target", "headers", "expected"),
    [
        ("/?status=503", {}, 503),
        ("/", {"x-echo-status": "418"}, 418),
        ("/?status=201", {"x-echo-status": "500"}, 201),
    ],
)
async def test_status_is_set_by_query_or_header_and_the_query_wins(app, target, headers, expected):
    status, answer = await get(app, target, headers)
    assert status == expected
    assert answer["code"] == expected


@pytest.mark.parametrize(("target", "headers"), [("/?delay=200ms", {}), ("/", {"x-echo-delay": "0.2s"})])
async def test_delay_waits_at_least_that_long(app, target, headers):
    started = time.monotonic()
    status, _ = await get(app, target, headers)
    assert status == 200
    assert time.monotonic() - started >= 0.2


async def test_a_slow_request_does_not_hold_up_others(app):
    slow = asyncio.create_task(get(app, "/?delay=30s"))
    status, _ = await get(app, "/")
    assert status == 200
    assert not slow.done()
    slow.cancel()


async def test_closing_with_requests_in_flight_is_clean(caplog):
    async with EchoApp("reviews") as echo:
        idle = await asyncio.open_connection(*echo.address)
        slow = asyncio.create_task(get(echo, "/?delay=30s"))
        await asyncio.to_thread(_request, echo.address, "/")  # the slow request may or may not be accepted yet
    assert await idle[0].read() == b""
    idle[1].close()
    with pytest.raises(ConnectionError):  # the slow request is dropped, not left hanging
        await slow
    assert not [record for record in caplog.records if record.levelname in {"ERROR", "CRITICAL"}]


@pytest.mark.parametrize("turns", range(10))
async def test_a_request_arriving_while_closing_is_dropped(turns):
    # The app closes after a few turns of its loop: before, while or after the connection is accepted.
    echo = EchoApp("reviews")
    await echo.start()
    client = socket.create_connection(echo.address, timeout=10)
    client.sendall(b"GET /?delay=30s HTTP/1.1\r\nHost: reviews\r\n\r\n")
    for _ in range(turns):
        await asyncio.sleep(0)
    await echo.close()
    with client, contextlib.suppress(ConnectionError):
        assert await asyncio.to_thread(client.recv, 1024) == b""  # not an answer 30 s later


async def test_keep_alive_serves_several_requests_on_one_connection(app):
    reader, writer = await asyncio.open_connection(*app.address)
    for path in ("/first", "/second"):
        writer.write(f"GET {path} HTTP/1.1\r\nHost: reviews\r\n\r\n".encode())
        async with asyncio.timeout(30):
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            length = int(head.lower().split("content-length: ")[1].split("\r\n")[0])
            answer = json.loads(await reader.readexactly(length))
        assert head.startswith("HTTP/1.1 200 ")
        assert answer["path"] == path
    writer.close()


async def test_healthz_answers_ready_whatever_the_controls(app):
    status, answer = await get(app, "/healthz?status=500&delay=nonsense")
    assert status == 200
    assert answer["ready"] is True


async def test_flaky_mode_fails_a_deterministic_share_of_requests(app):
    halves = [(await get(app, "/?fail=0.5"))[0] for _ in range(4)]
    assert halves == [503, 200, 503, 200]
    thirds = [(await get(app, "/", {"x-echo-fail": "1/3"}))[0] for _ in range(6)]
    assert thirds == [503, 200, 200, 503, 200, 200]  # each share has its own count


@pytest.mark.parametrize(
    ("target", "headers", "control"),
    [
        ("/?status=abc", {}, "status"),
        ("/?status=99", {}, "status"),
        ("/", {"x-echo-status": "600"}, "status"),
        ("/?delay=abc", {}, "delay"),
        ("/?delay=200", {}, "delay"),
        ("/", {"x-echo-delay": "2m"}, "delay"),
        ("/?fail=2", {}, "fail"),
        ("/?fail=1/0", {}, "fail"),
        ("/?call=ratings", {}, "call"),
        ("/call/ratings", {}, "call"),
        ("/", {"x-forwarded-client-cert": 'By="unterminated'}, "x-forwarded-client-cert"),
    ],
)
async def test_bad_controls_get_a_400_naming_the_control(app, target, headers, control):
    status, answer = await get(app, target, headers)
    assert status == 400
    assert answer["error"].startswith(f"{control}: ")


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nend-user: a\nx-injected: b\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\ncontent-length: many\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n", "501"),
        (b"GET / HTTP/1.1\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n", "431"),
    ],
)
async def test_malformed_http_gets_a_json_error_and_the_connection_closes(app, data, status):
    answer = await raw_exchange(app, data)
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ")
    assert "connection: close" in head
    assert json.loads(body)["error"]


async def test_a_chunked_body_is_read(app):
    answer = await raw_exchange(
        app, b"POST / HTTP/1.1\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n1\r\n!\r\n0\r\n\r\n"
    )
    assert json.loads(answer.partition("\r\n\r\n")[2])["body"] == "hi!"


async def test_calls_chain_through_apps_and_carry_the_trace_headers():
    async with (
        EchoApp("ratings") as ratings,
        EchoApp(
            "reviews",
            version="v2",
            dependencies={"ratings": Dependency(f"http://{ratings.address[0]}:{ratings.address[1]}/", "ratings:9080")},
            always_call=["ratings"],
        ) as reviews,
    ):
        reviews_url = f"http://{reviews.address[0]}:{reviews.address[1]}/"
        dependencies = {"reviews": Dependency.parse(f"{reviews_url},reviews.default.svc.cluster.local")}
        async with EchoApp("productpage", dependencies=dependencies) as productpage:
            headers = {
                "end-user": "jason",
                "x-request-id": "req-1",
                "x-b3-traceid": "80f198ee56343ba8",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "x-not-propagated": "secret",
            }
            for target in ("/?call=reviews", "/call/reviews"):
                status, answer = await get(productpage, target, headers)
                assert status == 200
                seen_by_reviews = answer["calls"]["reviews"]
                assert seen_by_reviews["code"] == 200
                assert seen_by_reviews["body"]["host"] == "reviews.default.svc.cluster.local"
                assert seen_by_reviews["body"]["version"] == "v2"
                seen_by_ratings = seen_by_reviews["body"]["calls"]["ratings"]["body"]
                assert seen_by_ratings["service"] == "ratings"
                assert seen_by_ratings["host"] == "ratings:9080"
                for name in ("end-user", "x-request-id", "x-b3-traceid", "traceparent"):
                    assert seen_by_ratings["headers"][name] == headers[name]
                assert "x-not-propagated" not in seen_by_reviews["body"]["headers"]


async def test_a_failing_dependency_is_reported_not_fatal():
    async with EchoApp("ratings") as ratings:
        host, port = ratings.address
    async with EchoApp("reviews", dependencies={"ratings": Dependency(f"http://{host}:{port}/")}) as reviews:
        status, answer = await get(reviews, "/?call=ratings")
    assert status == 200
    assert answer["calls"]["ratings"]["error"].startswith("ConnectionRefusedError")


async def test_a_failing_downstream_status_is_passed_on_in_the_answer():
    async with EchoApp("ratings") as ratings:
        url = f"http://{ratings.address[0]}:{ratings.address[1]}/?status=503"
        async with EchoApp("reviews", dependencies={"ratings": Dependency(url)}) as reviews:
            _, answer = await get(reviews, "/?call=ratings")
    assert answer["calls"]["ratings"]["code"] == 503
    assert answer["calls"]["ratings"]["body"]["service"] == "ratings"


def test_xfcc_elements_are_parsed_with_quotes_and_repeated_dns():
    header = (
        'By=spiffe://td/ns/a/sa/gw;Hash=00ff;Subject="CN=x, O=\\"acme\\"; inc";DNS=a.example;dns=b.example,'
        "by=spiffe://td/ns/a/sa/reviews;uri=spiffe://td/ns/a/sa/gw;Cert=%2D%2D"
    )
    first, last = parse_xfcc(header)
    assert first == ForwardedClientCert(
        by="spiffe://td/ns/a/sa/gw", hash="00ff", subject='CN=x, O="acme"; inc', dns=("a.example", "b.example")
    )
    assert (last.by, last.uri) == ("spiffe://td/ns/a/sa/reviews", "spiffe://td/ns/a/sa/gw")
    assert parse_xfcc("") == ()


@pytest.mark.parametrize("header", ['By="open', "By", "=value", 'Subject="a"b'])
def test_malformed_xfcc_is_a_value_error(header):
    with pytest.raises(ValueError, match="x-forwarded-client-cert"):
        parse_xfcc(header)


def test_a_dependency_is_parsed_from_url_and_optional_host():
    assert Dependency.parse("http://127.0.0.1:15001/,reviews") == Dependency("http://127.0.0.1:15001/", "reviews")
    assert Dependency.parse("http://127.0.0.1:9080/?a=1,2,reviews").url == "http://127.0.0.1:9080/?a=1,2"
    assert Dependency.parse("http://127.0.0.1:9080/?a=1,b=2").host is None


@pytest.mark.parametrize("text", ["https://x/", "reviews", "http://x:99999/", "http://x/,bad host"])
def test_a_bad_dependency_is_refused(text):
    with pytest.raises(ValueError, match="dependency"):
        Dependency.parse(text)


def test_always_call_must_name_a_dependency():
    with pytest.raises(ValueError, match="always_call: 'ratings'"):
        EchoApp("reviews", always_call=["ratings"])


def _line(stream, timeout=30):
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=timeout)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_mesh_echo_runs_until_signalled(signum):
    command = [sys.executable, "-m", "meshecho", "--service", "details", "--listen", "127.0.0.1:0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            line = _line(process.stdout)
            assert line.startswith("listening on 127.0.0.1:")
            status, answer = _request(("127.0.0.1", int(line.rsplit(":", 1)[1])), "/?status=202")
            assert (status, answer["service"], answer["version"]) == (202, "details", "v1")
            process.send_signal(signum)
            assert process.wait(timeout=30) == 0
            assert process.stderr.read() == ""
        finally:
            process.kill()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--service", "x", "--listen", "nowhere"], "'nowhere' is not HOST:PORT"),
        (["--service", "x", "--call", "ratings"], "'ratings' is not NAME=URL[,HOST]"),
        (["--service", "x", "--call", "ratings=ftp://r/"], "is not an http:// URL"),
        (["--service", "x", "--always-call", "ratings"], "always_call: 'ratings' is not a dependency"),
        (["--version", "v1"], "--service"),
    ],
)
def test_mesh_echo_refuses_bad_arguments(arguments, message):
    result = subprocess.run(
        [sys.executable, "-m", "meshecho", *arguments], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_mesh_echo_reports_an_address_it_cannot_bind():
    with socket_in_use() as address:
        result = subprocess.run(
            [sys.executable, "-m", "meshecho", "--service", "x", "--listen", address],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on {address}" in result.stderr


@contextlib.contextmanager
def socket_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield f"127.0.0.1:{taken.getsockname()[1]}"
