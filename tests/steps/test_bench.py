"""Smoke test of the bench runner (tools/bench): a tiny scenario against one
or two steps for a few seconds. It checks the runner and its CSV — the schema
and that the numbers are sane — never a timing: benchmarks write data, they
do not pass or fail."""

from __future__ import annotations

import csv
import os
import platform
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, STEPS, bin_dir

BENCH = ROOT / "tools" / "bench"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "tools" / "pylib"))

import report  # noqa: E402


def pick_steps() -> list[str]:
    """Two event-loop steps if there are (05 and 06 by preference), else any two
    that serve 50 clients at once."""
    numbers = [s.number for s in STEPS if s.variant is None]
    loops = [s.number for s in STEPS if s.variant is None and s.caps.event_loop]
    preferred = [n for n in ("05", "06") if n in numbers]
    pool = preferred or loops or [n for n in numbers if n != "01"]
    return pool[:2]


def read(path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    steps = pick_steps()
    if not steps:
        pytest.skip("no concurrent step built")
    if not (bin_dir() / "loadgen").exists():
        pytest.skip(f"{bin_dir()}/loadgen is not built")
    out = tmp_path_factory.mktemp("bench")
    argv = [sys.executable, str(BENCH / "bench.py"), "--steps", ",".join(steps),
            "--peers", "floor", "--scenarios", "http-c1,http-c50", "--repeats", "2",
            "--duration", "0.3", "--warmup", "0.1", "--patience", "0", "--retries", "0",
            "--no-wrk", "--out", str(out), "--tag", "smoke"]
    env = dict(os.environ, MPLBACKEND="Agg", LADDER_BIN=str(bin_dir()))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env,
                          cwd=ROOT)
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout}\n{proc.stderr}"
    return steps, out, proc.stdout


def test_bench_writes_the_csv_schema(bench_run):
    steps, out, stdout = bench_run
    columns, rows = read(out / "smoke.csv")
    assert columns == report.COLUMNS
    run_columns, runs = read(out / "smoke-runs.csv")
    assert run_columns == report.RUN_COLUMNS
    assert runs and all(r["kept"] in ("0", "1") for r in runs)
    servers = {(r["server"], r["scenario"]) for r in rows}
    for n in steps:
        for scenario in ("http-c1", "http-c50"):
            assert (f"step-{n}", scenario) in servers, f"no row for step-{n} {scenario}"
    assert "req/s" in stdout, "the terminal table is missing"
    assert (out / "README.md").exists()


def test_bench_numbers_are_sane(bench_run):
    steps, out, _ = bench_run
    _, rows = read(out / "smoke.csv")
    for r in rows:
        where = f"{r['server']} {r['scenario']}: "
        assert r["note"] == "", where + r["note"]
        assert r["client"] == "loadgen" and r["mode"] == "http"
        assert int(r["runs"]) == 2, where + "runs"
        assert int(r["requests"]) > 0, where + "no requests"
        assert float(r["rps_min"]) <= float(r["rps"]) <= float(r["rps_max"]), where + "rps"
        assert int(r["errors"]) == 0, where + r["error_kinds"]
        assert 0 < int(r["p50_us"]) <= int(r["p99_us"]) <= int(r["max_us"]), where + "latency"
        # CPU per request: the server did work, and not absurdly much of it.
        assert 0 < float(r["cpu_us_per_req"]) < 10_000, where + r["cpu_us_per_req"]
        assert float(r["cpu_us_per_req_min"]) <= float(r["cpu_us_per_req_max"])
        assert int(r["threads"]) >= 1 and int(r["peak_rss_kib"]) > 0, where + "proc"
        assert int(r["ctx_switches"]) >= 0
        assert 0 < float(r["wakeups_per_req"]) <= 2, where + "wakeups"
        assert int(r["connections"]) == (1 if r["scenario"] == "http-c1" else 50)
        assert r["nproc"] == str(os.cpu_count()) and r["kernel"] == platform.release()
        assert r["commit"] and r["pinning"]
        assert float(r["foreign_cores"]) >= 0 and float(r["steal_pct"]) >= 0
        if r["step"] != "floor":
            assert '"requests"' in r["server_stats"], where + "server stats"


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_bench_counts_syscalls_per_request(bench_run):
    _, out, _ = bench_run
    _, rows = read(out / "smoke.csv")
    rows = [r for r in rows if r["scenario"] == "http-c50"]  # the default set traces these
    assert rows
    for r in rows:
        # At least a read and a write per request; far fewer than a hundred.
        assert 1.5 < float(r["syscalls_per_req"]) < 100, f"{r['server']}: {r['syscalls_top']}"
        assert "read" in r["syscalls_top"] or "recv" in r["syscalls_top"]
