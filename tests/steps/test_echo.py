"""--mode echo (SPEC "Protocols"): every byte received is sent back, in
order, none lost; after a half-close the server sends what is left, then
closes."""

import os
import random
import socket

import pytest

from conftest import Client, echo_exchange

MIB = 1 << 20


@pytest.mark.parametrize("seed", [1, 2])
def test_one_mib_in_random_fragments_comes_back_identical(echo_server, seed):
    data = random.Random(seed).randbytes(MIB)
    with Client(echo_server.address) as c:
        got = echo_exchange(c, data, seed=seed)
    assert len(got) == len(data)
    assert got == data, f"first difference at byte {first_difference(got, data)}"


def first_difference(a: bytes, b: bytes) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def test_small_messages_are_echoed_one_by_one(echo_server):
    with Client(echo_server.address) as c:
        for i in range(20):
            msg = f"message {i}\n".encode()
            c.send(msg)
            assert c.read_exactly(len(msg)) == msg


@pytest.mark.parametrize("size", [0, 5, 200_000])
def test_half_close_gets_the_rest_then_close(echo_server, size):
    data = os.urandom(size)
    with Client(echo_server.address) as c:
        got = echo_exchange(c, data, seed=size, half_close=True)
        assert got == data, f"{len(got)} of {len(data)} bytes before the close"
        assert c.eof


def test_sequential_clients(echo_server):
    for i in range(5):
        data = bytes([65 + i]) * (1000 * (i + 1))
        with Client(echo_server.address) as c:
            assert echo_exchange(c, data, seed=i) == data


@pytest.mark.only(concurrent=True)
def test_concurrent_clients_interleaved(echo_server):
    clients = [Client(echo_server.address) for _ in range(8)]
    try:
        for rnd in range(3):
            msgs = [f"round {rnd} client {i} ".encode() * (i + 1) for i in range(len(clients))]
            for c, m in zip(clients, msgs):
                c.send(m)
            for c, m in reversed(list(zip(clients, msgs))):
                assert c.read_exactly(len(m)) == m
    finally:
        for c in clients:
            c.close()


def test_bytes_that_look_like_http_are_just_bytes(echo_server):
    data = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\r\n"
    with Client(echo_server.address) as c:
        c.send(data)
        assert c.read_exactly(len(data)) == data
        c.sock.shutdown(socket.SHUT_WR)
        c.expect_closed()
