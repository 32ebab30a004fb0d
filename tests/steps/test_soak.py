"""The soak (tools/soak, make soak) in make test: every step at once for ~60 s
under the whole mix — keep-alive and pipelined requests, echo, slowloris,
resets, half-closes, clients that never read, loadgen beside them, and an
EMFILE burst each round — with RSS and descriptors sampled. Asserted per
step: flat after the warm-up (RSS and descriptors end <= 1.1 x start,
descriptors back to their count at start at every quiet point), 0 wrong
responses, 0 lost echo bytes, nothing unanswered outside the burst, every
burst client served or turned away cleanly, and the server serving again
once its descriptors are back.

And a finding of the soak, on its own: the first client after a server ran
out of descriptors.

    .venv/bin/python -m pytest tests/steps/test_soak.py
    SOAK_TEST_SECONDS=120 .venv/bin/python -m pytest tests/steps/test_soak.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import pytest

from conftest import ROOT, SANITIZER, SLOW, STEPS, Client, bin_dir, lowest_free_fd

SOAK = ROOT / "tools" / "soak" / "soak.py"
# The soak's own time; with starting, stopping and the last round about 60 s.
SECONDS = float(os.environ.get("SOAK_TEST_SECONDS", 52))
FLAT = 1.1
BINARIES = [s for s in STEPS if s.variant is None]
NEEDS_RELEASE = pytest.mark.skipif(
    bool(SANITIZER), reason="a sanitizer's RSS is its own (ASan's quarantine grows by design); "
                            "the soak measures release builds")


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    out = tmp_path_factory.mktemp("soak")
    only = ",".join(s.number for s in BINARIES if not s.skip)
    p = subprocess.run([sys.executable, str(SOAK), "--parallel", "--seconds", str(SECONDS),
                        "--steps", only, "--out", str(out), "--json"],
                       capture_output=True, text=True, timeout=SECONDS * 3 + 60, cwd=ROOT,
                       env={**os.environ, "LADDER_BIN": str(bin_dir())})
    last = p.stdout.rstrip("\n").splitlines()[-1] if p.stdout.strip() else ""
    assert last.startswith("facts: "), f"soak.py exit {p.returncode}:\n{p.stdout}\n{p.stderr}"
    facts = json.loads(last[len("facts: "):])
    facts["out"] = out
    facts["stdout"] = p.stdout
    return facts


def result(soak, step) -> dict:
    if step.skip:
        pytest.skip(step.skip)
    assert step.number in soak["results"], f"step {step.number} was not soaked"
    return soak["results"][step.number]


pytestmark = pytest.mark.timeout(SECONDS * 3 + 120)  # the first test waits for the whole soak


@NEEDS_RELEASE
def test_soak_writes_its_table_and_plot(soak):
    out = soak["out"]
    assert (out / "soak.png").stat().st_size > 10_000
    assert (out / "samples.csv").read_text().startswith("t,step,mode,rss_kib,fds")
    assert "burst: served/refused" in soak["stdout"]


@NEEDS_RELEASE
@pytest.mark.parametrize("soaked", BINARIES, ids=str)
def test_soak_rss_and_descriptors_flat_after_warmup(soak, soaked):
    r = result(soak, soaked)
    assert r["rounds"] >= 4, "enough rounds for a warm-up and a measured stretch"
    for mode, f in r["flat"].items():
        assert f is not None, f"{mode}: no quiet points after the warm-up"
        assert f["quiet_points"] >= 2
        assert f["rss_end_kib"] <= FLAT * f["rss_start_kib"], (mode, f["rss_quiet_kib"])
        assert f["fds_end"] <= FLAT * f["fds_start"], (mode, f["fds_quiet"])
        # Every quiet point: all clients gone, every descriptor given back.
        assert f["fds_max_quiet"] <= f["fds_at_start"], (mode, f["fds_quiet"])


@NEEDS_RELEASE
@pytest.mark.parametrize("soaked", BINARIES, ids=str)
def test_soak_no_wrong_answer_no_lost_byte(soak, soaked):
    r = result(soak, soaked)
    tl = r["tally"]
    assert tl["http_ok"] > 100 and tl["echo_bytes"] > 1 << 20, "the mix ran"
    assert tl["resets"] > 0 and tl["half_closes"] > 0 and tl["never_read"] > 0
    assert tl["wrong"] == 0, tl["first_problems"]
    assert tl["echo_lost"] == 0 and tl["echo_wrong"] == 0, tl["first_problems"]
    assert tl["http_unanswered"] == 0, tl["first_problems"]
    assert tl["loadgen_failed"] == 0, tl["first_problems"]
    # Slowloris: closed by the header timeout, or (no timeouts: 01, 02) served late.
    assert tl["slowloris_timed_out"] + tl["slowloris_served"] >= r["rounds"]
    for mode in ("http", "echo"):
        assert r["exit"][mode] == 0 and r["stats"][mode]["open"] == 0, (mode, r["stats"][mode])


@NEEDS_RELEASE
@pytest.mark.parametrize("soaked", BINARIES, ids=str)
def test_soak_emfile_burst_served_or_refused(soak, soaked):
    r = result(soak, soaked)
    tl = r["tally"]
    assert tl["burst_wrong"] == 0 and tl["burst_unanswered"] == 0, tl["first_problems"]
    assert tl["burst_served"] + tl["burst_refused"] == 40 * 2 * r["rounds"]
    if not r["emfile_at_run_time"]:  # step 11: prlimit does not reach a multishot accept
        assert sum(r["stats"][m]["refused"] for m in ("http", "echo")) > 0, "EMFILE was reached"


@NEEDS_RELEASE
@pytest.mark.parametrize("soaked", BINARIES, ids=str)
def test_soak_served_again_after_each_burst(soak, soaked):
    r = result(soak, soaked)
    assert r["tally"]["burst_recovered"] == 2 * r["rounds"], r["tally"]["first_problems"]


# --------------------------------------------------------------------------
# A step that waits in refuse_one()'s poll when the descriptors come back
# must serve the client that wakes it, not turn it away.


def settled(pid: int) -> None:
    """Until the descriptors stop changing: steps 10 and 11 with --threads 2
    set up their second loop after the ready line (under a limit lowered at
    once, 7 and 16 of 20 starts exit 1: epoll_create1 / io_uring_setup EMFILE)."""
    last, since = None, time.monotonic()
    while time.monotonic() - since < 0.3:
        now = sorted(os.listdir(f"/proc/{pid}/fd"))
        if now != last:
            last, since = now, time.monotonic()
        time.sleep(0.02)


def waiting_in_refuse_poll(pid: int) -> bool:
    """A thread of the server asleep in refuse_one()'s poll(&listener, 1, 100):
    /proc/PID/task/TID/syscall is the call number and its arguments."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = open(f"/proc/{pid}/task/{task}/syscall").read().split()
        except OSError:
            continue
        if len(fields) >= 4 and fields[0] == "7" and int(fields[2], 16) == 1 \
                and int(fields[3], 16) == 100:  # x86-64 poll(fds, nfds 1, 100 ms)
            return True
    return False


@pytest.mark.per_binary
@pytest.mark.claim("emfile_at_run_time")
def test_first_client_after_emfile_is_served(step, start_server):
    """Out of descriptors, a client is turned away; the limit comes back at
    once, and the next clients are served."""
    server = start_server("http")
    pid = server.pid
    settled(pid)
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free_fd(pid), hard))  # no room at all
    try:
        for _ in range(10):  # until one is turned away: the limit is reached
            with Client(server.address) as c:
                c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                got = c.read_until_closed()
            if got == b"":
                break
            assert got.endswith(b"\r\n\r\nHello, World!\n"), got[:200]
        assert got == b"", "no client was turned away: the limit was not reached"
        # A step that accepts again after turning one away (a blocking accept,
        # a loop that drains to EAGAIN) meets EMFILE with nobody queued and
        # waits in refuse_one()'s poll: the limit comes back while it waits
        # there. One that waits for the listener's next readiness does not.
        deadline = time.monotonic() + 0.05 * SLOW
        in_poll = waiting_in_refuse_poll(pid)
        while not in_poll and time.monotonic() < deadline:
            time.sleep(0.002)
            in_poll = waiting_in_refuse_poll(pid)
        if not in_poll:
            time.sleep(0.15 * SLOW)  # a poll it might have been in is over
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    # Descriptors are back: the next clients are served, at once. A dozen at
    # the same time, so that whichever worker or listener turned one away
    # has clients of its own waiting.
    clients = [Client(server.address) for _ in range(12)]
    answers = []
    for c in clients:
        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    for c in clients:
        with c:
            try:
                answers.append(c.read_response().status)
            except AssertionError:
                answers.append("closed without an answer")
    stopped = server.stop()
    assert stopped.stats["refused"] >= 1
    assert answers == [200] * 12, "every client once the limit is back"
