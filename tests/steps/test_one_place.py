"""Adding a step touches one place: its own directory (code, README, demo.py
and step.toml). A copy of step 06 under a new number, in a scratch copy of
the tree, is found by the step suite, the bench's plan, tools/mkdiff.sh, the
demo runner and the plots' colours — with no other file edited."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, bin_dir

NEW = "12"  # a number no step has


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The tree's Python and step files copied, plus steps/12-copy (06's
    directory), and a bin directory where step-12 is step 06's binary."""
    if not (bin_dir() / "step-06").exists():
        pytest.fail(f"{bin_dir()}/step-06 is not built; this test copies it")
    if any((ROOT / "steps").glob(f"{NEW}-*")):
        pytest.fail(f"a step {NEW} exists: choose another number for this test")
    root = tmp_path_factory.mktemp("tree")
    keep = shutil.ignore_patterns("node_modules", "__pycache__", "*.png", "build*", ".venv")
    for part in ("steps", "tools", "tests/steps", "notebooks", "docs/diffs", "results"):
        shutil.copytree(ROOT / part, root / part, ignore=keep)
    shutil.copytree(ROOT / "steps" / "06-epoll-et", root / "steps" / f"{NEW}-copy", ignore=keep)
    bins = root / "bin"
    bins.mkdir()
    for binary in bin_dir().iterdir():
        (bins / binary.name).symlink_to(binary)
    (bins / f"step-{NEW}").symlink_to(bin_dir() / "step-06")
    return root, bins


def run(cmd, root, bins, timeout=120):
    env = dict(os.environ, LADDER_BIN=str(bins), LADDER_STEPS="", MPLBACKEND="Agg")
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_suite_runs_on_a_new_step_directory(scratch):
    root, bins = scratch
    r = run([sys.executable, "-m", "pytest", "tests/steps", "--collect-only", "-q",
             "-p", "no:cacheprovider"], root, bins)
    ids = [line for line in r.stdout.splitlines() if "::" in line]
    assert any(f"[{NEW}]" in i or f"-{NEW}]" in i for i in ids), r.stdout[-2000:] + r.stderr
    # It is an edge-triggered loop (its step.toml says so): the ET claims apply.
    assert any("test_06_drain_naive_et_stalls" in i and f"[{NEW}]" in i for i in ids)


def test_the_bench_plans_a_new_step(scratch):
    root, bins = scratch
    r = run([sys.executable, "tools/bench/bench.py", "--list", "--peers", "none"], root, bins)
    assert r.returncode == 0, r.stderr
    assert f"step-{NEW}" in r.stdout, r.stdout


def test_mkdiff_diffs_a_new_step_against_its_base(scratch):
    root, bins = scratch
    r = run(["bash", "tools/mkdiff.sh"], root, bins)
    assert r.returncode == 0, r.stderr
    diff = (root / "docs" / "diffs" / f"05-{NEW}.diff").read_text()
    assert "EPOLLET" in diff, "the copy of 06 differs from 05 by EPOLLET"


def test_the_demo_runner_finds_a_new_step_demo(scratch):
    root, bins = scratch
    r = run([sys.executable, "tools/demo/demo.py", NEW], root, bins, timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"Step {NEW} — " in r.stdout, r.stdout[:500]


def test_the_plots_give_a_new_step_its_own_colour(scratch):
    root, _ = scratch
    sys.path.insert(0, str(root / "notebooks"))
    try:
        import importlib
        lr = importlib.import_module("ladder_results")
        importlib.reload(lr)
        steps = sorted(p.name[:2] for p in (root / "steps").glob("[0-9][0-9]-*"))
        colours = {n: lr.colour(f"step-{n}") for n in steps}
    finally:
        sys.path.remove(str(root / "notebooks"))
    assert NEW in colours
    assert len(set(colours.values())) == len(colours), f"colours repeat: {colours}"
