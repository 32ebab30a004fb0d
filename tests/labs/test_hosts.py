"""lab-hosts (labs/hosts), its quick run: the topology up (client, lb,
host1..3 on a bridge), all three hosts serving through HAProxy, host2's
server killed and routed around (no failure once it is marked down), then
back; and everything torn down, also when the run is interrupted. Root
and haproxy only.

    LADDER_BIN=build/bin .venv/bin/python -m pytest tests/labs/test_hosts.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from labkit import BIN, ROOT, alive, is_root, netns_names

RUN_SH = ROOT / "labs" / "hosts" / "run.sh"
NAMES = ("client", "lb", "host1", "host2", "host3", "sw")
ROOT_ONLY = pytest.mark.skipif(
    not is_root() or not shutil.which("ip"),
    reason="needs root and iproute2: six network namespaces, a bridge, veth pairs")
HAPROXY = pytest.mark.skipif(
    not (shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy")),
    reason="needs haproxy (tools/deps.sh labs installs it)")


@pytest.fixture
def lab_id():
    lab_id = f"t{os.getpid()}{uuid.uuid4().hex[:6]}"
    yield lab_id
    for n in NAMES:  # what run.sh's trap does, should it not have run
        ns = f"ladder-h-{lab_id}-{n}"
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        for pid in pids.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    assert not {n for n in netns_names() if lab_id in n}, "a namespace was left behind"


@ROOT_ONLY
@HAPROXY
def test_three_hosts_behind_haproxy_and_one_killed(lab_id):
    p = subprocess.run([str(RUN_SH), str(BIN), "--quick", "--json"], capture_output=True,
                       text=True, timeout=90, cwd=ROOT, env={**os.environ, "LADDER_LAB_ID": lab_id})
    assert p.returncode == 0, p.stdout + p.stderr
    assert not {n for n in netns_names() if lab_id in n}, "run.sh removes its namespaces"
    f = json.loads(p.stdout.strip().splitlines()[-1].removeprefix("facts: "))
    for frontend in ("tcp_roundrobin", "http_roundrobin"):
        s = f["shares"][frontend]
        assert s["errors"] == 0 and s["requests"] > 0, frontend
        # Every host served, and none took the lion's share.
        assert all(0.15 < share < 0.5 for share in s["share"].values()), s
    fo = f["failover"][0]
    assert fo["mode"] == "http"
    # Checks every 200 ms, two failures: marked down within about 0.4 s (+ slack).
    assert fo["detect_ms"] is not None and fo["detect_ms"] < 1500
    assert fo["failed_after_down"] == 0, "once marked down, host2 gets no request"
    assert fo["rejoin_ms"] is not None and fo["host2_after_rejoin"] > 0
    assert f"{fo['failed_before_down']} requests failed" in p.stdout


@ROOT_ONLY
@HAPROXY
def test_interrupted_run_removes_every_namespace_and_process(lab_id):
    p = subprocess.Popen([str(RUN_SH), str(BIN)], cwd=ROOT, start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, "LADDER_LAB_ID": lab_id})
    pids: list[str] = []
    try:
        deadline = time.monotonic() + 20
        lb = f"ladder-h-{lab_id}-lb"
        while time.monotonic() < deadline and p.poll() is None:
            if lb in netns_names():
                pids = subprocess.run(["ip", "netns", "pids", lb], capture_output=True,
                                      text=True).stdout.split()
                if pids:  # HAProxy is up: so are the hosts' servers
                    break
            time.sleep(0.1)
        assert pids, "HAProxy never started"
        for n in ("host1", "host2", "host3"):
            pids += subprocess.run(["ip", "netns", "pids", f"ladder-h-{lab_id}-{n}"],
                                   capture_output=True, text=True).stdout.split()
        time.sleep(0.5)
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C does
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode != 0
    assert not {n for n in netns_names() if lab_id in n}, "the trap removed the namespaces"
    assert not alive(pids), "a process outlived the lab"


README_SECTIONS = ("## Claim", "## Run", "## What you see", "## Why (kernel level)", "## Try")


def test_readme_has_the_sections_and_run_sh_the_claim():
    readme = (ROOT / "labs" / "hosts" / "README.md").read_text()
    positions = [readme.find(s) for s in README_SECTIONS]
    assert -1 not in positions and positions == sorted(positions)
    assert RUN_SH.read_text().splitlines()[1].startswith("# Lab hosts — ")
