"""What a learner reads in labs/NAME/README.md is what a lab printed: each
README's "What you see" holds its lab's output in a block written by
tools/docs/labs_output.py (c100k's from its committed CSV), with the run's
provenance, and outside those blocks no measured figure is typed by hand.

    .venv/bin/python -m pytest tests/labs/test_lab_readmes.py
    tools/docs/labs_output.py --only backlog      rewrite one block from a run
"""

from __future__ import annotations

import csv
import importlib.util
import re
import subprocess
import sys

import pytest

from labkit import ROOT

GENERATOR = ROOT / "tools" / "docs" / "labs_output.py"


def load(name: str, path):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


gen = load("labs_output", GENERATOR)
# The one definition of a hand-typed figure, shared with the other learner text.
learner = load("learner_text_rules", ROOT / "tests" / "steps" / "test_learner_text.py")
NUMBER_WITH_UNIT, without_generated = learner.NUMBER_WITH_UNIT, learner.without_generated

LABS = gen.all_labs()

# Figures that are constants, not measurements: the lab's own settings and
# the kernel's defaults, quoted as what they are. Anything else measured
# belongs in the lab's output block.
ALLOWED = {
    "backlog": {
        "8 clients": "kClients in labs/backlog/lab.cpp",
        "1 s": "TCP_TIMEOUT_INIT: the first SYN resend",
    },
    "connect-nonblocking": {
        "1 s": "TCP_TIMEOUT_INIT: the first SYN resend",
    },
    "epoll-file": {
        "10 ms": "the timerfd the lab arms, timer_in(10)",
    },
    "faults": {
        "3 %": "faults.py's default --loss",
        "10 MiB": "faults.py's default --size",
        "2 s": "faults.py's default --cut-timeout (the servers' --idle-timeout)",
        "1 s": "the steps' once-a-second sweep for expired connections",
        "200 ms": "TCP_RTO_MIN, and tbf's latency 200ms in the rate rule",
        "64 KiB": "the echo phase's largest fragment",
        "4 KiB": "the http phase's largest POST body",
        "30 s": "faults.py's no-progress deadline",
        "256 KiB": "kOutputHighWater in common/protocol_limits.h",
    },
    "framing": {
        "1 ms": "the pause the Try section suggests",
        "4 GiB": "the largest length a 4-byte prefix can announce",
    },
    "hosts": {
        "200 ms": "HAProxy's check interval in the lab's config (inter 200)",
        "30 connections": "hosts.py's default --connections",
    },
    "keepalive": {
        "7200 s": "tcp_keepalive_time's default",
        "200 ms": "TCP_RTO_MIN, where retransmission backoff starts",
    },
    "oneshot": {
        "4 threads": "kThreads in labs/oneshot/lab.cpp",
        "200 µs": "kGapUs in labs/oneshot/lab.cpp",
        "1 ms": "kWorkUs in labs/oneshot/lab.cpp",
    },
    "c100k": {
        "100,000 connections": "c100k.py's default --connections, the lab's name",
        "15,000 connections": "PER_PROCESS in labs/c100k/c100k.py",
        "4 s": "c100k.py's default --duration",
        "3 s": "c100k.py's default --idle-window",
        "90 %": "room * 0.9 in c100k.py's measure(): what it may take of fs.file-max",
    },
}


def typed_figures(text: str) -> list[str]:
    """Figures with a unit in the prose: outside generated blocks, code
    fences, code spans and comments, as in tests/steps/test_learner_text.py."""
    text = without_generated(text)
    text = gen.BLOCK.sub("", text)
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    return [m.group(0) for m in NUMBER_WITH_UNIT.finditer(text)]


def test_every_lab_readme_has_its_output_blocks():
    """tools/docs/labs_output.py --check: each README has the block of each
    command its lab runs, each with its provenance line, and c100k's are
    what their CSV says."""
    r = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("name", LABS)
def test_output_block_is_under_what_you_see(name):
    text = (ROOT / "labs" / name / "README.md").read_text()
    start = text.index("## What you see")
    end = text.index("\n## ", start + 1)
    for m in gen.BLOCK.finditer(text):
        assert start < m.start() < end, f"the block of `{m.group(1)}` is outside 'What you see'"


@pytest.mark.parametrize("name", LABS)
def test_no_hand_typed_measurement(name):
    allowed = ALLOWED.get(name, {})
    found = [f for f in typed_figures((ROOT / "labs" / name / "README.md").read_text())
             if f not in allowed]
    assert not found, (f"labs/{name}/README.md: figures typed by hand (let the lab's output "
                       f"block show them and refer to it, or quote the constant by name): {found}")


def test_allowlist_is_still_needed():
    """An allowed constant the README no longer quotes leaves the list."""
    stale = []
    for name, figures in ALLOWED.items():
        said = set(typed_figures((ROOT / "labs" / name / "README.md").read_text()))
        stale += [f"{name}: {f}" for f in figures if f not in said]
    assert not stale, f"remove from ALLOWED: {stale}"


# ---------------------------------------------------------------------------
# The checker itself, on broken copies of a README.


BACKLOG = (ROOT / "labs" / "backlog" / "README.md").read_text()


def test_check_finds_a_missing_block():
    text = gen.BLOCK.sub("    listen(fd, 4), no accept(): 5 of 8 clients connected", BACKLOG)
    assert any("lacks its block" in p for p in gen.problems("backlog", text))


def test_check_finds_a_missing_provenance_line():
    text = gen.BLOCK.sub(lambda m: f"<!-- lab-output: {m.group(1)} -->\n\n    output\n\n"
                                   "<!-- /lab-output -->", BACKLOG)
    assert any("provenance" in p for p in gen.problems("backlog", text))


def test_check_finds_a_command_of_another_lab():
    text = BACKLOG.replace("<!-- lab-output: make lab-backlog -->",
                           "<!-- lab-output: make lab-sigpipe -->")
    found = gen.problems("backlog", text)
    assert any("not how lab backlog runs" in p for p in found)
    assert any("lacks its block" in p for p in found)
    assert gen.problems("backlog", BACKLOG) == []


def test_c100k_blocks_follow_their_csv(tmp_path, monkeypatch):
    """Another CSV, other figures: the ladder's table is printed from the rows."""
    (source,) = {m.group(1) for m in gen.CSV_NAMED.finditer(
        (ROOT / "labs" / "c100k" / "README.md").read_text())}
    rows = list(csv.DictReader((ROOT / source).open(newline="")))
    rows = [r for r in rows if not r["label"] and int(r["connections"]) <= 100_000]
    rows[0]["rps"] = "12345.0"
    results = tmp_path / "results"
    results.mkdir()
    path = results / "c100k-2099-01-01-test.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    out = gen.c100k_body(gen.c100k_module(), "ladder", path)
    assert "12,345" in out and "`results/c100k-2099-01-01-test.csv`" in out
    assert gen.PROVENANCE.search(out.splitlines()[0])
    assert gen.c100k_body(gen.c100k_module(), "push", path) is None, "no pushed rows in it"
