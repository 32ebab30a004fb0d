"""What a learner reads must stay true: generated diffs current, every step
README complete, no markers a learner would mistake for bugs."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEP_DIRS = sorted(p for p in (ROOT / "steps").glob("[0-9][0-9]-*") if p.is_dir())


def test_generated_diffs_are_current():
    r = subprocess.run([str(ROOT / "tools" / "mkdiff.sh"), "--check"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


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
    assert (step_dir / "CMakeLists.txt").read_text().strip() == "ladder_step()"


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
