#!/usr/bin/env python3
"""Writes each lab's own output into its README, from a run on this machine.

A figure a learner reads in labs/NAME/README.md is never typed by hand: what
the lab printed sits in a block

    <!-- lab-output: make lab-NAME -->
    One run on DATE, machine `HOST`, N CPUs, kernel K, commit `C`:

        ...the lab's output, verbatim...

    <!-- /lab-output -->

and this script rewrites the block from a fresh run, made the way the block's
command makes it: build/bin/lab-NAME (through labs/NAME/run.sh when the lab
has one), or a script lab's run.sh with the arguments the command names.
c100k is not run (it takes minutes and gigabytes): its blocks are printed
from the rows the lab appended to results/c100k-*.csv, the newest file that
has them, in the lab's own table format.

    tools/docs/labs_output.py               run every lab, rewrite every block
    tools/docs/labs_output.py --only NAME   one lab
    tools/docs/labs_output.py --check       change nothing; exit 1 when a README
                                            lacks its block, a block lacks its
                                            provenance line or names a command
                                            that is not how its lab runs, or a
                                            c100k block is not what its CSV says
    make lab-outputs                        builds the labs, steps and loadgen, then this

It runs what is built (--bin, default build/bin): `make lab-outputs` builds
first. The namespace labs need root; without it they are left as they are,
with a message. A lab that fails, or whose verdict says the claim did not
hold, leaves its README as it is and makes the script exit 1.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import importlib.util
import io
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LABS_DIR = ROOT / "labs"

BLOCK = re.compile(r"<!-- lab-output: (.+?) -->\n(.*?)<!-- /lab-output -->", re.S)
PROVENANCE = re.compile(r"on \d{4}-\d\d-\d\d, machine `[^`]+`, \d+ CPUs?, kernel \S+, "
                        r"commits? `[0-9a-f]{7,}")
CSV_NAMED = re.compile(r"`(results/c100k-[\w.-]+\.csv)`")

# A script lab's arguments for its README: the smallest that still show the
# whole lesson. faults: what tests/labs/test_faults.py runs (2 MiB at
# 8 Mbit/s; the requests, loss and cut at their defaults). hosts: the full
# run, since only that has the balancer's cost, which its claim states
# (--quick, the test's, stops after one failover).
SCRIPT_ARGS = {"faults": "--size 2M --rate 8", "hosts": ""}
# c100k's blocks: the command that appends the rows, and which rows they are.
C100K_BLOCKS = {
    "make lab-c100k": "ladder",
    "make lab-c100k LAB_ARGS='--steps none --no-poll --push'": "push",
    "make lab-c100k LAB_ARGS='--steps 08 --levels 0,100000 --no-poll --label sweep-wheel'": "sweep",
}
FROM_CSV = {"c100k"}
TIMEOUT_S = 900  # hosts, the longest run, takes about a minute


def programs() -> list[str]:
    return sorted(p.parent.name for p in LABS_DIR.glob("*/lab.cpp"))


def scripts() -> list[str]:
    return sorted(p.parent.name for p in LABS_DIR.glob("*/run.sh")
                  if not (p.parent / "lab.cpp").exists())


def all_labs() -> list[str]:
    return sorted({*programs(), *scripts()})


def commands(name: str) -> list[str]:
    """The commands whose output labs/NAME/README.md shows, one block each."""
    if name in FROM_CSV:
        return list(C100K_BLOCKS)
    args = SCRIPT_ARGS.get(name, "")
    return [f"make lab-{name}" + (f" LAB_ARGS='{args}'" if args else "")]


def needs_root(name: str) -> bool:
    return name not in FROM_CSV and (LABS_DIR / name / "run.sh").exists()


# ---------------------------------------------------------------------------
# The blocks: find them, check them, replace them


def blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def problems(name: str, text: str) -> list[str]:
    """What is wrong with labs/NAME/README.md's blocks (empty: nothing)."""
    found = blocks(text)
    said = [cmd for cmd, _ in found]
    wanted = commands(name)
    out = []
    for cmd in wanted:
        if cmd not in said:
            out.append(f"lacks its block <!-- lab-output: {cmd} --> … <!-- /lab-output -->")
    for cmd, inner in found:
        if cmd not in wanted:
            out.append(f"a block names `{cmd}`, which is not how lab {name} runs "
                       f"(expected: {'; '.join(wanted)})")
        elif said.count(cmd) > 1:
            out.append(f"two blocks name `{cmd}`")
        lines = [l for l in inner.splitlines() if l.strip()]
        if not lines or not PROVENANCE.search(lines[0]):
            out.append(f"the block of `{cmd}` lacks its provenance line (date, machine, "
                       "CPUs, kernel, commit)")
        elif not any(l.startswith("    ") for l in lines[1:]):
            out.append(f"the block of `{cmd}` holds no output")
    return sorted(set(out), key=out.index)


def body(provenance: str, output: str) -> str:
    lines = [("    " + l).rstrip() for l in output.rstrip("\n").splitlines()]
    return provenance + "\n\n" + "\n".join(lines) + "\n\n"


def replace(text: str, cmd: str, new_body: str) -> str:
    def sub(m: re.Match) -> str:
        if m.group(1) != cmd:
            return m.group(0)
        return f"<!-- lab-output: {cmd} -->\n{new_body}<!-- /lab-output -->"
    return BLOCK.sub(sub, text)


# ---------------------------------------------------------------------------
# A run on this machine


def this_machine() -> str:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    # What the labs are built and run from, not the READMEs being rewritten.
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--",
         "labs", "common", "steps", "tools/loadgen", "tools/pylib", "CMakeLists.txt",
         ":(exclude)labs/*/README.md"],
        capture_output=True, text=True).stdout.strip()
    return (f"on {datetime.date.today().isoformat()}, machine `{socket.gethostname()}`, "
            f"{os.cpu_count()} CPUs, kernel {platform.release()}, "
            f"commit `{commit}`" + (" with uncommitted changes" if dirty else ""))


def run_command(name: str, bin_dir: Path) -> list[str]:
    """What `make lab-NAME` (with the block's LAB_ARGS) runs, after building."""
    run_sh = LABS_DIR / name / "run.sh"
    if name in scripts():
        return [str(run_sh), str(bin_dir), *shlex.split(SCRIPT_ARGS.get(name, ""))]
    lab = bin_dir / f"lab-{name}"
    return [str(run_sh), str(lab)] if os.access(run_sh, os.X_OK) else [str(lab)]


def missing_binary(name: str, bin_dir: Path) -> str | None:
    if name in programs():
        lab = bin_dir / f"lab-{name}"
        return None if lab.exists() else f"{lab} is not built (make lab-outputs builds it)"
    run_sh = (LABS_DIR / name / "run.sh").read_text()
    m = re.search(r"^# Needs: (.*)$", run_sh, re.M)
    wanted = m.group(1).split() if m else []
    gone = [w for w in wanted if not (bin_dir / w).exists()]
    return f"{', '.join(gone)} not built in {bin_dir} (make lab-outputs)" if gone else None


def clean(output: str) -> str:
    """The terminal's view: a line rewritten with \\r shows its last version."""
    return "\n".join(l.rsplit("\r", 1)[-1].rstrip() for l in output.splitlines())


def run_lab(name: str, bin_dir: Path) -> str:
    """Runs the lab as its make target does; returns what it printed (stdout
    and stderr, as a terminal shows them). Raises RuntimeError if it failed."""
    cmd = run_command(name, bin_dir)
    # A session of its own: on a timeout or Ctrl-C, the lab's whole group
    # gets SIGINT (what Ctrl-C sends), so run.sh's trap removes what it made.
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=TIMEOUT_S)
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as e:
        stop(p)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise RuntimeError(f"{shlex.join(cmd)}: no end after {TIMEOUT_S} s; stopped")
    out = clean(out)
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {p.returncode}:\n{out}")
    if out.startswith("skipped:"):
        raise RuntimeError(f"{shlex.join(cmd)}: {out.splitlines()[0]}")
    verdicts = [l for l in out.splitlines() if l.startswith("verdict: ")]
    if not verdicts:
        raise RuntimeError(f"{shlex.join(cmd)} printed no verdict line:\n{out}")
    if any("did not behave as the claim says" in v for v in verdicts):
        raise RuntimeError(f"{shlex.join(cmd)}: the claim did not hold on this run:\n{out}")
    return out


def stop(p: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------------------
# c100k, from its CSV


def c100k_module():
    """labs/c100k/c100k.py: its table format, its verdict, its levels."""
    if "lab_c100k" not in sys.modules:
        spec = importlib.util.spec_from_file_location("lab_c100k",
                                                      LABS_DIR / "c100k" / "c100k.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["lab_c100k"] = mod  # dataclasses look their module up
        spec.loader.exec_module(mod)
    return sys.modules["lab_c100k"]


def parse_row(mod, d: dict):
    """A CSV row back into the lab's Row, with the types the lab printed."""
    kw = {}
    for f in dataclasses.fields(mod.Row):
        if f.name not in d:
            continue
        v = d[f.name]
        if f.type == "str":
            kw[f.name] = v
        elif v == "":
            if f.default is not dataclasses.MISSING:
                kw[f.name] = f.default
        elif re.fullmatch(r"-?\d+", v):
            kw[f.name] = int(v)
        else:
            kw[f.name] = float(v)
    return mod.Row(**kw)


def select(mod, kind: str, rows: list[dict]) -> list[dict]:
    most = max(mod.LEVELS)
    if kind == "ladder":
        return [r for r in rows if not r["label"] and int(r["connections"]) <= most]
    if kind == "push":
        return [r for r in rows if not r["label"] and int(r["connections"]) > most]
    return [r for r in rows if r["label"].startswith("sweep-")]


def render_c100k(mod, kind: str, rows: list[dict]) -> str:
    """The table as the lab prints it (c100k.py's HEADER and print_row), and
    its verdict; the sweep's rows carry their --label where the lab's table
    says what stopped a row (nothing stopped these)."""
    out = io.StringIO()
    parsed = [parse_row(mod, r) for r in rows]
    with redirect_stdout(out):
        if kind == "sweep":
            print(mod.HEADER.replace("stopped by", "label"))
        else:
            print(mod.HEADER)
        for r in parsed:
            collapsed = r.stopped_by.startswith("collapsed")
            shown = dataclasses.replace(r, stopped_by=r.label if kind == "sweep"
                                        else "" if collapsed else r.stopped_by)
            mod.print_row(shown)
            if collapsed:
                print(f"      step {r.step} collapses here: {r.stopped_by}")
        if kind != "sweep":
            text, _ = mod.verdict(parsed, max(mod.LEVELS))
            print(f"verdict: {text}")
    return out.getvalue()


def c100k_provenance(path: Path, rows: list[dict]) -> str:
    first = rows[0]
    commits = list(dict.fromkeys(r["commit"] for r in rows))
    rel = path.relative_to(ROOT)
    return (f"Printed from `{rel}` (the lab is not re-run here: it takes minutes and "
            f"gigabytes): rows measured on {first['date']}, machine `{first['machine']}`, "
            f"{first['nproc']} CPUs, kernel {first['kernel']}, "
            f"{'commits' if len(commits) > 1 else 'commit'} "
            + ", ".join(f"`{c}`" for c in commits) + ":")


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def c100k_body(mod, kind: str, path: Path) -> str | None:
    rows = select(mod, kind, read_csv(path)) if path.exists() else []
    if not rows:
        return None
    return body(c100k_provenance(path, rows), render_c100k(mod, kind, rows))


def c100k_bodies() -> dict[str, str]:
    """Each block from the newest results/c100k-*.csv that has its rows."""
    mod = c100k_module()
    found = {}
    for cmd, kind in C100K_BLOCKS.items():
        for path in sorted((ROOT / "results").glob("c100k-*.csv"), reverse=True):
            b = c100k_body(mod, kind, path)
            if b:
                found[cmd] = b
                break
    return found


def c100k_stale(text: str) -> list[str]:
    """A c100k block that is not what the CSV it names says now."""
    mod = c100k_module()
    out = []
    for cmd, old in blocks(text):
        kind = C100K_BLOCKS.get(cmd)
        m = CSV_NAMED.search(old)
        if not kind or not m:
            continue
        new = c100k_body(mod, kind, ROOT / m.group(1))
        if new is None:
            out.append(f"the block of `{cmd}` names {m.group(1)}, which has no such rows")
        elif new != old:
            out.append(f"the block of `{cmd}` is not what {m.group(1)} says: "
                       "run tools/docs/labs_output.py --only c100k")
    return out


# ---------------------------------------------------------------------------


def readme(name: str) -> Path:
    return LABS_DIR / name / "README.md"


def check(names: list[str]) -> int:
    bad = 0
    for name in names:
        text = readme(name).read_text()
        found = problems(name, text) + (c100k_stale(text) if name in FROM_CSV else [])
        for p in found:
            print(f"labs/{name}/README.md: {p}")
        bad += bool(found)
    if bad:
        print(f"{bad} lab README(s) to fix; tools/docs/labs_output.py --only NAME rewrites a "
              "block (the markers must be there first)", file=sys.stderr)
        return 1
    print(f"lab-output blocks: {len(names)} READMEs, each block in place with its provenance")
    return 0


def write(names: list[str], bin_dir: Path) -> int:
    failed = 0
    for name in names:
        path = readme(name)
        text = path.read_text()
        said = {cmd for cmd, _ in blocks(text)}
        lacking = [c for c in commands(name) if c not in said]
        if lacking:
            print(f"lab {name}: labs/{name}/README.md has no block for "
                  f"{'; '.join(lacking)}: put <!-- lab-output: {lacking[0]} --> and "
                  "<!-- /lab-output --> in its \"What you see\" section", file=sys.stderr)
            failed += 1
            continue
        if name in FROM_CSV:
            new = c100k_bodies()
            for cmd in commands(name):
                if cmd in new:
                    text = replace(text, cmd, new[cmd])
                else:
                    print(f"lab {name}: no results/c100k-*.csv has the rows of `{cmd}`; "
                          "that block is left as it is", file=sys.stderr)
            path.write_text(text)
            print(f"lab {name}: {len(new)} block(s) from results/c100k-*.csv")
            continue
        if needs_root(name) and os.geteuid() != 0:
            print(f"lab {name}: left as it is: it needs root (network namespaces); "
                  f"sudo tools/docs/labs_output.py --only {name}", file=sys.stderr)
            continue
        why = missing_binary(name, bin_dir)
        if why:
            print(f"lab {name}: left as it is: {why}", file=sys.stderr)
            failed += 1
            continue
        (cmd,) = commands(name)
        print(f"lab {name}: {cmd} …", flush=True)
        provenance = "One run " + this_machine() + ":"
        try:
            output = run_lab(name, bin_dir)
        except RuntimeError as e:
            print(f"lab {name}: left as it is: {e}", file=sys.stderr)
            failed += 1
            continue
        path.write_text(replace(text, cmd, body(provenance, output)))
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is wrong")
    ap.add_argument("--only", metavar="NAME", help="one lab")
    ap.add_argument("--bin", type=Path, default=ROOT / "build" / "bin",
                    help="the built labs, steps and loadgen (default build/bin)")
    args = ap.parse_args(argv)
    names = all_labs()
    if args.only:
        if args.only not in names:
            print(f"no lab {args.only!r}; the labs: {' '.join(names)}", file=sys.stderr)
            return 2
        names = [args.only]
    if args.check:
        return check(names)
    bin_dir = args.bin if args.bin.is_absolute() else Path.cwd() / args.bin
    return write(names, bin_dir.resolve())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
