"""Smoke test of the bench runner (tools/bench): a tiny scenario against one
or two steps for a few seconds. It checks the runner and its CSV — the schema
and that the numbers are sane — never a timing: benchmarks write data, they
do not pass or fail. The performance targets' table is checked on a committed
fixture CSV (tests/fixtures/bench-targets.csv): its arithmetic, not its
verdicts' meaning."""

from __future__ import annotations

import csv
import json
import re
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

import measure  # noqa: E402
import report  # noqa: E402

TARGETS_FIXTURE = ROOT / "tests" / "fixtures" / "bench-targets.csv"


def pick_steps() -> list[str]:
    """Two event-loop steps if there are (05 and 06 by preference), else any two
    that serve 50 clients at once. Not a completion loop (step 11): the smoke
    run's per-request bounds (a read and a send, at most two wake-ups) are a
    readiness loop's."""
    numbers = [s.number for s in STEPS if s.variant is None and s.caps.loop != "io-uring"]
    loops = [s.number for s in STEPS if s.number in numbers and s.caps.event_loop]
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
    assert "The performance targets" in stdout, "the targets are not printed"
    assert "## The performance targets" in (out / "README.md").read_text()


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
        if r["server"] in ("step-05", "step-06", "floor"):
            assert r["workers"] == "1", where + "05, 06 and the floor are one loop each"
        assert r["nproc"] == str(os.cpu_count()) and r["kernel"] == platform.release()
        assert r["commit"] and r["pinning"]
        assert float(r["foreign_cores"]) >= 0 and float(r["steal_pct"]) >= 0
        if r["step"] != "floor":
            assert '"requests"' in r["server_stats"], where + "server stats"


@pytest.mark.skipif(measure.syscall_method() is None,
                    reason="neither perf tracepoints nor strace work here")
def test_bench_counts_syscalls_per_request(bench_run):
    _, out, _ = bench_run
    _, rows = read(out / "smoke.csv")
    rows = [r for r in rows if r["scenario"] == "http-c50"]  # the default set counts these
    assert rows
    for r in rows:
        # At least a read and a write per request; far fewer than a hundred.
        assert 1.5 < float(r["syscalls_per_req"]) < 100, f"{r['server']}: {r['syscalls_top']}"
        assert "read" in r["syscalls_top"] or "recv" in r["syscalls_top"]
        assert r["syscalls_method"] == measure.syscall_method()


def test_targets_set_plans_every_target_cell():
    if not (bin_dir() / "loadgen").exists():
        pytest.skip(f"{bin_dir()}/loadgen is not built")
    env = dict(os.environ, LADDER_BIN=str(bin_dir()))
    out = subprocess.run([sys.executable, str(BENCH / "bench.py"), "--list", "--set", "targets",
                          "--peers", "floor"], capture_output=True, text=True, timeout=60,
                         env=env, cwd=ROOT).stdout
    for scenario in ("http-c50", "http-c200", "echo-64", "echo-16k", "idle-15k"):
        assert f"\n{scenario} " in out, out
    assert "not a cell of the performance targets" in out
    assert "step-08-one" in out.split("\nhttp-c200 ")[0], "step 08 on one worker is planned at http-c50"


def test_floor_echoes_every_byte():
    floor = bin_dir() / "floor"
    if not floor.exists() or not (bin_dir() / "loadgen").exists():
        pytest.skip("floor or loadgen is not built")
    server = subprocess.Popen([str(floor), "--port", "0", "--mode", "echo"],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip().rsplit(":", 1)[1]
        for size in ("64", "16384", "200000"):
            lg = subprocess.run([str(bin_dir() / "loadgen"), "--port", port, "--mode", "echo",
                                 "--size", size, "--connections", "4", "--requests", "400"],
                                capture_output=True, text=True, timeout=60)
            result = json.loads(lg.stdout)  # loadgen compares every echoed byte
            assert result["requests"] >= 400 and not any(result["errors"].values()), lg.stdout
    finally:
        server.terminate()
        server.wait(10)


# --------------------------------------------------------------------------
# The performance targets, from the fixture CSV

def fixture_rows() -> list[dict]:
    return report.read_csv(TARGETS_FIXTURE)


def by_ref(ts) -> dict[str, list]:
    out: dict[str, list] = {}
    for t in ts:
        out.setdefault(t.ref, []).append(t)
    return out


def test_targets_are_computed_from_the_rows():
    rows = fixture_rows()
    ts = report.targets(rows)
    refs = by_ref(ts)
    assert {"a", "b", "c", "d", "e"} <= set(refs)
    # The fixture has rows for steps 05-09, the floor and nginx: a target of a
    # step it does not know (a newer step's goal) is "not measured", the rest judged.
    known = {r["server"] for r in rows}
    judged = [t for t in ts if all(name in known
                                   for name in re.findall(r"step-\d\d(?!-)", t.what))]
    assert all(t.result in ("pass", "fail") for t in judged), [t for t in judged
                                                               if t.value is None]
    for t in judged:
        assert t.result == ("pass" if (t.value <= float(t.limit.split()[1].rstrip("×"))
                                       if t.limit.startswith("≤")
                                       else t.value >= float(t.limit.split()[1].rstrip("×")))
                            else "fail"), t
    cell = {(r["server"], r["scenario"]): r for r in rows}
    cpu = lambda s, sc: float(cell[(s, sc)]["cpu_us_per_req"])  # noqa: E731
    # (a): the better of 08 and 09 over nginx, both at http-c50 and http-c200.
    a50 = refs["a"][0]
    assert a50.value == pytest.approx(min(cpu("step-08", "http-c50"), cpu("step-09", "http-c50"))
                                      / cpu("nginx", "http-c50"))
    # (b), (c): step 08 with one worker over the floor; (c) in messages per CPU-second.
    assert refs["b"][0].value == pytest.approx(cpu("step-08-one", "http-c50")
                                               / cpu("floor", "http-c50"))
    assert refs["c"][0].value == pytest.approx(cpu("floor", "echo-64")
                                               / cpu("step-08-one", "echo-64"))
    # (d): per step, the req/s ratio is the target, the CPU ratio reported, RSS a target.
    assert [t.role for t in refs["d"][:3]] == ["target", "reported", "target"]
    base, idle = cell[("step-05", "http-c50")], cell[("step-05", "idle-15k")]
    assert refs["d"][2].value == pytest.approx(
        (float(idle["peak_rss_kib"]) - float(base["peak_rss_kib"])) / float(idle["idle_held"]))


def test_targets_say_what_they_could_not_measure():
    rows = [r for r in fixture_rows() if r["server"] != "nginx"]
    a = by_ref(report.targets(rows))["a"]
    assert [t.result for t in a] == ["not measured", "not measured"]
    rows = [dict(r, workers="1") if r["server"] == "nginx" else r for r in fixture_rows()]
    a = by_ref(report.targets(rows))["a"]
    assert all(t.result == "not measured" and "worker counts differ" in t.measured for t in a)


def test_targets_table_regenerates_from_a_csv(tmp_path):
    pytest.importorskip("matplotlib")
    csv_path = tmp_path / "fixture.csv"
    shutil.copy(TARGETS_FIXTURE, csv_path)
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(BENCH / "plot.py"), str(csv_path)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    summary = (tmp_path / "README.md").read_text()
    assert "## The performance targets" in summary
    assert report.targets_table(fixture_rows()) in summary
    paste = report.targets_markdown(fixture_rows())
    assert paste.count("\n| (") == len(report.targets(fixture_rows()))
