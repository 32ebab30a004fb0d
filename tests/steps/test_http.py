"""--mode http: every row of SPEC's HTTP table, persistent connections,
pipelining and the incremental parser."""

import json
import random
import threading
import time

import pytest

from conftest import STATS_KEYS, Client, request_bytes

HELLO = b"Hello, World!\n"
KIB, MIB = 1 << 10, 1 << 20


def expect_error_then_close(server, raw: bytes, status: int):
    with Client(server.address) as c:
        c.send(raw)
        r = c.read_response()
        assert r.status == status, (r.status, r.reason, r.body[:200])
        c.expect_closed()
    return r


# -- the table's rows

@pytest.mark.parametrize("path", ["/", "/hello"])
def test_hello(http_server, path):
    with Client(http_server.address) as c:
        r = c.get(path)
    assert (r.status, r.body) == (200, HELLO)
    assert r.header("content-type").startswith("text/plain"), r.headers
    assert r.header("content-length") == str(len(HELLO))
    assert r.version == "HTTP/1.1"


@pytest.mark.parametrize("body", [
    b"", b"hello", bytes(range(256)) * 4, b"\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
], ids=["empty", "text", "binary", "looks-like-a-request"])
def test_echo_returns_the_body(http_server, body):
    with Client(http_server.address) as c:
        r = c.request("POST", "/echo", body)
        assert (r.status, r.body) == (200, body)
        assert c.get("/hello").status == 200, "the connection is still in step"


def test_echo_one_mib_body(http_server):
    body = random.Random(7).randbytes(MIB)
    with Client(http_server.address) as c:
        r = c.request("POST", "/echo", body)
    assert r.status == 200
    assert r.body == body


def test_work_sleeps_then_answers(http_server):
    with Client(http_server.address) as c:
        assert c.get("/work?ms=50").status == 200


def test_work_refuses_more_than_the_limit_at_once(http_server):
    # SPEC: N <= 10000; protocol_limits.h: past it a 400, not a long sleep.
    with Client(http_server.address) as c:
        r = c.get("/work?ms=10001")
        assert r.status == 400
        assert c.get("/hello").status == 200, "a well-framed request's 400 keeps the connection"


def test_cpu_body_is_a_deterministic_digest(http_server):
    with Client(http_server.address) as c:
        a, b, other = c.get("/cpu?n=1000"), c.get("/cpu?n=1000"), c.get("/cpu?n=1001")
    assert (a.status, b.status, other.status) == (200, 200, 200)
    assert a.body and a.body == b.body
    assert other.body != a.body


def test_stats_is_json(http_server, step):
    with Client(http_server.address) as c:
        r = c.get("/stats")
    assert r.status == 200
    assert r.header("content-type").startswith("application/json"), r.headers
    stats = json.loads(r.body)
    assert STATS_KEYS <= stats.keys(), f"missing {STATS_KEYS - stats.keys()}"
    assert stats["step"] == step.number and stats["mode"] == "http"


@pytest.mark.parametrize("path", ["/nope", "/hello2", "/echo/x"])
def test_unknown_path_is_404(http_server, path):
    with Client(http_server.address) as c:
        r = c.get(path)
        assert r.status == 404
        if not r.closes():
            assert c.get("/hello").status == 200


@pytest.mark.parametrize("method, path, allowed", [
    ("POST", "/hello", "GET"), ("GET", "/echo", "POST"), ("DELETE", "/", "GET"),
])
def test_wrong_method_is_405_with_allow(http_server, method, path, allowed):
    with Client(http_server.address) as c:
        # The request carries a body: it must be skipped, not read as the next request.
        c.send(request_bytes(method, path, b"GET /nope HTTP/1.1\r\n\r\n")
               + request_bytes("GET", "/hello"))
        r = c.read_response()
        assert r.status == 405
        assert allowed in [m.strip() for m in (r.header("allow") or "").split(",")], r.headers
        if not r.closes():
            nxt = c.read_response()
            assert (nxt.status, nxt.body) == (200, HELLO)


# -- malformed requests: 400, then close

MALFORMED = {
    "garbage": b"GARBAGE\r\n\r\n",
    "no-version": b"GET /hello\r\n\r\n",
    "extra-token": b"GET /hello HTTP/1.1 x\r\nHost: a\r\n\r\n",
    "leading-space": b" GET /hello HTTP/1.1\r\nHost: a\r\n\r\n",
    "bad-version-form": b"GET /hello HTTX/1.1\r\nHost: a\r\n\r\n",
    "header-without-colon": b"GET /hello HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
    "space-in-header-name": b"GET /hello HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
    "space-before-colon": b"GET /hello HTTP/1.1\r\nHost : a\r\n\r\n",
    "empty-header-name": b"GET /hello HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_is_400_then_close(http_server, raw):
    expect_error_then_close(http_server, raw, 400)


BARE_CR = {
    "in-request-line": b"GET /hello HTTP/1.1\rHost: a\r\n\r\n",
    "in-header-value": b"GET /hello HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
    "ending-the-head": b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\r\n",
}


@pytest.mark.parametrize("raw", BARE_CR.values(), ids=BARE_CR.keys())
def test_bare_cr_is_400_then_close(http_server, raw):
    expect_error_then_close(http_server, raw, 400)


@pytest.mark.parametrize("value", ["abc", "-1", "+5", "5a", "", "0x5", "1 2"])
def test_bad_content_length_is_400_then_close(http_server, value):
    raw = (f"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {value}\r\n\r\n".encode()
           + b"hello")
    expect_error_then_close(http_server, raw, 400)


def test_http11_without_host_is_400_then_close(http_server):
    expect_error_then_close(http_server, b"GET /hello HTTP/1.1\r\n\r\n", 400)


def test_http11_with_two_hosts_is_400_then_close(http_server):
    raw = b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
    expect_error_then_close(http_server, raw, 400)


def test_http10_needs_no_host(http_server):
    with Client(http_server.address) as c:
        c.send(b"GET /hello HTTP/1.0\r\n\r\n")
        assert (c.read_response().body) == HELLO


def test_two_different_content_lengths_is_400_then_close(http_server):
    raw = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello"
    expect_error_then_close(http_server, raw, 400)


def test_content_length_and_transfer_encoding_is_400_then_close(http_server):
    raw = (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    expect_error_then_close(http_server, raw, 400)


@pytest.mark.parametrize("coding", ["chunked", "gzip"])
def test_transfer_encoding_is_501(http_server, coding):
    raw = (f"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {coding}\r\n\r\n".encode()
           + b"5\r\nhello\r\n0\r\n\r\n")
    # Without chunked support the body's end is unknown: the server must
    # close, or the body would be read as the next request.
    expect_error_then_close(http_server, raw, 501)


# -- limits

def test_request_line_over_8k_is_414_then_close(http_server):
    raw = request_bytes("GET", "/" + "a" * (9 * KIB))
    expect_error_then_close(http_server, raw, 414)


def test_endless_request_line_is_414_without_waiting_for_its_end(http_server):
    with Client(http_server.address) as c:
        c.send(b"GET /" + b"a" * (9 * KIB))  # no CRLF, ever
        r = c.read_response()
        assert r.status == 414
        c.expect_closed()


def test_long_request_line_under_the_limit_is_parsed(http_server):
    with Client(http_server.address) as c:
        assert c.get("/" + "a" * (7 * KIB)).status == 404


def test_header_block_over_16k_is_431_then_close(http_server):
    headers = [(f"X-Pad-{i}", "p" * 100) for i in range(200)]  # ~22 KiB
    expect_error_then_close(http_server, request_bytes("GET", "/hello", headers=headers), 431)


def test_one_header_over_16k_is_431_then_close(http_server):
    raw = request_bytes("GET", "/hello", headers=[("X-Big", "b" * (17 * KIB))])
    expect_error_then_close(http_server, raw, 431)


def test_header_block_under_the_limit_is_parsed(http_server):
    headers = [(f"X-Pad-{i}", "p" * 100) for i in range(100)]  # ~11 KiB
    with Client(http_server.address) as c:
        r = c.request("GET", "/hello", headers=headers)
    assert (r.status, r.body) == (200, HELLO)


@pytest.mark.parametrize("length", [2 * MIB, MIB + 1])
def test_body_over_1mib_is_413_before_the_body_is_sent(http_server, length):
    raw = f"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {length}\r\n\r\n".encode()
    expect_error_then_close(http_server, raw, 413)


@pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/1.2", "HTTP/3.0"])
def test_unsupported_version_is_505(http_server, version):
    with Client(http_server.address) as c:
        c.send(f"GET /hello {version}\r\nHost: a\r\n\r\n".encode())
        assert c.read_response().status == 505


# -- connections

def test_keep_alive_three_requests_on_one_connection(http_server):
    with Client(http_server.address) as c:
        for path in ("/hello", "/", "/hello"):
            r = c.get(path)
            assert (r.status, r.body) == (200, HELLO)
            assert not r.closes()


def test_http10_closes_after_the_response(http_server):
    with Client(http_server.address) as c:
        # The second request must never be answered.
        c.send(b"GET /hello HTTP/1.0\r\n\r\nGET /hello HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.body) == (200, HELLO)
        c.expect_closed()


def test_http10_keep_alive_stays_open(http_server):
    with Client(http_server.address) as c:
        for _ in range(2):
            c.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            assert (r.status, r.body) == (200, HELLO)
            assert (r.header("connection") or "").lower() == "keep-alive", r.headers
        c.send(b"GET /hello HTTP/1.0\r\n\r\n")
        assert c.read_response().status == 200
        c.expect_closed()


@pytest.mark.parametrize("value", ["close", "Close", "CLOSE"])
def test_connection_close_is_honoured(http_server, value):
    with Client(http_server.address) as c:
        c.send(request_bytes("GET", "/hello", headers=[("Connection", value)])
               + request_bytes("GET", "/hello"))
        r = c.read_response()
        assert (r.status, r.body) == (200, HELLO)
        assert r.closes(), "a closing response says Connection: close"
        c.expect_closed()


CLOSING_ERRORS = {
    "400": (b"GARBAGE\r\n\r\n", 400),
    "414": (request_bytes("GET", "/" + "a" * (9 * KIB)), 414),
    "431": (request_bytes("GET", "/", headers=[("X-Big", "b" * (17 * KIB))]), 431),
    "413": (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000000\r\n\r\n", 413),
}


@pytest.mark.parametrize("raw, status", CLOSING_ERRORS.values(), ids=CLOSING_ERRORS.keys())
def test_closing_error_responses_say_connection_close(http_server, raw, status):
    r = expect_error_then_close(http_server, raw, status)
    assert r.closes(), r.headers
    assert r.header("content-length") is not None


def test_pipelined_requests_are_answered_in_order(http_server):
    requests, expected = [], []
    for i in range(10):
        if i % 3 == 0:
            requests.append(request_bytes("GET", "/hello"))
            expected.append(HELLO)
        elif i % 3 == 1:
            body = f"body number {i}".encode()
            requests.append(request_bytes("POST", "/echo", body))
            expected.append(body)
        else:
            requests.append(request_bytes("GET", f"/cpu?n={i}"))
            expected.append(None)
    with Client(http_server.address) as c:
        c.send(b"".join(requests))
        got = [c.read_response() for _ in requests]
        for i, (r, want) in enumerate(zip(got, expected)):
            assert r.status == 200, i
            if want is not None:
                assert r.body == want, i
        assert got[2].body == c.get("/cpu?n=2").body, "the /cpu answers are in order"


def test_pipelined_big_responses_to_a_slow_reader(http_server):
    # 40 x 64 KiB echoes, sent as fast as possible while the responses are
    # read: the server must neither lose nor reorder them when its output
    # backs up.
    bodies = [bytes([i]) * (64 * KIB) for i in range(40)]
    with Client(http_server.address) as c:
        failure = []

        def send_all():
            try:
                for b in bodies:
                    c.sock.sendall(request_bytes("POST", "/echo", b))
            except OSError as e:
                failure.append(e)

        t = threading.Thread(target=send_all, daemon=True)
        t.start()
        for i, b in enumerate(bodies):
            r = c.read_response()
            assert (r.status, len(r.body), r.body == b) == (200, len(b), True), i
        t.join(c.timeout)
        assert not failure, failure


@pytest.mark.parametrize("raw", [
    request_bytes("GET", "/hello"),
    request_bytes("POST", "/echo", b"one byte at a time"),
], ids=["GET", "POST"])
def test_one_byte_at_a_time(http_server, raw):
    with Client(http_server.address) as c:
        for i in range(len(raw)):
            c.send(raw[i:i + 1])
            time.sleep(0.001)
        r = c.read_response()
    assert r.status == 200
    assert r.body in (HELLO, b"one byte at a time")


def test_nothing_is_answered_after_a_400(http_server):
    with Client(http_server.address) as c:
        c.send(b"BAD REQUEST LINE\r\n\r\n" + request_bytes("GET", "/hello") * 3)
        r = c.read_response()
        assert r.status == 400
        rest = c.read_until_closed()
        assert rest == b"", f"answered after the 400: {rest[:200]!r}"


def test_header_names_are_case_insensitive(http_server):
    with Client(http_server.address) as c:
        c.send(b"POST /echo HTTP/1.1\r\nhOsT: a\r\ncontent-LENGTH: 3\r\n\r\nabc")
        r = c.read_response()
    assert (r.status, r.body) == (200, b"abc")


def test_header_values_lose_surrounding_whitespace(http_server):
    with Client(http_server.address) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost:a\r\nContent-Length: \t3 \t\r\n\r\nabc")
        r = c.read_response()
    assert (r.status, r.body) == (200, b"abc")


# -- policies that common/http.h documents beyond SPEC's table

BARE_LF = {
    "request-line": b"GET /hello HTTP/1.1\nHost: a\r\n\r\n",
    "header-line": b"GET /hello HTTP/1.1\r\nHost: a\n\r\n",
    "empty-line": b"GET /hello HTTP/1.1\r\nHost: a\r\n\n",
    "everywhere": b"GET /hello HTTP/1.1\nHost: a\n\n",
}


@pytest.mark.parametrize("raw", BARE_LF.values(), ids=BARE_LF.keys())
def test_bare_lf_is_400_then_close(http_server, raw):
    # http.h: "Bare LF: rejected with 400. Every line must end in CRLF."
    expect_error_then_close(http_server, raw, 400)


STRICT_400 = {
    "obs-fold": b"GET /hello HTTP/1.1\r\nHost: a\r\nX: a\r\n  b\r\n\r\n",
    "nul-in-value": b"GET /hello HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
    "control-in-target": b"GET /hel\x01lo HTTP/1.1\r\nHost: a\r\n\r\n",
    "identical-content-lengths":
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "content-length-overflow":
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    "two-hosts-http10": b"GET /hello HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    "two-empty-lines-first": b"\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n",
    "version-not-digits": b"GET /hello HTTP/1.x\r\nHost: a\r\n\r\n",
}


@pytest.mark.parametrize("raw", STRICT_400.values(), ids=STRICT_400.keys())
def test_strict_parser_policy_is_400_then_close(http_server, raw):
    expect_error_then_close(http_server, raw, 400)


def test_one_empty_line_before_a_request_is_skipped(http_server):
    with Client(http_server.address) as c:
        c.send(request_bytes("POST", "/echo", b"abc") + b"\r\n" + request_bytes("GET", "/hello"))
        assert c.read_response().body == b"abc"
        assert c.read_response().body == HELLO


def test_absolute_form_target(http_server):
    with Client(http_server.address) as c:
        c.send(b"GET http://ladder.test/hello HTTP/1.1\r\nHost: ladder.test\r\n\r\n")
        r = c.read_response()
    assert (r.status, r.body) == (200, HELLO)


def test_version_is_checked_before_the_headers(http_server):
    with Client(http_server.address) as c:
        c.send(b"GET /hello HTTP/2.0\r\n")  # the head never ends
        assert c.read_response().status == 505
        c.expect_closed()


def test_request_line_limit_is_exact(http_server):
    # protocol_limits.h: the request line without its CRLF, at most 8 KiB.
    fixed = len("GET / HTTP/1.1")
    at_limit = "/" + "a" * (8 * KIB - fixed)
    with Client(http_server.address) as c:
        assert c.get(at_limit).status == 404
    expect_error_then_close(http_server, request_bytes("GET", at_limit + "a"), 414)


def test_header_block_limit_is_exact(http_server):
    # protocol_limits.h: every field line and the final empty line, CRLFs
    # included, at most 16 KiB.
    fixed = len("Host: ladder.test\r\n") + len("X-Pad: \r\n") + len("\r\n")
    pad = "p" * (16 * KIB - fixed)
    with Client(http_server.address) as c:
        r = c.request("GET", "/hello", headers=[("Host", "ladder.test"), ("X-Pad", pad)])
        assert r.status == 200
    raw = request_bytes("GET", "/hello", headers=[("Host", "ladder.test"), ("X-Pad", pad + "p")])
    expect_error_then_close(http_server, raw, 431)


def test_endless_header_line_is_431_without_waiting_for_its_end(http_server):
    with Client(http_server.address) as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * (17 * KIB))
        assert c.read_response().status == 431
        c.expect_closed()


def test_too_many_header_fields_is_431(http_server):
    headers = [(f"X-{i}", "1") for i in range(200)]  # far under 16 KiB, over 128 fields
    expect_error_then_close(http_server, request_bytes("GET", "/hello", headers=headers), 431)


@pytest.mark.parametrize("path", ["/hello", "/", "/stats"])
def test_head_is_the_get_headers_without_a_body(http_server, path):
    with Client(http_server.address) as c:
        c.send(request_bytes("HEAD", path) + request_bytes("GET", "/hello"))
        r = c.read_response(head=True)
        assert r.status == 200 and r.body == b""
        assert int(r.header("content-length")) > 0
        assert c.read_response().body == HELLO, "no body was sent after the HEAD answer"
