"""The labs' test machinery: find a lab's binary and run it.

Binaries come from build/bin/lab-NAME, or $LADDER_BIN as for tests/steps:

    LADDER_BIN=build-labs/bin .venv/bin/python -m pytest tests/labs
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("LADDER_BIN") or ROOT / "build" / "bin")
if not BIN.is_absolute():
    BIN = ROOT / BIN
# As in tests/steps: LADDER_SANITIZER=tsan when the binaries are a TSan build.
SANITIZER = os.environ.get("LADDER_SANITIZER", "").strip()


@dataclasses.dataclass
class LabRun:
    stdout: str
    stderr: str
    facts: dict

    @property
    def verdict(self) -> str:
        lines = [l for l in self.stdout.splitlines() if l.startswith("verdict: ")]
        assert len(lines) == 1, f"expected one verdict line:\n{self.stdout}"
        return lines[0]


def lab_path(name: str) -> Path:
    path = BIN / f"lab-{name}"
    if not path.exists():
        pytest.fail(f"{path} is missing: build it (make test-labs), or set LADDER_BIN")
    return path


def run_lab(name: str, *args: str, timeout: float = 20, command: list[str] | None = None,
            env: dict | None = None) -> LabRun:
    """Runs lab-NAME --json (or `command`, which ends with it) and returns its
    output and the facts line it printed last."""
    cmd = command or [str(lab_path(name)), "--json", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                       env={**os.environ, **(env or {})})
    assert p.returncode == 0, f"{cmd} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    last = p.stdout.rstrip("\n").splitlines()[-1]
    assert last.startswith("facts: "), f"no facts line:\n{p.stdout}"
    run = LabRun(p.stdout, p.stderr, json.loads(last[len("facts: "):]))
    # The lab's own conclusion, from the same numbers the test checks.
    assert "did not behave as the claim says" not in run.verdict, p.stdout
    return run


def is_root() -> bool:
    return os.geteuid() == 0


# The namespace labs (c100k, hosts, faults): what a run left behind.
def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def alive(pids: list[str], within: float = 5.0) -> list[str]:
    """The processes still running after `within` s: an exited child whose
    parent died first is a zombie until init reaps it, which is not a leak."""
    deadline = time.monotonic() + within
    while True:
        running = []
        for pid in pids:
            try:
                state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                running.append(pid)
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.1)
