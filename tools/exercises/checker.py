"""Builds copies of steps and runs exercises' checks on them.

A check is the step suite's own tests (tests/steps), selected by the
exercise's `select` expression, run against a directory that holds the
copy's binary under the step's name (LADDER_BIN, as for any build). The
pytest plugin pytest_plan.py does the selection and writes a JSON report.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import cutter

ROOT = cutter.ROOT
HERE = Path(__file__).resolve().parent
REFERENCE_BIN = ROOT / "build" / "bin"  # `make build`: the steps themselves


class BuildError(Exception):
    """The compiler's complaint, trimmed to what a learner needs."""

    def __init__(self, summary: str, log: str):
        super().__init__(summary)
        self.summary = summary
        self.log = log


def jobs() -> str:
    return os.environ.get("LADDER_JOBS", "2")


def configured_copies(build_dir: Path) -> list[Path]:
    """The copy directories a build directory was configured with."""
    try:
        cache = (build_dir / "CMakeCache.txt").read_text()
    except OSError:
        return []
    m = re.search(r"^LADDER_COPIES:\w+=(.*)$", cache, re.M)
    return [Path(p) for p in m.group(1).split(";") if p] if m else []


def configure(build_dir: Path, copies: list[Path], sanitize: str = "") -> None:
    """copies: the directories whose NN-name/ subdirectories are copies. Those
    the build directory already builds stay (while they exist), so that one
    build of common/ serves them all."""
    wanted = [Path(c).resolve() for c in copies]
    copies = wanted + [c for c in configured_copies(build_dir) if c.is_dir() and c not in wanted]
    cmd = ["cmake", "-S", str(HERE / "copies"), "-B", str(build_dir), "-G", "Ninja",
           f"-DLADDER_COPIES={';'.join(str(c) for c in copies)}",
           f"-DLADDER_SANITIZE={sanitize}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"cmake could not configure {build_dir.name}", r.stdout + r.stderr)


def compiler_errors(log: str, limit: int = 25) -> str:
    """The first errors of a build log, each with the lines that explain it."""
    lines = log.splitlines()
    keep: list[str] = []
    for i, line in enumerate(lines):
        if re.search(r"\berror\b", line) and not line.startswith(("ninja:", "FAILED:")):
            keep.extend(lines[i:i + 4])
            if len(keep) >= limit:
                break
    text = "\n".join(keep[:limit]) or "\n".join(lines[-limit:])
    return text.replace(str(ROOT) + "/", "")


def target(copies: Path, copy: str) -> str:
    return f"{copies.name}_{copy}"


def build(build_dir: Path, copies: Path, names: list[str], keep_going: bool = False) -> str:
    """Builds the copies; returns ninja's output. BuildError if any fails
    (keep_going: build every copy that can be built first)."""
    cmd = ["cmake", "--build", str(build_dir), "-j", jobs(), "--target",
           *[target(copies, n) for n in names]]
    if keep_going:
        cmd += ["--", "-k", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(compiler_errors(r.stdout + r.stderr), r.stdout + r.stderr)
    return r.stdout


def binary(build_dir: Path, copies: Path, copy: str) -> Path:
    return build_dir / "bin" / copies.name / copy / f"step-{copy[:2]}"


def build_reference(numbers: list[str]) -> None:
    """The steps an exercise's tests compare with, in build/ (make build)."""
    if not numbers:
        return
    if not (ROOT / "build" / "build.ninja").exists():
        r = subprocess.run(["cmake", "--preset", "release"], cwd=ROOT, capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise BuildError("cmake --preset release failed", r.stdout + r.stderr)
    r = subprocess.run(["cmake", "--build", str(ROOT / "build"), "-j", jobs(), "--target",
                        *[f"step-{n}" for n in numbers]], capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(compiler_errors(r.stdout + r.stderr), r.stdout + r.stderr)


def link_needs(bin_dir: Path, numbers, source: Path = REFERENCE_BIN) -> None:
    """Puts the steps' own binaries beside the copy's, for tests that compare."""
    for n in numbers:
        link = bin_dir / f"step-{n}"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source / f"step-{n}")


# --------------------------------------------------------------------------
# Running checks

def plan_entry(ex: cutter.Exercise, select: str | None = None) -> dict:
    return {"name": ex.name, "step": ex.number, "ids": list(ex.ids),
            "select": select or ex.select}


def run_plan(bin_dir: Path, entries: list[dict], *, first_failure_ends: bool = False,
             sanitizer: str = "", collect_only: bool = False,
             log: Path | None = None) -> tuple[dict, int, str]:
    """Runs tests/steps on the binaries in bin_dir, only the tests the
    entries select. Returns (report, pytest's exit code, its output)."""
    with tempfile.TemporaryDirectory(prefix="ladder-check-") as tmp:
        plan = Path(tmp) / "plan.json"
        report = Path(tmp) / "report.json"
        plan.write_text(json.dumps({"report": str(report), "exercises": entries,
                                    "first_failure_ends": first_failure_ends}))
        env = {**os.environ, "LADDER_BIN": str(bin_dir), "LADDER_EXERCISE_PLAN": str(plan),
               "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        env.pop("LADDER_STEPS", None)
        env.pop("LADDER_SANITIZER", None)
        if sanitizer:
            env["LADDER_SANITIZER"] = sanitizer
        cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "steps"), "-p", "pytest_plan",
               "-p", "no:cacheprovider", "-o", "addopts=", "-q", "--tb=short", "-rN",
               "--no-header",
               # A module of the suite that does not import (someone's work in
               # progress) must not stop the tests of a claim it has no part in.
               "--continue-on-collection-errors"]
        if collect_only:
            cmd.append("--collect-only")
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        output = r.stdout + r.stderr
        if log is not None:
            log.write_text(output)
        results = json.loads(report.read_text()) if report.exists() else {}
    return results, r.returncode, output


def verdicts(results: dict) -> dict[str, str]:
    """exercise -> "failing" when a test of its check failed (or never ran),
    "skipped" when this machine could run none of them (the reason is each
    test's skip message), else "passing" (a skipped test is reported, but
    what ran held)."""
    outcomes: dict[str, list[str]] = {}
    for r in results.values():
        for name in r["exercises"]:
            outcomes.setdefault(name, []).append(r["outcome"])
    out = {}
    for name, seen in outcomes.items():
        if any(o not in ("passed", "skipped") for o in seen):
            out[name] = "failing"
        elif all(o == "skipped" for o in seen):
            out[name] = "skipped"
        else:
            out[name] = "passing"
    return out


NOT_WRITTEN = "not written yet"


def failure_lines(message: str, limit: int = 3) -> list[str]:
    """The assertion's own words, from pytest's report of a failed test."""
    said = [line[1:].strip() for line in message.splitlines() if line.startswith("E ")]
    said = [s for s in said if s and not s.startswith(("+", "-", "where", "Traceback"))]
    if not said:
        tail = [line.strip() for line in message.splitlines() if line.strip()]
        said = tail[-1:]
    return [s[:300] for s in said[:limit]]


def killed_by(message: str) -> str | None:
    """"SIGSEGV" when the report shows the server ended by a signal
    (an exit status of -N, as Python reports it)."""
    m = re.search(r"rc=(-\d+)|exit (-\d+)|assert \((-\d+) == 0\)", message)
    if not m:
        return None
    number = -int(next(g for g in m.groups() if g))
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def sanitizer_lines(message: str) -> list[str]:
    out = [line.strip() for line in message.splitlines()
           if "ERROR: AddressSanitizer" in line or "ERROR: LeakSanitizer" in line
           or line.strip().startswith("SUMMARY:") or "runtime error:" in line]
    return out[:4]


def which_python() -> str:
    return sys.executable


def have(command: str) -> bool:
    return shutil.which(command) is not None
