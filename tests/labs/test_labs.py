"""Every lab's claim, measured: each test runs one labs/NAME binary and
asserts what the kernel did (counts, errno names, bytes lost or kept).
Timing claims are ratios or orders of magnitude from the same run.

    make test-labs
    LADDER_BIN=build-labs/bin .venv/bin/python -m pytest tests/labs -k sigpipe
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from labkit import BIN, ROOT, SANITIZER, is_root, lab_path, run_lab

LABS = sorted(p.parent.name for p in (ROOT / "labs").glob("*/lab.cpp"))


def test_close_rst_loses_data_and_drain_keeps_it():
    run = run_lab("close-rst")
    f = run.facts
    # The words carry the run's numbers.
    assert f"the client read {f['rst_received']}, lost {f['rst_sent'] - f['rst_received']}" in run.stdout
    # close() with the request unread: RST; the client reads what had reached
    # its receive queue, then ECONNRESET; the rest of what was sent is gone.
    assert f["rst_error"] == "ECONNRESET"
    assert f["rst_received"] == f["rst_queued"]
    assert f["rst_sent"] - f["rst_received"] > 0
    # shutdown(SHUT_WR), read to EOF, close(): every byte, then EOF.
    assert f["fin_error"] == "0"
    assert f["fin_received"] == f["fin_sent"] > 0


def test_sigpipe_second_send_kills_unless_guarded():
    f = run_lab("sigpipe").facts
    for case in ("default", "ignore", "nosignal"):
        assert f[f"{case}_first"] == 5, "the first send to a closed peer succeeds"
        assert f[f"{case}_rst"] is True, "and draws the peer's RST"
    assert f["default_signal"] == "SIGPIPE"
    assert f["default_second_error"] == "killed"
    for case in ("ignore", "nosignal"):
        assert f[f"{case}_signal"] == "none"
        assert f[f"{case}_second_error"] == "EPIPE"


def test_connect_nonblocking_einprogress_then_so_error():
    f = run_lab("connect-nonblocking").facts
    assert f["ok_started"] == f["refused_started"] == f["dropped_started"] == "EINPROGRESS"
    assert f["ok_result"] == "0"
    assert f["refused_result"] == "ECONNREFUSED"
    # A full accept queue drops the SYN: still SYN_SENT, resent, never writable.
    assert f["fillers"] >= 1
    assert f["dropped_finished"] is False and f["dropped_syn_sent"] is True
    assert f["dropped_syn_resends"] >= 1
    assert f["blocking_error"] == "ETIMEDOUT"
    # Orders of magnitude, same run: a refusal is one round trip, a dropped
    # SYN waits for the resend timer.
    assert f["dropped_ms"] > 10 * max(f["ok_ms"], f["refused_ms"])
    assert f["blocking_ms"] > 10 * max(f["ok_ms"], f["refused_ms"])


def test_backlog_bounds_the_accept_queue():
    run = run_lab("backlog")
    f = run.facts
    assert f"{f['fast']} of {f['clients']} clients connected at once" in run.stdout
    assert f"Accept queue: {f['queued']} waiting, limit {f['limit']}" in run.stdout
    # Linux lets backlog + 1 finished handshakes wait for accept().
    assert f["fast"] == f["queued"] == f["backlog"] + 1
    assert f["limit"] == f["backlog"]
    # The others' SYNs were dropped: SYN_SENT, then connected by a resend
    # once accept() made room, an order of magnitude later than the rest.
    assert f["syn_sent"] == f["clients"] - f["fast"] == f["late"]
    assert f["late_min_ms"] > 10 * f["fast_max_ms"]
    assert f["big_limit"] == f["somaxconn"]


def test_epoll_file_refuses_regular_files_only():
    f = run_lab("epoll-file").facts
    assert f["regular_file_add"] == "EPERM"
    assert f["directory_add"] == "EPERM"
    for kind in ("pipe", "eventfd", "timerfd", "signalfd", "TCP_listener", "another_epoll"):
        assert f[f"{kind}_add"] == "0", f"epoll accepts a {kind}"
        assert f[f"{kind}_fired"] is True, "and reports its event"
    assert f["file_poll_in"] and f["file_poll_out"], "poll() calls a file always ready"


def test_framing_stream_joins_and_splits_length_prefix_recovers():
    f = run_lab("framing").facts
    assert f["joined_bytes"] == 10, "two sends of 5 bytes came out of one recv"
    assert f["split_recvs"] > 1, "one send came out of several recvs"
    assert f["split_largest"] < f["split_bytes"]
    assert f["frames_decoded"] == f["frames_sent"] == 4
    assert f["frames_identical"] is True
    assert f["frame_recvs"] > f["frames_sent"]


def test_oneshot_one_handler_at_a_time():
    # Under a ThreadSanitizer build the EPOLLET run's race makes it exit 66:
    # that half is the next test's.
    f = run_lab("oneshot", "--only", "oneshot").facts
    assert f["oneshot_overlaps"] == 0
    assert f["oneshot_bytes"] == f["sends"], "re-arming with EPOLL_CTL_MOD loses no byte"
    if SANITIZER != "tsan":
        f = run_lab("oneshot", "--only", "et").facts
        assert f["et_overlaps"] > 0, "EPOLLET alone ran two handlers on one connection"


def test_oneshot_threadsanitizer_sees_the_race_in_et_only():
    tsan = BIN / "lab-oneshot-tsan"
    if SANITIZER == "tsan":
        tsan = lab_path("oneshot")
    elif not tsan.exists():
        pytest.skip(f"{tsan.name} is not built: this build has a sanitizer of its own, "
                    "or the compiler lacks -fsanitize=thread")
    env = {**os.environ, "TSAN_OPTIONS": "halt_on_error=0 exitcode=66"}
    et = subprocess.run([str(tsan), "--only", "et"], capture_output=True, text=True,
                        timeout=60, env=env)
    assert "WARNING: ThreadSanitizer: data race" in et.stderr, et.stderr[-2000:]
    assert "on_readable" in et.stderr
    one = subprocess.run([str(tsan), "--only", "oneshot"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert one.returncode == 0 and "ThreadSanitizer" not in one.stderr, one.stderr[-2000:]


def test_udp_batch_recvmmsg_and_reuseport():
    run = run_lab("udp-batch")
    f = run.facts
    counts = " ".join(str(f[f"socket{k}"]) for k in range(4))
    assert f"per socket: {counts}" in run.stdout
    for method in ("recvfrom", "recvmmsg"):
        assert f[f"{method}_datagrams"] == f[f"{method}_sent"], "bursts fit the buffer: no loss"
    assert f["recvfrom_calls"] == f["recvfrom_datagrams"], "one datagram per recvfrom"
    per_call = f["recvmmsg_datagrams"] / f["recvmmsg_calls"]
    assert per_call > 16, f"recvmmsg with 64 slots took {per_call:.1f} per call"
    # A ratio from the same run, bursts alternated: less CPU per datagram.
    assert f["recvmmsg_cpu_ns"] < f["recvfrom_cpu_ns"]
    # SO_REUSEPORT: 64 senders spread over all 4 sockets, each sender on one.
    assert f["sockets_used"] == 4
    assert f["senders_split"] == 0
    assert f["plain_bind"] == "EADDRINUSE"


def proc_int(name: str) -> int:
    return int(Path("/proc/sys/net/ipv4", name).read_text())


def test_keepalive_defaults_are_off_and_hours():
    f = run_lab("keepalive").facts
    assert f["default_so_keepalive"] == 0
    dead_s = (proc_int("tcp_keepalive_time")
              + proc_int("tcp_keepalive_intvl") * proc_int("tcp_keepalive_probes"))
    assert f["default_dead_s"] == dead_s
    assert f["cut_link"] is False


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@pytest.fixture
def netns_id():
    """A unique id for the namespaces run.sh creates, and their removal
    afterwards even if the script was killed before its own trap ran."""
    lab_id = f"t{os.getpid()}{uuid.uuid4().hex[:6]}"
    yield lab_id
    for side in ("srv", "cli"):
        subprocess.run(["ip", "netns", "del", f"ladder-ka-{lab_id}-{side}"], capture_output=True)
    assert not {n for n in netns_names() if lab_id in n}, "a namespace was left behind"


ROOT_ONLY = pytest.mark.skipif(not is_root() or not shutil.which("ip"),
                               reason="needs root and iproute2: two network namespaces and a veth pair")


@ROOT_ONLY
def test_keepalive_cut_link_noticed_only_when_asked(netns_id):
    run_sh = str(ROOT / "labs" / "keepalive" / "run.sh")
    f = run_lab("keepalive", command=[run_sh, str(lab_path("keepalive")), "--json"],
                env={"LADDER_LAB_ID": netns_id}, timeout=40).facts
    assert f["cut_link"] is True
    assert not {n for n in netns_names() if netns_id in n}, "run.sh removes its namespaces"
    idle, keepalive, user_timeout, sending = (f"conn{i}" for i in range(4))
    # The defaults notice nothing: idle or with data being resent.
    for c in (idle, sending):
        assert f[f"{c}_noticed_ms"] < 0 and f[f"{c}_error"] == "0" and f[f"{c}_established"]
    assert f[f"{sending}_retrans"] > 0
    # Keepalive at 1 + 3 x 1 s, and a 2 s user timeout, do: ETIMEDOUT.
    assert f[f"{keepalive}_error"] == "ETIMEDOUT"
    assert f[f"{keepalive}_retrans"] == 0, "probes are not retransmissions"
    assert f[f"{user_timeout}_error"] == "ETIMEDOUT"
    assert f[f"{user_timeout}_noticed_ms"] >= 1500, "not before its bound"
    # Orders of magnitude against the defaults from /proc, same run.
    assert f["default_dead_s"] * 1000 > 100 * f[f"{keepalive}_noticed_ms"]


@ROOT_ONLY
def test_keepalive_run_sh_cleans_up_when_interrupted(netns_id):
    run_sh = str(ROOT / "labs" / "keepalive" / "run.sh")
    p = subprocess.Popen([run_sh, str(lab_path("keepalive"))], cwd=ROOT, start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, "LADDER_LAB_ID": netns_id})
    def link_is_cut() -> bool:  # the lab has cut the cable and waits for the probes
        show = subprocess.run(["ip", "-n", f"ladder-ka-{netns_id}-cli", "link", "show", "ka-cli"],
                              capture_output=True, text=True).stdout
        return "NO-CARRIER" in show

    try:
        deadline = time.monotonic() + 10
        while not link_is_cut() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert link_is_cut(), "the lab never cut the link"
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C does
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode != 0
    assert not {n for n in netns_names() if netns_id in n}, "the trap removed the namespaces"


# ---------------------------------------------------------------------------
# Every lab keeps the layout: README sections, a claim line, a verdict.

README_SECTIONS = ("## Claim", "## Run", "## What you see", "## Why (kernel level)", "## Try")


@pytest.mark.parametrize("name", LABS)
def test_lab_has_readme_sections_and_claim(name):
    readme = (ROOT / "labs" / name / "README.md").read_text()
    positions = [readme.find(s) for s in README_SECTIONS]
    assert -1 not in positions, f"labs/{name}/README.md lacks {README_SECTIONS}"
    assert positions == sorted(positions), "sections in the order Claim, Run, What you see, Why, Try"
    source = (ROOT / "labs" / name / "lab.cpp").read_text()
    assert source.startswith(f"// Lab {name} — "), "the first line is the claim `make labs` lists"
