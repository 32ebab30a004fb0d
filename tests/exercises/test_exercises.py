"""The exercises hold (exercises/README.md): every region a step marks has
its exercise and every exercise its region; every stub builds and FAILS its
check; the step itself PASSES it. A check that cannot fail is a defect.

The stubs are cut into build-exercises-test/cuts/ and built there once (a
later run rebuilds only the cuts whose text changed). Then each exercise's
`fast` part of its check runs against its stub and against the step's own
binary (build/bin, or $LADDER_BIN): many exercises per pytest session, at
most one stub per step number in a session, through tools/exercises/
pytest_plan.py, which selects the tests exactly as a learner's `make check`
does. The full check (`select`) is the step suite's own tests, so the main
suite already runs all of it on every step; `fast` must be part of it.

    make test-exercises
    make test-exercises EXERCISES_PYTEST_ARGS='-k 06-drain'
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "exercises"))
import checker  # noqa: E402
import cutter  # noqa: E402

EXERCISES = cutter.all_exercises()
BY_NAME = {ex.name: ex for ex in EXERCISES}
NAMES = [ex.name for ex in EXERCISES]
STEPS = cutter.step_info.all_steps(ROOT)
BUILD = ROOT / "build-exercises-test"
CUTS = BUILD / "cuts"
REFERENCE = Path(os.environ.get("LADDER_BIN", ROOT / "build" / "bin")).resolve()
LONG = pytest.mark.timeout(1800)  # builds and whole rounds of checks, on a shared machine


def needs_steps(*numbers):
    missing = [n for n in numbers if not (REFERENCE / f"step-{n}").exists()]
    if missing:
        pytest.fail(f"{REFERENCE} lacks step-{', step-'.join(missing)}: make build first")


# --------------------------------------------------------------------------
# The tags and the descriptions

@pytest.mark.parametrize("info", list(STEPS.values()), ids=lambda s: s.name)
def test_every_region_has_an_exercise_and_stays_out_of_the_snippets(info):
    """A region is its step's code between `// [exercise:tag]` and
    `// [/exercise]`, and holds whole snippets or none (so no slide shows an
    exercise tag); every region is some exercise's."""
    regions = cutter.step_regions(info)  # raises on a tag inside a snippet
    used = {ex.region for ex in EXERCISES if ex.number == info.number}
    assert set(regions) <= used, (
        f"{info.name}: no exercise uses [exercise:{', '.join(sorted(set(regions) - used))}]")


@pytest.mark.parametrize("text, complaint", [
    ("// [snip:a]\n// [exercise:x]\ncode\n// [/exercise]\n// [/snip]\n", "inside a snippet"),
    ("// [exercise:x]\n// [snip:a]\ncode\n// [/exercise]\n// [/snip]\n", "ends inside a snippet"),
    ("// [snip:a]\n// [exercise:x]\n// [/snip]\ncode\n// [/exercise]\n", "inside a snippet"),
    ("// [exercise:x]\ncode\n", "never closed"),
    ("code\n// [/exercise]\n", "without"),
], ids=["open-inside", "close-inside", "crossing", "unclosed", "stray"])
def test_a_region_that_would_cut_a_snippet_is_refused(tmp_path, text, complaint):
    path = tmp_path / "server.cpp"
    path.write_text(text)
    with pytest.raises(cutter.CutError, match=complaint):
        cutter.regions_in(path)


def test_a_region_around_whole_snippets_is_fine(tmp_path):
    path = tmp_path / "server.cpp"
    path.write_text("// [exercise:x]\n// [snip:a]\n// [snip:b]\ncode\n// [/snip]\n// [/snip]\n"
                    "// [exercise:y]\nmore\n// [/exercise]\n// [/exercise]\n")
    assert sorted(r.tag for r in cutter.regions_in(path)) == ["x", "y"]


def test_a_plant_that_no_longer_matches_stops_the_cut():
    """The step's lines changed under a bug hunt: the cut says which, never
    a copy with the bug missing."""
    bug = cutter.load(next(ex.name for ex in EXERCISES if ex.kind == "bug"))  # a copy of its own
    bug.plants = [cutter.Plant("this line is in no step\n", "")]
    with pytest.raises(cutter.CutError, match=f"{bug.name}: a \\[\\[plant\\]\\] find= occurs 0"):
        cutter.cut(bug)


@pytest.mark.parametrize("name", NAMES)
def test_the_description_is_complete(name):
    ex = BY_NAME[name]
    ex.region_of()  # the region exists
    assert cutter.readme_section(ex.step, ex.read).strip(), f"README section {ex.read!r} is empty"
    assert 1 <= len(ex.hints) <= cutter.MAX_HINTS
    assert 5 <= ex.minutes <= 30, "an exercise fits a sitting: 5 to 30 minutes"
    if ex.kind == "write":
        assert "TODO" in ex.stub and checker.NOT_WRITTEN in ex.stub, \
            "a stub says what to write (TODO) and stops the server if run (not written yet)"


# What a learner reads says nothing of how the kit came to be, and holds no
# figure typed by hand (numbers of this machine come from a run, not a file).
HISTORY = re.compile(r"\b(issues?|seeds?|maintainers?|redesign|landed|pull request)\b",
                     re.I)
MEASUREMENT = re.compile(r"\b\d+(\.\d+)?\s*(µs|us|ms|rps|req/s|requests/s|MB/s|%)\b"
                         r"|\b\d+(\.\d+)?x faster\b")


def learner_text() -> dict[str, str]:
    out = {}
    for ex in EXERCISES:
        out[f"exercises/{ex.name}"] = "\n".join(
            [ex.title, ex.teaches, ex.task, *ex.hints, *ex.says.values(), ex.stub or "",
             *(p.replace for p in ex.plants)])
    for path in [ROOT / "exercises" / "README.md", ROOT / "docs" / "exercises.md"]:
        if path.exists():
            out[str(path.relative_to(ROOT))] = path.read_text()
    return out


@pytest.mark.parametrize("where", sorted(learner_text()))
def test_learner_text_has_no_history_and_no_typed_measurements(where):
    text = learner_text()[where]
    for pattern, what in ((HISTORY, "project history"), (MEASUREMENT, "a hand-typed measurement")):
        m = pattern.search(text)
        assert m is None, f"{where}: {what}: ...{text[max(0, m.start() - 60):m.end() + 40]}..."


def test_the_tables_of_docs_exercises_md_are_current():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "exercises" / "exercise.py"), "doc",
                        "--check"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_a_workshop_has_one_exercise_of_10_to_15_minutes_after_each_demo():
    """docs/exercises.md: one exercise per step's demo, 10 to 15 minutes, for
    every step that has exercises."""
    for number in sorted({ex.number for ex in EXERCISES}):
        chosen = [ex for ex in EXERCISES if ex.number == number and ex.workshop]
        assert len(chosen) == 1, f"step {number}: workshop exercises {[e.name for e in chosen]}"
        assert 10 <= chosen[0].minutes <= 15, f"{chosen[0].name}: {chosen[0].minutes} min"


def test_steps_01_to_09_have_two_exercises_or_more():
    for number in [f"{n:02d}" for n in range(1, 10)]:
        mine = [ex.name for ex in EXERCISES if ex.number == number]
        assert len(mine) >= 2, f"step {number}: {mine}"


@pytest.mark.parametrize("name", NAMES)
def test_the_cut_is_plain_code_that_differs_from_the_step(name):
    ex = BY_NAME[name]
    files = cutter.cut(ex)
    reference = cutter.reference(ex.step)
    assert files.keys() == reference.keys()
    assert files != reference, "the cut must change the step's code"
    for text in files.values():
        assert not any(cutter.is_tag(line) for line in text.split("\n")), "a tag line is left"
    changed = [n for n in files if files[n] != reference[n]]
    assert changed == [ex.region_of().path.name], f"only the region's file changes: {changed}"


@pytest.fixture(scope="module")
def collected():
    """Which tests each exercise selects, from one --collect-only session
    over the steps' own binaries: {(name, "select"|"fast"): [results]}."""
    needs_steps(*sorted({ex.number for ex in EXERCISES}))
    entries = []
    for ex in EXERCISES:
        for part in ("select", "fast"):
            entries.append({**checker.plan_entry(ex, getattr(ex, part)),
                            "name": f"{ex.name} {part}"})
    results, code, output = checker.run_plan(REFERENCE, entries, collect_only=True)
    assert code == 0, output[-3000:]
    out: dict[tuple[str, str], list[dict]] = {}
    for nodeid, r in results.items():
        for owner in r["exercises"]:
            name, part = owner.split()
            out.setdefault((name, part), []).append({**r, "nodeid": nodeid})
    return out


@pytest.mark.parametrize("name", NAMES)
def test_the_check_selects_the_claims_tests(collected, name):
    """`select` names tests of the step, none an expected failure or a skip
    there; `fast` is part of it; every `says` entry is one of its tests."""
    ex = BY_NAME[name]
    full = collected.get((name, "select"), [])
    fast = collected.get((name, "fast"), [])
    assert full, f"select = {ex.select!r} picks no test of step {ex.number}"
    assert fast, f"fast = {ex.fast!r} picks no test of step {ex.number}"
    assert {r["nodeid"] for r in fast} <= {r["nodeid"] for r in full}, "fast is not within select"
    odd = [r["nodeid"] for r in full if r["xfail"] or r["skip"]]
    assert not odd, f"an expected failure or a skip cannot check anything: {odd}"
    tests = {r["test"] for r in full}
    assert set(ex.says) <= tests, f"says names tests the check does not run: " \
                                  f"{sorted(set(ex.says) - tests)}"


# --------------------------------------------------------------------------
# Every stub builds and fails; every step passes

@pytest.fixture(scope="module")
def stubs():
    """Cuts every exercise into build-exercises-test/cuts/ and builds them
    all. {name: None, or why it did not build}."""
    for ex in EXERCISES:
        cutter.write_copy(cutter.cut(ex), CUTS / ex.name)
    for stale in CUTS.iterdir():
        if stale.name not in BY_NAME:
            shutil.rmtree(stale)
    started = time.monotonic()
    checker.configure(BUILD, [CUTS.resolve()])
    failures: dict[str, str | None] = {}
    try:
        checker.build(BUILD, CUTS, NAMES, keep_going=True)
    except checker.BuildError:
        pass
    for ex in EXERCISES:  # what failed, alone, so that its errors are its own
        try:
            checker.build(BUILD, CUTS, [ex.name])
            failures[ex.name] = None
        except checker.BuildError as e:
            failures[ex.name] = e.summary
    print(f"\nstubs built in {time.monotonic() - started:.0f} s")
    return failures


@LONG
@pytest.mark.parametrize("name", NAMES)
def test_the_stub_builds(stubs, name):
    assert stubs[name] is None, f"the cut of {name} does not build:\n{stubs[name]}"


def rounds(exercises) -> list[list[cutter.Exercise]]:
    """Exercises in groups that can share one directory of binaries: one
    stub per step number, and no stub of a step another one compares with."""
    out: list[list[cutter.Exercise]] = []
    for ex in exercises:
        for group in out:
            stubbed = {e.number for e in group}
            needed = {n for e in group for n in e.needs}
            if ex.number not in stubbed | needed and not set(ex.needs) & stubbed:
                group.append(ex)
                break
        else:
            out.append([ex])
    return out


@pytest.fixture(scope="module")
def stub_results(stubs):
    """Each built stub's `fast` check: {name: (verdict, the results)}."""
    built = [ex for ex in EXERCISES if stubs[ex.name] is None]
    out = {}
    started = time.monotonic()
    for i, group in enumerate(rounds(built)):
        bin_dir = BUILD / "rounds" / str(i)
        if bin_dir.exists():
            shutil.rmtree(bin_dir)
        bin_dir.mkdir(parents=True)
        for ex in group:
            (bin_dir / f"step-{ex.number}").symlink_to(checker.binary(BUILD, CUTS, ex.name))
            checker.link_needs(bin_dir, ex.needs, REFERENCE)
        entries = [checker.plan_entry(ex, ex.fast) for ex in group]
        results, code, output = checker.run_plan(bin_dir, entries, first_failure_ends=True,
                                                 log=BUILD / f"round-{i}.log")
        assert code in (0, 1), f"round {i}: pytest exit {code}:\n{output[-3000:]}"
        verdict = checker.verdicts(results)
        for ex in group:
            mine = {k: r for k, r in results.items() if ex.name in r["exercises"]}
            out[ex.name] = (verdict.get(ex.name, "no tests"), mine)
    print(f"\nstubs checked in {time.monotonic() - started:.0f} s")
    return out


@LONG
@pytest.mark.parametrize("name", NAMES)
def test_the_stub_fails_its_check(stub_results, name):
    if name not in stub_results:
        pytest.fail("the stub did not build (see test_the_stub_builds)")
    verdict, results = stub_results[name]
    if verdict == "skipped":
        pytest.skip(next(iter(results.values()))["message"] or "its tests cannot run here")
    failed = [f"{r['test']}[{r['params']}]" for r in results.values() if r["outcome"] == "failed"]
    assert verdict == "failing" and failed, (
        f"{name}'s stub passes its check ({BY_NAME[name].fast!r}): a check that cannot fail "
        f"checks nothing: {[(r['test'], r['outcome']) for r in results.values()]}")
    print(f"{name}: the stub fails {', '.join(failed)}")


@pytest.fixture(scope="module")
def step_results():
    needs_steps(*sorted({ex.number for ex in EXERCISES} | {n for e in EXERCISES for n in e.needs}))
    started = time.monotonic()
    results, code, output = checker.run_plan(
        REFERENCE, [checker.plan_entry(ex, ex.fast) for ex in EXERCISES],
        log=BUILD / "steps.log")
    assert code in (0, 1), f"pytest exit {code}:\n{output[-3000:]}"
    print(f"\nsteps checked in {time.monotonic() - started:.0f} s")
    return results


@LONG
@pytest.mark.parametrize("name", NAMES)
def test_the_step_passes_its_check(step_results, name):
    mine = [r for r in step_results.values() if name in r["exercises"]]
    assert mine, f"{name}: no test ran"
    if all(r["outcome"] == "skipped" for r in mine):
        pytest.skip(mine[0]["message"] or "its tests cannot run here")
    bad = [(f"{r['test']}[{r['params']}]", r["outcome"], checker.failure_lines(r["message"]))
           for r in mine if r["outcome"] != "passed"]
    assert not bad, f"step {BY_NAME[name].number} fails the check of {name}: {bad}"


# --------------------------------------------------------------------------
# What a learner types, end to end, on the shortest exercise

LEARNER = "06-accept-drain"


def learner(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "exercises" / "exercise.py"),
                           *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


@LONG
def test_a_learner_starts_checks_solves_and_starts_over():
    needs_steps(LEARNER[:2])
    work = BUILD / "work"
    if work.exists():
        shutil.rmtree(work)
    env = {**os.environ, "LADDER_EXERCISES_WORK": str(work),
           "LADDER_EXERCISES_BUILD": str(BUILD)}  # its common/ is built: the stubs use it
    ex = BY_NAME[LEARNER]
    mine = work / LEARNER / ex.region_of().path.name

    r = learner("start", LEARNER, env=env)
    assert r.returncode == 0, r.stderr
    assert ex.read in r.stdout and "Check: make check" in r.stdout, r.stdout
    assert "not started" not in learner("list", env=env).stdout.split(LEARNER)[1].split("\n")[0]

    r = learner("check", LEARNER, env=env)  # the stub as cut: failing, and no hint used up
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED" in r.stdout and "still has the stub" in r.stdout, r.stdout
    assert "Hint 1" not in r.stdout

    # Code of one's own that fails (at once, so that the test is quick): a hint.
    text = mine.read_text()
    stub_body = 'throw std::logic_error("not written yet: on_accept (exercise 06-accept-drain)");'
    assert stub_body in text
    mine.write_text(text.replace(stub_body, 'throw std::runtime_error("mine");'))
    r = learner("check", LEARNER, env=env)
    assert r.returncode == 1 and "Hint 1 of" in r.stdout, r.stdout
    assert " ".join(ex.hints[0].split()[:6]) in " ".join(r.stdout.split())
    assert ex.says["test_burst_of_200_connects_all_served"][:40] in " ".join(r.stdout.split())
    assert "failing" in learner("list", env=env).stdout.split(LEARNER)[1].split("\n")[0]

    r = learner("solution", LEARNER, env=env)
    assert r.returncode == 0 and "while (accept_one(loop))" in r.stdout, r.stdout

    mine.write_text(text.replace(stub_body, "while (accept_one(loop)) {\n    }"))
    r = learner("check", LEARNER, env=env)
    assert r.returncode == 0 and "Passing" in r.stdout, r.stdout
    assert "passing" in learner("list", env=env).stdout.split(LEARNER)[1].split("\n")[0]

    r = learner("reset", LEARNER, env=env)  # no terminal: it asks, hears nothing, keeps it
    assert "YES=1" in r.stderr and "while (accept_one(loop))" in mine.read_text()
    r = learner("reset", LEARNER, "--yes", env=env)
    assert r.returncode == 0 and stub_body in mine.read_text()
