"""lab-c100k's machinery, at 2,000 connections (labs/c100k): loadgen's idle
holder in two processes from two loopback source addresses, two step-08
processes sharing the port, and the lab's run.sh in a namespace of its own,
cleaned up after a run, after Ctrl-C, and after a run killed outright. The
timeout structure's O(expired) sweep is a unit test
(tests/unit/test_conn.cpp, "TimerWheel: 20,000 idle entries").

    LADDER_BIN=build/bin .venv/bin/python -m pytest tests/labs/test_c100k.py
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from labkit import BIN, ROOT, alive, is_root, netns_names

RUN_SH = ROOT / "labs" / "c100k" / "run.sh"
IDLE = 2000
ROOT_ONLY = pytest.mark.skipif(not is_root() or not shutil.which("ip"),
                               reason="needs root and iproute2: a network namespace of its own")


def binary(name: str):
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: build it (make test-labs), or set LADDER_BIN")
    return path


def remove_namespace(ns: str) -> None:
    """What run.sh's trap does, for a run.sh killed before it could."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    for pid in pids.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def lab_id():
    lab_id = f"t{os.getpid()}{uuid.uuid4().hex[:6]}"
    yield lab_id
    remove_namespace(f"ladder-c100k-{lab_id}")
    assert f"ladder-c100k-{lab_id}" not in netns_names(), "a namespace was left behind"


def start_server(*args: str) -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([str(binary("step-08")), *args], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    m = re.match(r"listening on .*:(\d+)$", line.strip())
    assert m, f"no ready line: {line!r}"
    return p, int(m.group(1))


def stop_server(p: subprocess.Popen) -> dict:
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=15)
    return json.loads(out.strip().splitlines()[-1])


def test_idle_holder_in_two_processes_from_two_sources_to_two_server_processes():
    """No namespace needed: 2,000 idle connections on loopback, held by two
    loadgen children, bound to 127.0.0.1 and 127.0.0.2, accepted by two
    step-08 processes on one port (SO_REUSEPORT across processes)."""
    first, port = start_server("--port", "0", "--workers", "1")
    second, _ = start_server("--port", str(port), "--workers", "1")
    try:
        lg = subprocess.Popen(
            [str(binary("loadgen")), "--port", str(port), "--connections", "10",
             "--idle", str(IDLE), "--idle-procs", "2", "--idle-sources", "2",
             "--idle-hold", "1", "--duration", "0.5", "--progress", "0.25"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peers, holders = set(), set()
        for line in lg.stderr:  # during the hold: who holds what, from where
            if "phase=hold" in line:
                ss = subprocess.run(["ss", "-tnpH", "state", "established",
                                     f"( dport = :{port} )"],
                                    capture_output=True, text=True).stdout
                for row in ss.splitlines():
                    cols = row.split()
                    peers.add(cols[2].rsplit(":", 1)[0])
                    holders.update(re.findall(r"pid=(\d+)", row))
                break
        out, err = lg.communicate(timeout=30)
        assert lg.returncode == 0, err
        result = json.loads(out)
    finally:
        stats = [stop_server(p) for p in (first, second)]
    assert result["idle_held"] == IDLE and result["idle_lost"] == 0
    assert result["idle_procs"] == 2 and result["idle_sources"] == 2
    assert sum(result["errors"].values()) == 0 and result["requests"] > 0
    assert {"127.0.0.1", "127.0.0.2"} <= peers
    # The loadgen process itself (the 10 active) and its two idle children.
    assert len(holders) == 3, holders
    accepted = [s["accepted"] for s in stats]
    assert sum(accepted) == IDLE + 10
    assert min(accepted) > IDLE / 4, f"the kernel spread them over both processes: {accepted}"


def test_loadgen_refuses_idle_processes_too_small_for_their_share():
    p = subprocess.run([str(binary("loadgen")), "--port", "9", "--idle", "100000",
                        "--idle-procs", "2"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1
    assert "more than a process may hold" in p.stderr


@ROOT_ONLY
def test_lab_at_2000_connections_two_server_processes_two_sources(lab_id, tmp_path):
    p = subprocess.run(
        [str(RUN_SH), str(BIN), "--connections", str(IDLE), "--steps", "08",
         "--server-procs", "2", "--sources", "2", "--no-poll", "--duration", "1",
         "--idle-window", "1", "--results", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=90, cwd=ROOT,
        env={**os.environ, "LADDER_LAB_ID": lab_id})
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"ladder-c100k-{lab_id}" not in netns_names(), "run.sh removes its namespace"
    facts = json.loads(p.stdout.strip().splitlines()[-1].removeprefix("facts: "))
    rows = {r["connections"]: r for r in facts["rows"]}
    assert set(rows) == {0, IDLE}
    r = rows[IDLE]
    assert r["held"] == IDLE and r["lost"] == 0 and r["errors"] == 0 and not r["stopped_by"]
    assert r["server_procs"] == 2 and len(r["accepted_each"]) == 2
    assert sum(r["accepted_each"]) == IDLE + r["active"]
    assert min(r["accepted_each"]) > IDLE / 4
    assert r["sources"] == 2 and r["peers_seen"] == 2  # ss saw both source addresses
    # Every figure the lab reports was measured.
    for key in ("rps", "p99_us", "cpu_us_per_req", "idle_cpu_pct", "user_bytes_per_conn",
                "skmem_bytes_per_conn", "slab_bytes_per_conn", "establish_s"):
        assert r[key] is not None, key
    assert 0 < r["user_bytes_per_conn"] < 64 * 1024
    assert r["slab_bytes_per_conn"] > 0
    assert facts["held_all"] == ["08"]
    # Its words carry its numbers; its rows are in its own CSV.
    assert f"{r['held']:,}" in p.stdout and "verdict:" in p.stdout
    (csv_path,) = tmp_path.glob("c100k-*.csv")
    written = list(csv.DictReader(csv_path.open()))
    assert [int(w["connections"]) for w in written] == [0, IDLE]
    assert written[1]["held"] == str(IDLE)


@ROOT_ONLY
def test_lab_cleans_up_on_ctrl_c_and_after_a_killed_run(lab_id, tmp_path):
    ns = f"ladder-c100k-{lab_id}"
    p = subprocess.Popen(
        [str(RUN_SH), str(BIN), "--levels", str(IDLE), "--steps", "08", "--server-procs", "2",
         "--idle-procs", "2", "--no-poll", "--duration", "30", "--no-results"],
        cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "LADDER_LAB_ID": lab_id})
    try:
        deadline = time.monotonic() + 20
        pids = ""
        while time.monotonic() < deadline and p.poll() is None:
            if ns in netns_names():
                pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                      text=True).stdout
                if len(pids.split()) >= 6:  # lab, 2 servers, loadgen, its 2 idle children
                    break
            time.sleep(0.1)
        assert len(pids.split()) >= 6, "the lab never got its processes going"
        time.sleep(1)
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C does
        p.wait(timeout=20)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode != 0
    assert ns not in netns_names(), "the trap removed the namespace"
    assert not alive(pids.split()), "a process outlived the lab"

    # A run killed outright leaves its namespace (and processes) behind; the
    # next run removes it, then runs.
    orphan = subprocess.Popen(["true"])
    orphan.wait()
    stale = f"ladder-c100k-{orphan.pid}"
    if stale in netns_names():
        pytest.skip(f"{stale} exists already")
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        again = subprocess.run(
            [str(RUN_SH), str(BIN), "--levels", "0", "--steps", "08", "--server-procs", "1",
             "--no-poll", "--duration", "0.5", "--idle-window", "0.2", "--no-results"],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
            env={**os.environ, "LADDER_LAB_ID": lab_id})
    finally:
        leftover = stale in netns_names()
        remove_namespace(stale)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not leftover and f"removing {stale}" in again.stdout


README_SECTIONS = ("## Claim", "## Run", "## What you see", "## Why (kernel level)", "## Try")


def test_readme_has_the_sections_and_run_sh_the_claim():
    readme = (ROOT / "labs" / "c100k" / "README.md").read_text()
    positions = [readme.find(s) for s in README_SECTIONS]
    assert -1 not in positions and positions == sorted(positions)
    assert RUN_SH.read_text().splitlines()[1].startswith("# Lab c100k — ")
