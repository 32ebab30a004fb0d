"""--mode frame: length-prefixed messages (a 4-byte big-endian length, then
that many bytes), echoed back one by one. TCP keeps no message boundaries —
two sends may arrive as one read, one send as several — so the protocol
carries them, and every step keeps them (common/session.cpp)."""

import random
import struct

from conftest import Client

MAX_FRAME = 1024 * 1024  # kMaxFrame, common/protocol_limits.h


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def read_frames(client: Client, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        length = struct.unpack(">I", client.read_exactly(4))[0]
        out.append(client.read_exactly(length))
    return out


def test_frames_sent_together_come_back_one_by_one(start_server):
    """Many frames in one send (they arrive as one read): each comes back
    whole, in order — the boundaries the byte stream lost, kept."""
    server = start_server("frame")
    payloads = [bytes([i]) * (i * 37 % 500) for i in range(60)]
    with Client(server.address) as c:
        c.send(b"".join(frame(p) for p in payloads))
        assert read_frames(c, len(payloads)) == payloads
    assert server.stop().stats["requests"] == len(payloads)


def test_a_frame_in_pieces_is_answered_once_whole(start_server):
    """One frame sent a few bytes at a time (several reads): no answer until
    its last byte, then exactly one."""
    server = start_server("frame")
    rng = random.Random(7)
    payload = bytes(rng.randrange(256) for _ in range(3000))
    raw = frame(payload)
    with Client(server.address) as c:
        at = 0
        while at < len(raw):
            n = rng.randint(1, 300)
            c.send(raw[at:at + n])
            at += n
            if at < len(raw):
                assert not c.readable_within(0.01), "answered before the frame was whole"
        assert read_frames(c, 1) == [payload]


def test_a_frame_past_the_limit_closes_the_connection(start_server):
    server = start_server("frame")
    with Client(server.address) as c:
        c.send(struct.pack(">I", MAX_FRAME + 1) + b"x" * 100)
        c.expect_closed()
    with Client(server.address) as c:  # the server carries on
        c.send(frame(b"still here"))
        assert read_frames(c, 1) == [b"still here"]


def test_a_partial_frame_at_half_close_is_dropped(start_server):
    """The client's FIN after a whole frame and half of another: the whole
    one is answered, the half never, and the server closes."""
    server = start_server("frame")
    with Client(server.address) as c:
        c.send(frame(b"whole") + frame(b"half a frame")[:7])
        c.sock.shutdown(1)  # SHUT_WR
        assert read_frames(c, 1) == [b"whole"]
        c.expect_closed()
