#!/usr/bin/env python3
"""The exercises, from the command line (the make targets call this).

    exercise.py list                   every exercise and its status
    exercise.py start NAME [--yes]     make the learner's copy (asks before replacing one)
    exercise.py check NAME             build the copy, run the tests of its claim
    exercise.py solution NAME          the step's own code against the copy (diff)
    exercise.py watch NAME             check again on every save (Ctrl-C stops)
    exercise.py reset NAME [--yes]     start over from the stub (asks first)
    exercise.py doc [--check]          rewrite the tables of docs/exercises.md and the steps'
                                       READMEs' exercise lists (--check: stale?)

The learner's copies live in exercises/work/ (git-ignored); their builds in
build-exercises/ (and build-exercises-asan/ for the checks that run under
AddressSanitizer). Nothing else is written anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checker  # noqa: E402
import cutter  # noqa: E402
from cutter import step_info  # noqa: E402

ROOT = cutter.ROOT
STATE = ".exercise.json"
LOG = "check.log"


def build_dir(sanitize: bool = False) -> Path:
    """build-exercises/ (-asan/); $LADDER_EXERCISES_BUILD moves it (the suite's tests)."""
    base = Path(os.environ.get("LADDER_EXERCISES_BUILD", ROOT / "build-exercises"))
    return base.with_name(base.name + "-asan") if sanitize else base


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def wrap(text: str, indent: str = "  ") -> str:
    paragraphs = [" ".join(p.split()) for p in text.strip().split("\n\n")]
    return "\n\n".join(textwrap.fill(p, 88, initial_indent=indent, subsequent_indent=indent)
                       for p in paragraphs)


# --------------------------------------------------------------------------
# The learner's copy and its state (the only state there is)

def copy_dir(name: str) -> Path:
    return cutter.work_root() / name


def read_state(name: str) -> dict:
    path = copy_dir(name) / STATE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_state(name: str, state: dict) -> None:
    (copy_dir(name) / STATE).write_text(json.dumps(state, indent=1) + "\n")


def status(name: str) -> str:
    """not started / failing / passing, from the last check of the copy as it is now."""
    where = copy_dir(name)
    if not where.is_dir():
        return "not started"
    last = read_state(name).get("last_check")
    if not last:
        return "failing (not checked yet)"
    if last.get("digest") != cutter.digest(where):
        return f"{'passing' if last['result'] == 'passing' else 'failing'} (edited since)"
    return last["result"]


def ask(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} — not asked, no terminal here: add YES=1 to say yes.",
              file=sys.stderr)
        return False
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


# --------------------------------------------------------------------------
# Commands

def cmd_list(_args) -> int:
    exercises = cutter.all_exercises()
    print("Exercises: the steps' own code, with a hole to fill or a bug to find. "
          "Each is checked")
    print("by the step suite's tests of its claim (docs/exercises.md: the path and the times).")
    print()
    print(f"  {'name':<16} {'kind':<9} {'min':>3}  {'status':<26} exercise")
    first_open = None
    for ex in exercises:
        s = status(ex.name)
        if first_open is None and not s.startswith("passing"):
            first_open = ex.name
        print(f"  {ex.name:<16} {ex.kind_words:<9} {ex.minutes:>3}  {s:<26} {ex.title}")
    print()
    if first_open:
        print(f"Next: make exercise NAME={first_open}")
    else:
        print("Every exercise passes.")
    print("Then: make check NAME=...   make exercise-watch NAME=...   make solution NAME=...")
    return 0


def describe(ex: cutter.Exercise) -> None:
    where = copy_dir(ex.name)
    region = ex.region_of()
    print(f"{ex.name} — {ex.title}   (step {ex.number}, {ex.kind_words}, about {ex.minutes} min)")
    print()
    print(f"Read first: steps/{ex.step.name}/README.md, \"{ex.read}\":")
    print()
    print("\n".join(f"  | {line}".rstrip() for line in
                    cutter.readme_section(ex.step, ex.read).split("\n")))
    print()
    if ex.kind == "write":
        print(f"Write: in {rel(where / region.path.name)} (look for TODO)")
    else:
        print(f"Find: the copy in {rel(where)}/ has one bug planted in it.")
    print(wrap(ex.task))
    print()
    print(f"Check: make check NAME={ex.name}       "
          f"(or make exercise-watch NAME={ex.name}: checks on every save)")


def make_copy(ex: cutter.Exercise) -> None:
    where = copy_dir(ex.name)
    if where.exists():
        shutil.rmtree(where)
    cutter.write_copy(cutter.cut(ex), where)
    write_state(ex.name, {"exercise": ex.name, "hints_shown": 0, "stub": cutter.digest(where)})


def cmd_start(args) -> int:
    ex = cutter.load(args.name)
    where = copy_dir(ex.name)
    if where.exists():
        print(f"{rel(where)}/ exists: {status(ex.name)}.")
        if not ask("Start over from the stub? Your changes there are lost.", args.yes):
            print(f"Kept it. Carry on: make check NAME={ex.name}")
            return 0
    make_copy(ex)
    print(f"Made {rel(where)}/: step {ex.number}'s code, "
          + ("with a hole to fill." if ex.kind == "write" else "with a bug in it."))
    print()
    describe(ex)
    return 0


def cmd_reset(args) -> int:
    ex = cutter.load(args.name)
    where = copy_dir(ex.name)
    if not where.exists():
        print(f"{ex.name} has not been started: make exercise NAME={ex.name}")
        return 0
    if not ask(f"Delete {rel(where)}/ and start over from the stub?", args.yes):
        print("Nothing changed.")
        return 0
    make_copy(ex)
    print(f"Started over: {rel(where)}/ is the stub again (hints start from the first).")
    return 0


def cmd_solution(args) -> int:
    ex = cutter.load(args.name)
    where = copy_dir(ex.name)
    if not where.exists():
        print(f"{ex.name} has not been started: make exercise NAME={ex.name}", file=sys.stderr)
        return 1
    print(f"What step {ex.number} itself has (+) where your copy has (-):")
    print()
    same = True
    for name, text in cutter.reference(ex.step).items():
        mine = where / name
        r = subprocess.run(["diff", "-u", "--label", f"your copy: {rel(mine)}",
                            "--label", f"the step: steps/{ex.step.name}/{name}",
                            str(mine) if mine.exists() else "/dev/null", "-"],
                           input=text, capture_output=True, text=True)
        if r.stdout:
            same = False
            print(r.stdout)
    if same:
        print("  (nothing: your copy is the step's code)")
    return 0


def check(ex: cutter.Exercise) -> str:
    """Builds and checks the learner's copy; prints the verdict in plain
    words. Returns "passing", "failing" or "broken" (does not build)."""
    where = copy_dir(ex.name)
    state = read_state(ex.name)
    digest = cutter.digest(where)
    print(f"{ex.name} — {ex.title}")
    first = "" if (build_dir() / "build.ninja").exists() else " (the first time, common/ too)"
    print(f"building {rel(where)}/{first} ...", end=" ", flush=True)
    try:
        checker.configure(build_dir(), [cutter.work_root()])
        checker.build(build_dir(), cutter.work_root(), [ex.name])
        checker.build_reference(list(ex.needs))
    except checker.BuildError as e:
        print("it does not compile yet:\n")
        print(textwrap.indent(e.summary, "  "))
        (where / LOG).write_text(e.log)
        print(f"\n(the whole build log: {rel(where / LOG)})")
        state["last_check"] = {"result": "failing", "digest": digest}
        write_state(ex.name, state)
        return "broken"
    bin_dir = checker.binary(build_dir(), cutter.work_root(), ex.name).parent
    checker.link_needs(bin_dir, ex.needs)
    print("ok")
    result = run_and_report(ex, bin_dir, "")
    if result == "passing" and ex.asan:
        print("building it again with AddressSanitizer ...", end=" ", flush=True)
        try:
            checker.configure(build_dir(True), [cutter.work_root()], "address,undefined")
            checker.build(build_dir(True), cutter.work_root(), [ex.name])
        except checker.BuildError as e:
            print("failed:\n" + textwrap.indent(e.summary, "  "))
            return "broken"
        asan_bin = checker.binary(build_dir(True), cutter.work_root(), ex.name).parent
        checker.link_needs(asan_bin, ex.needs)
        print("ok")
        result = run_and_report(ex, asan_bin, "asan")
    state = read_state(ex.name)
    state["last_check"] = {"result": result, "digest": digest}
    if result == "failing" and digest == state.get("stub"):
        print()
        print("(Hints come with the checks of your own code: none used up.)")
    elif result == "failing":
        shown = state.get("hints_shown", 0)
        if shown < len(ex.hints):
            print()
            print(f"Hint {shown + 1} of {len(ex.hints)}:")
            print(wrap(ex.hints[shown]))
            state["hints_shown"] = shown + 1
        else:
            print()
            print("No hints left; every hint so far:")
            for i, h in enumerate(ex.hints, 1):
                print(wrap(f"{i}. {h}"))
            print(f"Stuck? make solution NAME={ex.name} shows the step's own code.")
    elif result == "skipped":
        print()
        print("This machine cannot run the tests of this claim (the reasons are above): "
              "nothing was checked.")
    else:
        print()
        print(f"Passing: the claim holds on your copy. make solution NAME={ex.name} shows how "
              f"step {ex.number} writes it.")
        names = cutter.names()
        later = [n for n in names[names.index(ex.name) + 1:] if not status(n).startswith("passing")]
        if later:
            print(f"Next: make exercise NAME={later[0]}")
    write_state(ex.name, state)
    return result


def run_and_report(ex: cutter.Exercise, bin_dir: Path, sanitizer: str) -> str:
    where = copy_dir(ex.name)
    results, code, output = checker.run_plan(bin_dir, [checker.plan_entry(ex)],
                                             sanitizer=sanitizer, log=where / LOG)
    under = " under AddressSanitizer" if sanitizer else ""
    if not results or code not in (0, 1):
        print(f"the step suite did not run (pytest exit {code}):")
        print(textwrap.indent("\n".join(output.strip().splitlines()[-15:]), "  "))
        return "failing"
    print(f"checking{under}: {len(results)} test(s) of the step suite, on your binary")
    if any(checker.NOT_WRITTEN in p.read_text() for p in where.glob("*.[ch]*")):
        print(wrap("Your copy still has the stub, which stops the server with \"not written "
                   "yet\": write the TODO first.", " " * 2))
    by_test: dict[str, list[dict]] = {}
    for r in results.values():
        by_test.setdefault(r["test"], []).append(r)
    for test, runs in by_test.items():
        bad = [r for r in runs if r["outcome"] != "passed"]
        params = ", ".join(r["params"] for r in bad or runs)
        if not bad:
            print(f"  ok      {test}  [{params}]")
            continue
        skipped = all(r["outcome"] == "skipped" for r in bad)
        print(f"  {'skipped' if skipped else 'FAILED':<8}{test}  [{params}]")
        first = next((r for r in bad if r["outcome"] != "skipped"), bad[0])
        if skipped:
            print(wrap(f"so the claim is not shown here: {first['message']}", " " * 10))
            continue
        if sanitizer and (found := checker.sanitizer_lines(first["message"])):
            print(wrap("AddressSanitizer stopped the server:", " " * 10))
            for line in found:
                print(" " * 12 + line[:200])
            continue
        if test in ex.says:
            print(wrap(ex.says[test], " " * 10))
        if (sig := checker.killed_by(first["message"])):
            print(wrap(f"The server was killed by {sig}"
                       + (" (a crash: memory it does not own)" if sig in ("SIGSEGV", "SIGBUS")
                          else " (an abort: an exception nobody caught, or an assert)"
                          if sig == "SIGABRT" else "") + ".", " " * 10))
        elif "died during this test" in first["message"]:
            print(wrap("The server exited during this test.", " " * 10))
        for line in checker.failure_lines(first["message"], 2):
            print(" " * 10 + "the test: " + line)
    print(f"(pytest's own output: {rel(where / LOG)})")
    return checker.verdicts(results).get(ex.name, "failing")


def cmd_check(args) -> int:
    ex = cutter.load(args.name)
    if not copy_dir(ex.name).exists():
        print(f"{ex.name} has not been started: make exercise NAME={ex.name}", file=sys.stderr)
        return 1
    return 0 if check(ex) == "passing" else 1


def cmd_watch(args) -> int:
    ex = cutter.load(args.name)
    where = copy_dir(ex.name)
    if not where.exists():
        print(f"{ex.name} has not been started: make exercise NAME={ex.name}", file=sys.stderr)
        return 1
    print(f"Watching {rel(where)}/: every save builds and checks it again. Ctrl-C stops.")
    seen = None
    try:
        while True:
            now = cutter.digest(where)
            if now != seen:
                seen = now
                print()
                check(ex)
                print(f"\n(watching {rel(where)}/ — save to check again, Ctrl-C to stop)")
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nStopped watching.")
        return 0


# --------------------------------------------------------------------------
# docs/exercises.md: its tables come from the descriptions

DOC = ROOT / "docs" / "exercises.md"
BLOCK = re.compile(r"(<!-- exercises:(\w+) -->\n).*?(<!-- /exercises -->)", re.S)


def path_table(exercises) -> str:
    rows = ["| # | exercise | step | kind | min | what it teaches |", "|---|---|---|---|---|---|"]
    for i, ex in enumerate(exercises, 1):
        rows.append(f"| {i} | `{ex.name}`: {ex.title} | [{ex.number}](../steps/{ex.step.name}/README.md) "
                    f"| {ex.kind_words} | {ex.minutes} | {ex.teaches} |")
    total = sum(ex.minutes for ex in exercises)
    rows.append("")
    rows.append(f"{len(exercises)} exercises, about {total // 60} h {total % 60:02d} min in all.")
    return "\n".join(rows)


def workshop_table(exercises) -> str:
    rows = ["| after the demo | exercise | kind | min | what it teaches |",
            "|---|---|---|---|---|"]
    for ex in exercises:
        if ex.workshop:
            rows.append(f"| `make step-{ex.number}` | `make exercise NAME={ex.name}`: {ex.title} "
                        f"| {ex.kind_words} | {ex.minutes} | {ex.teaches} |")
    return "\n".join(rows)


def rendered(text: str) -> str:
    exercises = cutter.all_exercises()
    tables = {"path": path_table(exercises), "workshop": workshop_table(exercises)}

    def fill(m):
        if m.group(2) not in tables:
            raise cutter.CutError(f"docs/exercises.md: no table called {m.group(2)!r}")
        return m.group(1) + tables[m.group(2)] + "\n" + m.group(3)
    return BLOCK.sub(fill, text)


def step_block(exercises, number: str) -> str:
    rows = [f"- `make exercise NAME={ex.name}`: {ex.title} ({ex.kind_words}, about {ex.minutes} "
            f"min). {ex.teaches[0].upper()}{ex.teaches[1:]}." for ex in exercises
            if ex.number == number]
    rows.append("")
    rows.append("`make check NAME=...` runs this step's own tests of the claim on your copy; "
                "[docs/exercises.md](../../docs/exercises.md) has them all, in order.")
    return "\n".join(rows)


def step_readmes() -> dict[Path, str]:
    """Each step README's exercises block, filled: {path: new text}."""
    exercises = cutter.all_exercises()
    out = {}
    for number, info in step_info.all_steps(ROOT).items():
        path = info.dir / "README.md"
        text = path.read_text()
        if not any(ex.number == number for ex in exercises):
            continue
        if not BLOCK.search(text):
            raise cutter.CutError(f"{path.relative_to(ROOT)}: no <!-- exercises:step --> block")
        out[path] = BLOCK.sub(lambda m: m.group(1) + step_block(exercises, number) + "\n"
                              + m.group(3), text)
    return out


def cmd_doc(args) -> int:
    wanted = {DOC: rendered(DOC.read_text()), **step_readmes()}
    stale = [path for path, new in wanted.items() if path.read_text() != new]
    for path in stale:
        where = path.relative_to(ROOT)
        if args.check:
            print(f"stale: {where} (run tools/exercises/exercise.py doc)", file=sys.stderr)
        else:
            path.write_text(wanted[path])
            print(f"rewrote {where}")
    return 1 if args.check and stale else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list")
    for name in ("start", "reset"):
        p = sub.add_parser(name)
        p.add_argument("name")
        p.add_argument("--yes", action="store_true")
    for name in ("check", "solution", "watch"):
        sub.add_parser(name).add_argument("name")
    sub.add_parser("doc").add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    commands = {"list": cmd_list, "start": cmd_start, "reset": cmd_reset, "check": cmd_check,
                "solution": cmd_solution, "watch": cmd_watch, "doc": cmd_doc}
    try:
        return commands[args.command](args)
    except cutter.CutError as e:
        print(f"exercises: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # | head, | less that quit early
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
