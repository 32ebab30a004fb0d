#!/usr/bin/env python3
"""Writes the seed corpora: corpus/http_parser/* (request heads) and
corpus/session/* (streams with fuzz_session.cpp's control tail). Rerun after
changing a seed; libFuzzer grows its own corpus elsewhere (build-fuzz/)."""

import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
H = b"Host: a\r\n"

HEADS = {
    "get": b"GET /hello HTTP/1.1\r\n" + H + b"\r\n",
    "get10": b"GET / HTTP/1.0\r\n\r\n",
    "get10_keepalive": b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "post": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello",
    "absolute": b"GET http://a:80/hello?x=1 HTTP/1.1\r\n" + H + b"\r\n",
    "asterisk": b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
    "leading_crlf": b"\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
    "fields": b"GET / HTTP/1.1\r\n" + H + b"X-A:  v \t\r\nConnection: foo, close\r\nE:\r\n\r\n",
    "bare_lf": b"GET / HTTP/1.1\nHost: a\n\n",
    "bare_cr": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
    "obs_fold": b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n",
    "space_colon": b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    "nul": b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n",
    "cl_cl": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "cl_te": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity \r\n\r\n",
    "cl_bad": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: +0x5 \r\n\r\n",
    "cl_huge": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 18446744073709551616\r\n\r\n",
    "cl_413": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 1048577\r\n\r\n",
    "two_hosts": b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
    "no_host": b"GET / HTTP/1.1\r\n\r\n",
    "v505": b"GET / HTTP/2.0\r\n" + H + b"\r\n",
    "v400": b"GET / HTTP/1.x\r\n" + H + b"\r\n",
    "long_line": b"GET /" + b"a" * 8180 + b" HTTP/1.1\r\n" + H + b"\r\n",
    "long_block": b"GET / HTTP/1.1\r\n" + H + b"X: " + b"b" * 16360 + b"\r\n\r\n",
    "many_fields": b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(130)) + b"\r\n",
}


def session_stream(*parts: bytes) -> bytes:
    return b"".join(parts)


def tail(cuts, write_size: int, flags: int) -> bytes:
    """fuzz_session.cpp reads from the end: flags, write size, cut count, cuts."""
    out = b"".join(struct.pack("<H", c) for c in reversed(cuts))
    return out + bytes([len(cuts), write_size, flags])


def main():
    parser = HERE / "corpus" / "http_parser"
    parser.mkdir(parents=True, exist_ok=True)
    for name, data in HEADS.items():
        (parser / name).write_bytes(data)

    get = lambda p: b"GET " + p + b" HTTP/1.1\r\n" + H + b"\r\n"
    post = lambda body: (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(body)
                         + body)
    streams = {
        "pipeline": session_stream(get(b"/hello"), post(b"abc"), get(b"/nope"),
                                   b"DELETE / HTTP/1.1\r\n" + H + b"\r\n", get(b"/")),
        "jobs": session_stream(get(b"/work?ms=5000"), get(b"/cpu?n=7"), get(b"/hello"),
                               get(b"/work?ms=x"), get(b"/cpu?n=999999999999")),
        "close": session_stream(get(b"/hello"),
                                b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
                                get(b"/hello")),
        "http10": session_stream(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                                 b"GET / HTTP/1.0\r\n\r\n", get(b"/")),
        "error_then_more": session_stream(get(b"/hello"), b"GARBAGE\r\n\r\n", get(b"/hello")),
        "crlf_between": session_stream(post(b"x"), b"\r\n", get(b"/"), b"\r\n\r\n", get(b"/")),
        "partial_tail": session_stream(get(b"/hello"), b"POST /echo HTTP/1.1\r\n" + H
                                       + b"Content-Length: 10\r\n\r\nabc"),
        "big_echo": session_stream(*(post(bytes([65 + i]) * 3000) for i in range(6))),
        "head": session_stream(b"HEAD / HTTP/1.1\r\n" + H + b"\r\n", get(b"/")),
        "smuggle": session_stream(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n",
                                  get(b"/hello")),
        "echo_bytes": b"hello\r\n\x00 world",
    }
    session = HERE / "corpus" / "session"
    session.mkdir(parents=True, exist_ok=True)
    for name, data in streams.items():
        n = len(data)
        variants = {
            "whole": tail([], 0, 0),
            "bytes": tail(list(range(1, min(n, 60))), 1, 16),
            "cuts": tail([n // 3, n // 2, n - 1], 3, 8 | 16),
            "offload_refuse": tail([7, n // 2], 0, 8 | (1 << 5)),
        }
        if b"/work" in data or b"/cpu" in data:  # inline jobs are skipped: offload them
            variants = {k: v[:-1] + bytes([v[-1] | 8]) for k, v in variants.items()}
        if name == "echo_bytes":
            variants = {"echo": tail([3, 9], 1, 7 | 16)}
        for vname, t in variants.items():
            (session / f"{name}_{vname}").write_bytes(data + t)


if __name__ == "__main__":
    main()
