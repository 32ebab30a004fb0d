"""The faults lab's claim, measured (labs/faults): every event-loop step on a
link with 3 % random loss each way and a rate limit keeps every echoed byte
and answers every request correctly; after the link is cut mid-transfer it
frees the connection by its idle timeout, with no descriptor left over.

make lab-faults runs the full claim (10 MiB at 1 Mbit/s, ~2 min); this runs
the same three phases smaller and faster: 2 MiB at 8 Mbit/s, the full 1,000
requests, the same loss and cut (~15 s). Root only (namespaces).

    LADDER_BIN=build/bin .venv/bin/python -m pytest tests/labs/test_faults.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from labkit import BIN, ROOT, is_root, netns_names

sys.path.insert(0, str(ROOT / "tools" / "pylib"))
from ladder import steps as ladder_steps  # noqa: E402

RUN_SH = ROOT / "labs" / "faults" / "run.sh"
SIZE = 2 << 20
RATE_MBIT = 8
REQUESTS = 1000
LOSS = 3
CUT_TIMEOUT = 2
SWEEP = 1  # the steps look for expired connections once a second
# Every event-loop step: the list comes from the steps' own descriptions.
LOOP_STEPS = [n for n, s in ladder_steps.all_steps(ROOT).items() if s.suite.get("loop")]

# The first test waits for the whole run (~15 s, longer on a busy machine).
pytestmark = pytest.mark.timeout(300)

ROOT_ONLY = pytest.mark.skipif(
    not is_root() or not shutil.which("ip") or not shutil.which("tc"),
    reason="needs root and iproute2 (ip, tc): two network namespaces, veth pairs, nftables")


def remove_namespaces(lab_id: str) -> None:
    """What run.sh's trap does, for a run.sh that was killed before it ran."""
    for side in ("srv", "cli"):
        ns = f"ladder-fl-{lab_id}-{side}"
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        for pid in pids.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def new_lab_id() -> str:
    return f"t{os.getpid()}{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def faults():
    """One run of the lab for every step's test: its facts."""
    if not is_root() or not shutil.which("ip") or not shutil.which("tc"):
        pytest.skip("needs root and iproute2 (ip, tc): two network namespaces, veth pairs, nftables")
    lab_id = new_lab_id()
    try:
        p = subprocess.run([str(RUN_SH), str(BIN), "--size", str(SIZE), "--rate", str(RATE_MBIT),
                            "--requests", str(REQUESTS), "--loss", str(LOSS),
                            "--cut-timeout", str(CUT_TIMEOUT), "--json"],
                           capture_output=True, text=True, timeout=240, cwd=ROOT,
                           env={**os.environ, "LADDER_LAB_ID": lab_id}, start_new_session=True)
        left = {n for n in netns_names() if lab_id in n}
    finally:
        remove_namespaces(lab_id)
    if p.stderr.startswith("skipped:"):
        pytest.skip(p.stderr.strip())
    assert p.returncode == 0, f"run.sh exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert not left, f"run.sh left its namespaces behind: {left}"
    last = p.stdout.rstrip("\n").splitlines()[-1]
    assert last.startswith("facts: "), f"no facts line:\n{p.stdout}\n{p.stderr}"
    facts = json.loads(last[len("facts: "):])
    facts["stdout"] = p.stdout
    return facts


@ROOT_ONLY
def test_faults_runs_every_event_loop_step(faults):
    ran = set(faults["steps"]) | set(faults["skipped"])
    assert ran == set(LOOP_STEPS), "the lab runs the steps whose [suite] names a loop"
    for number, why in faults["skipped"].items():
        assert "not built" not in why, f"step {number}: {why}"
    # The verdict line carries the run's own numbers.
    assert f"echoed {SIZE >> 20} MiB byte for byte" in faults["stdout"]
    assert f"answered {REQUESTS} of {REQUESTS} requests" in faults["stdout"]
    assert faults["failures"] == []


def step_facts(faults, number: str) -> dict:
    if number in faults["skipped"]:
        pytest.skip(f"step {number}: {faults['skipped'][number]}")
    return faults["results"][number]


@ROOT_ONLY
@pytest.mark.parametrize("number", LOOP_STEPS)
def test_loss_and_rate_lose_no_byte_and_no_answer(faults, number):
    r = step_facts(faults, number)
    loss, echo, http = r["loss"], r["echo"], r["http"]
    # The faults happened: about LOSS % of the packets dropped each way, and
    # the echo no faster than the link.
    for way in ("in", "out"):
        assert loss[f"{way}_dropped"] > 0
        share = 100 * loss[f"{way}_dropped"] / loss[f"{way}_packets"]
        assert LOSS / 3 < share < LOSS * 2, f"{way}: {share:.1f} % dropped"
    assert echo["size"] * 8 / echo["seconds"] <= RATE_MBIT * 1e6 * 1.05
    assert echo["retrans"] > 0, "the client had to resend"
    # Every byte back, in order (compared as it arrived), then EOF after the half-close.
    assert echo["error"] is None
    assert echo["received"] == echo["sent"] == SIZE
    assert echo["first_mismatch"] is None
    assert echo["eof"] and echo["identical"]
    # Every request answered, each with its own status and body, in order.
    assert (http["correct"], http["wrong"], http["unanswered"]) == (REQUESTS, 0, 0), http
    for key in ("echo_stop", "http_stop"):
        for mode, stop in r[key].items():
            assert (stop["rc"], stop["open"]) == (0, 0), f"{mode}: {stop}"


@ROOT_ONLY
@pytest.mark.parametrize("number", LOOP_STEPS)
def test_cut_link_freed_by_idle_timeout_no_fd_left(faults, number):
    c = step_facts(faults, number)["cut"]
    assert "error" not in c, c
    assert all(c["inode_found"].values()), "the server's socket was found before the cut"
    assert not c["wrong_before_cut"]
    for mode, seconds in c["freed_s"].items():
        # Nothing arrives after the cut: only the server's own deadline frees
        # it, at the first sweep after the timeout.
        assert seconds is not None, f"{mode}: never freed"
        assert seconds <= CUT_TIMEOUT + SWEEP + 1, f"{mode}: freed after {seconds} s"
    for mode, (before, after) in c["fds"].items():
        assert after == before, f"{mode}: {before} descriptors before, {after} after"
    for mode, stop in step_facts(faults, number)["cut_stop"].items():
        assert stop["rc"] == 0 and stop["open"] == 0, f"{mode}: {stop}"
        assert stop["timeouts"] >= 1, f"{mode}: the timeout closed it, not something else"


@ROOT_ONLY
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_faults_run_sh_cleans_up_when_interrupted(how):
    """Ctrl-C (SIGINT to the process group) or a kill of run.sh alone, in
    the middle of the echo: no namespace and no server is left."""
    lab_id = new_lab_id()
    srv = f"ladder-fl-{lab_id}-srv"
    p = subprocess.Popen([str(RUN_SH), str(BIN), "--steps", LOOP_STEPS[0], "--size", "8M",
                          "--rate", "1"], cwd=ROOT, start_new_session=True, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env={**os.environ, "LADDER_LAB_ID": lab_id})
    servers: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while not servers and p.poll() is None and time.monotonic() < deadline:
            servers = subprocess.run(["ip", "netns", "pids", srv], capture_output=True,
                                     text=True).stdout.split()
            time.sleep(0.1)
        assert servers, f"no server started in {srv}"
        if how == "ctrl-c":
            os.killpg(p.pid, signal.SIGINT)
        else:
            os.kill(p.pid, signal.SIGTERM)
        p.wait(timeout=15)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        left = {n for n in netns_names() if lab_id in n}
        remove_namespaces(lab_id)
    assert p.returncode != 0
    assert not left, "the trap removed the namespaces"
    assert not [pid for pid in servers if os.path.exists(f"/proc/{pid}")], "servers left running"


def test_faults_lab_layout():
    readme = (ROOT / "labs" / "faults" / "README.md").read_text()
    sections = ("## Claim", "## Run", "## What you see", "## Why (kernel level)", "## Try")
    positions = [readme.find(s) for s in sections]
    assert -1 not in positions and positions == sorted(positions)
    claim = RUN_SH.read_text().splitlines()[1]
    assert claim.startswith("# Lab faults — "), "the line `make labs` lists"
    out = subprocess.run(["make", "-s", "labs"], capture_output=True, text=True, cwd=ROOT).stdout
    assert claim.removeprefix("# Lab faults — ") in out
