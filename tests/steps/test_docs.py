"""What a learner reads must stay true: generated diffs current, every step
README complete, no markers a learner would mistake for bugs."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEP_DIRS = sorted(p for p in (ROOT / "steps").glob("[0-9][0-9]-*") if p.is_dir())


def test_generated_diffs_are_current():
    r = subprocess.run([str(ROOT / "tools" / "mkdiff.sh"), "--check"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


sys.path.insert(0, str(ROOT / "tools" / "pylib"))
from ladder import steps as step_info  # noqa: E402

STEPS = step_info.all_steps(ROOT)


def changed_code_lines(diff: str) -> list[str]:
    """The lines a diff adds or removes that are code: not the file headers,
    not blank, not comments (a step's header block is comments too)."""
    out = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")) or line[:1] not in "+-":
            continue
        body = line[1:].strip()
        if body and not body.startswith("//"):
            out.append(line)
    return out


@pytest.mark.parametrize("info", [s for s in STEPS.values() if s.diff_budget],
                         ids=lambda s: s.name)
def test_the_diff_from_the_base_step_is_within_its_budget(info):
    """A step's diff shows its idea and little else: 03→04 ≤ 50 changed code
    lines, 04→05 ≤ 60, 05→06 ≤ 35, 06→08 ≤ 100 (the budgets in step.toml)."""
    diff = (ROOT / "docs" / "diffs" / f"{info.base}-{info.number}.diff").read_text()
    changed = changed_code_lines(diff)
    assert len(changed) <= info.diff_budget, (
        f"{info.base}→{info.number}: {len(changed)} changed code lines, budget "
        f"{info.diff_budget}:\n" + "\n".join(changed))


TAG = re.compile(r"^\s*// \[/?(snip|exercise)(:[\w-]+)?\]\s*$")


@pytest.mark.parametrize("info", [s for s in STEPS.values() if s.max_lines],
                         ids=lambda s: s.name)
def test_a_step_fits_its_line_budget(info):
    """A step that must read in one sitting says how long it may be
    (`max_lines` in step.toml: 09, at most 450 in all); the lines counted are
    every line of its code but the snippet and exercise tags, which only
    mark regions for the slides and the exercises."""
    lines = [line for p in info.sources for line in p.read_text().splitlines()
             if not TAG.match(line)]
    assert len(lines) <= info.max_lines, (f"{info.name}: {len(lines)} lines, "
                                          f"budget {info.max_lines}")


HANDLERS = ("on_accept", "on_readable", "on_writable", "rewatch", "close_conn")


# The readiness loops written as handlers (step 10 writes its connections as
# coroutines, step 11 reacts to completions: other shapes, on purpose).
HANDLER_LOOPS = {"select", "poll", "epoll-lt", "epoll-et", "epoll-workers", "epoll-pool"}


@pytest.mark.parametrize("info", [s for s in STEPS.values()
                                  if s.suite.get("loop") in HANDLER_LOOPS],
                         ids=lambda s: s.name)
def test_event_loop_steps_keep_the_same_handler_names(info):
    """From step 03 on the same handlers carry the same names, so a diff
    between neighbours shows only what changed inside them."""
    code = code_of(info.sources)
    missing = [h for h in HANDLERS if not re.search(rf"\b{h}\s*\(", code)]
    assert not missing, f"{info.name} has no {missing}"


# The calls and flags a step's Adds: line may name, and how each shows in code.
LESSON_CALLS = ["socket", "setsockopt", "bind", "listen", "accept4", "read", "send",
                "select", "FD_ZERO", "FD_SET", "FD_ISSET", "poll", "pollfd",
                "epoll_create1", "epoll_ctl", "epoll_wait", "EPOLLET", "EPOLLEXCLUSIVE",
                "EPOLLRDHUP", "SO_REUSEPORT", "eventfd", "timerfd", "fork", "waitpid",
                "std::thread", "pthread_create", "getrusage", "co_await",
                "io_uring_submit_and_wait", "io_uring_get_sqe", "io_uring_prep_multishot_accept",
                "io_uring_prep_recv", "io_uring_prep_recv_multishot", "io_uring_prep_send",
                "io_uring_register_buf_ring", "io_uring_prep_cancel_fd"]


def code_of(paths) -> str:
    """The files' text without comments."""
    text = "\n".join(p.read_text() for p in paths)
    return re.sub(r"//[^\n]*", "", text)


@pytest.mark.parametrize("info", list(STEPS.values()), ids=lambda s: s.name)
def test_a_step_makes_the_calls_its_header_names_itself(info):
    """What a step's header says it adds — accept4, read, epoll_wait,
    SO_REUSEPORT … — is in that step's own code, not hidden in common/."""
    adds = info.header()["Adds"]
    named = [c for c in LESSON_CALLS if re.search(rf"(?<![\w:]){re.escape(c)}(?!\w)", adds)]
    assert named, f"{info.name}: the Adds line names no system call: {adds!r}"
    code = code_of(info.sources)
    for call in named:
        assert re.search(rf"(?<!\w){re.escape(call)}(?!\w)", code), (
            f"{info.name} says it adds {call}, but its own code never uses it")


def test_common_makes_none_of_the_lessons_calls():
    """common/ holds what is not a lesson: no epoll_wait, select, poll or
    accept4, and no SO_REUSEPORT — except accept4 and poll in the EMFILE
    helper (accept_and_close_in_private_table and class Reserve
    in net.cpp), which steps call by name."""
    for path in sorted((ROOT / "common").glob("*.[ch]*")):
        code = code_of([path])
        if path.name == "net.cpp":
            start = code.index("bool accept_and_close_in_private_table")
            code = code[:start] + code[code.index("\n};", code.index("class Reserve")):]
        for call in ("epoll_wait", "epoll_ctl", "select", "poll", "accept4", "accept"):
            assert not re.search(rf"(?<![\w.]){call}\s*\(", code), f"common/{path.name}: {call}()"
        assert "SO_REUSEPORT" not in code, f"common/{path.name}: SO_REUSEPORT"


@pytest.mark.parametrize("step_dir", STEP_DIRS, ids=lambda p: p.name)
def test_step_readme_has_the_five_words_and_exercises(step_dir):
    text = (step_dir / "README.md").read_text()
    for word in ("Adds", "Why", "Costs", "Observe"):
        assert re.search(rf"^\| \*\*{word}\*\* \|", text, re.M), f"no {word} row"
    tries = text.split("## Try", 1)
    assert len(tries) == 2, "no '## Try' section"
    assert len(re.findall(r"^\d+\. ", tries[1], re.M)) >= 2, "fewer than two exercises"
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        if not link.startswith("http"):
            assert (step_dir / link).resolve().exists(), f"broken link {link}"


@pytest.mark.parametrize("step_dir", STEP_DIRS, ids=lambda p: p.name)
def test_step_build_file_is_one_line(step_dir):
    """`ladder_step()`, or `ladder_step(LIBS name ...)` for a step that links a library."""
    assert re.fullmatch(r"ladder_step\((LIBS( [\w-]+)+)?\)",
                        (step_dir / "CMakeLists.txt").read_text().strip())


@pytest.mark.parametrize("step_dir", STEP_DIRS, ids=lambda p: p.name)
def test_step_code_has_header_block_and_no_markers(step_dir):
    for source in sorted(step_dir.glob("*.[ch]pp")) + sorted(step_dir.glob("*.h")):
        text = source.read_text()
        assert not re.search(r"\b(FIXME|TODO|XXX)\b", text), f"{source.name}: marker left"
    server = (step_dir / "server.cpp").read_text()
    head = server.split("\n", 5)
    assert head[0].startswith(f"// Step {step_dir.name[:2]} — ")
    for i, word in enumerate(("Adds:", "Why:", "Costs:", "Observe:"), start=1):
        assert head[i].startswith(f"// {word}"), f"header line {i + 1} should be {word}"


def test_observe_selectors_select_tests():
    """Each step's header says `make test-steps PYTEST_ARGS='-k "NN and word"'`:
    that selection must name at least one test of that step."""
    import os
    import sys

    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                        str(ROOT / "tests" / "steps")], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "LADDER_STEPS": ""})
    ids = [line.lower() for line in r.stdout.splitlines() if "::" in line]
    assert ids, r.stdout[-2000:] + r.stderr[-2000:]
    for step_dir in STEP_DIRS:
        header = (step_dir / "server.cpp").read_text().split("\n", 5)[4]
        m = re.search(r"-k \"([^\"]+)\"", header)
        assert m, f"{step_dir.name}: Observe line has no -k selector: {header}"
        terms = [t.strip().lower() for t in m.group(1).split(" and ")]
        assert any(all(t in i for t in terms) for i in ids), \
            f"{step_dir.name}: -k \"{m.group(1)}\" selects no test"


def test_readme_numbers_match_the_committed_run():
    """The README's bench block is generated from the CSV it names
    (tools/bench/plot.py results/<that>.csv rewrites it): numbers in the
    README never drift from the committed run."""
    import sys

    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- bench:begin (\S+) -->", text)
    assert m, "the README has no bench block"
    csv_path = ROOT / m.group(1)
    assert csv_path.is_file(), f"the README's bench block names {m.group(1)}, which is missing"
    for path in (ROOT / "tools" / "pylib", ROOT / "tools" / "bench"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    import report

    block = report.readme_block(report.read_csv(csv_path), m.group(1))
    assert block in text, f"stale: run tools/bench/plot.py {m.group(1)}"
    for image in re.findall(r"\]\((results/[^)]+\.png)\)", block):
        assert (ROOT / image).is_file(), image
