"""The learner's material stays runnable: every notebook executes against a
small results file, and the slide deck renders with every snippet, diff and
figure it names. Nothing here starts a server.

    make test-steps PYTEST_ARGS='-k notebook'
    make test-steps PYTEST_ARGS='-k slides'
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
FIXTURE = ROOT / "tests" / "fixtures" / "results"
SLIDES = ROOT / "slides"
MARP = SLIDES / "node_modules" / ".bin" / "marp"

sys.path.insert(0, str(ROOT / "notebooks"))
sys.path.insert(0, str(SLIDES))

# The sanitizer runs repeat the suite for the binaries; this file reads none.
pytestmark = pytest.mark.skipif(bool(os.environ.get("LADDER_SANITIZER")),
                                reason="reads no binary: `make test` runs it")


def test_notebooks_are_committed_without_outputs():
    """Outputs would be a stale copy of some run's numbers; `make notebooks`
    writes executed copies to build/notebooks/ instead."""
    assert NOTEBOOKS, "no notebooks/NN-*.ipynb"
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] == "code":
                assert not cell.get("outputs"), f"{path.name} cell {i} has outputs"
                assert cell.get("execution_count") is None, f"{path.name} cell {i} was run"


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """Executes every notebook once, two at a time, against the fixture run;
    returns {notebook name: (error or None, figure directory)}."""
    pytest.importorskip("nbclient", reason="python3-nbclient: make deps")
    pytest.importorskip("matplotlib", reason="python3-matplotlib: make deps")
    from concurrent.futures import ProcessPoolExecutor

    import run as runner

    out = tmp_path_factory.mktemp("figures")
    env = {"LADDER_RESULTS": str(FIXTURE), "LADDER_FIGURES": str(out)}
    results = {}
    with ProcessPoolExecutor(max_workers=2) as pool:
        jobs = {p.name: pool.submit(runner.execute, p, None, env) for p in NOTEBOOKS}
        for name, job in jobs.items():
            try:
                job.result()
                results[name] = None
            except Exception as e:  # nbclient's error names the cell and its traceback
                results[name] = str(e)[-3000:]
    return results, out


@pytest.mark.parametrize("notebook", [p.name for p in NOTEBOOKS])
def test_notebook_runs_against_the_fixture(figures, notebook):
    errors, out = figures
    assert errors[notebook] is None, errors[notebook]
    # Each notebook saves the figures it names: `lr.save(fig, "name")`, or a
    # helper of its own called with the name first (`idle_figure("idle-cpu", …)`).
    source = (ROOT / "notebooks" / notebook).read_text()
    names = re.findall(r'(?:lr\.save\([^,]+, |_figure\(|panels\([^,]+, )\\?"([\w-]+)\\?"',
                       source)
    assert names, f"{notebook} saves no figure"
    for name in names:
        png = out / f"{name}.png"
        assert png.exists() and png.stat().st_size > 10_000, f"{notebook}: no {png.name}"


def test_results_loader_picks_the_newest_bench_csv(tmp_path):
    import ladder_results as lr

    header = lr.bench_csvs(FIXTURE)[0].read_text().splitlines()[0]
    cols = header.split(",")
    for name, date in [("2020-01-01-old.csv", "2020-01-01"), ("2030-01-01-new.csv", "2030-01-01")]:
        row = ["" for _ in cols]
        row[cols.index("date")] = date
        for key, value in {"server": "step-05", "scenario": "http-c50", "client": "loadgen",
                           "rps": "1", "cpu_us_per_req": "2"}.items():
            row[cols.index(key)] = value
        (tmp_path / name).write_text(header + "\n" + ",".join(row) + "\n")
    # The per-run companion is not a run to plot, however new.
    (tmp_path / "2040-01-01-new-runs.csv").write_text(
        "date,commit,server,scenario,client,path,order,kept,rps,cpu_us_per_req\n"
        "2040-01-01,x,step-05,http-c50,loadgen,/hello,0,1,5,6\n")
    res = lr.load(tmp_path)
    assert res.path.name == "2030-01-01-new.csv"
    assert res.rows[0]["rps"] == 1.0 and res.rows[0]["server"] == "step-05"
    with pytest.raises(FileNotFoundError, match="make bench"):
        lr.load(tmp_path / "nothing-here")


# --------------------------------------------------------------------------
# Slides

def test_snippet_tags_are_balanced_and_unique():
    import build

    for path in sorted((ROOT / "steps").glob("*/*.[ch]pp")) + sorted((ROOT / "steps").glob("*/*.h")):
        build.snippets(path)  # raises BuildError on an unclosed, stray or repeated tag


def test_deck_references_resolve(figures):
    """Assembles the deck (no rendering): every snippet tag, diff, README part
    and figure the template names exists, and every figure it needs is one a
    notebook draws."""
    import build

    _, out = figures
    used = build.Used()
    text = build.assemble(SLIDES / "deck.md", out, used)
    assert not re.search(r"^\{\{\s*\w+", text, re.M), "a directive left unresolved"
    assert len(used.snippets) >= 8 and len(used.diffs) >= 5 and used.figures
    for rel, tag in used.snippets:
        assert (ROOT / rel).exists(), rel
    # Every step has a section: the ladder is whatever steps/ holds.
    for step in sorted((ROOT / "steps").glob("[0-9][0-9]-*")):
        assert re.search(rf"^# Step {step.name[:2]} — ", text, re.M), \
            f"slides/deck.md has no section for {step.name}"


def node_major() -> int:
    node = shutil.which("node")
    if not node:
        return 0
    out = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    m = re.match(r"v(\d+)", out.strip())
    return int(m.group(1)) if m else 0


@pytest.fixture(scope="module")
def deck_html(figures, tmp_path_factory):
    """The deck rendered by Marp CLI, as the room sees it (HTML)."""
    if node_major() and node_major() < 18:
        pytest.skip(f"Marp CLI needs Node.js 18+; this system has {node_major()}")
    assert MARP.exists(), ("Marp CLI is not installed in slides/node_modules: "
                           "run `make slides-deps` (npm ci from slides/package-lock.json)")
    _, out = figures
    dest = tmp_path_factory.mktemp("slides")
    r = subprocess.run([sys.executable, str(SLIDES / "build.py"), "--figures", str(out),
                        "--out", str(dest), "--no-pdf"],
                       capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    return dest / "ladder.html"


def test_deck_renders_to_self_contained_html(deck_html):
    html = deck_html.read_text()
    assert html.count("<section") >= 40
    # Self-contained: figures are embedded, nothing is fetched from a path.
    assert "data:image/png;base64," in html
    assert not re.search(r'<img[^>]+src="(?!data:)', html)
    for needle in ("[snip:et-drain]", "EPOLLET", "docs/diffs/05-06.diff", "FD_SETSIZE"):
        assert needle in html, needle


def test_deck_code_fits_a_slide_and_prose_is_not_hard_wrapped(figures):
    """At most 16 lines of code per slide (longer code goes on over several
    slides, never cut off), no "… N more lines", and no paragraph broken
    where its source line was."""
    import build

    _, out = figures
    text = build.assemble(SLIDES / "deck.md", out, build.Used())
    assert "more lines in" not in text
    for n, slide in enumerate(text.split("\n---\n")):
        for block in re.findall(r"^```\w*\n(.*?)^```", slide, re.S | re.M):
            assert len(block.splitlines()) <= build.MAX_LINES, f"slide {n}: {block[:200]}"
        prose = re.sub(r"^```.*?^```", "", slide, flags=re.S | re.M)
        prose = re.sub(r"<!--.*?-->", "", prose, flags=re.S)
        for para in re.split(r"\n\s*\n", prose):
            lines = [l for l in para.splitlines() if l.strip()]
            if len(lines) > 1 and not any(build.BLOCK_START.match(l) for l in lines):
                pytest.fail(f"slide {n}: a paragraph over {len(lines)} source lines: {para[:120]}")


def test_deck_projects_at_1280x720(deck_html):
    """Headless Chromium shows every slide at 1280x720 and measures it:
    nothing taller than the slide, no code wider than it, no text under
    18 px, code at 20 px or more, no table with an empty header row, code
    and diagrams in one character width. Screenshots of every slide go to
    build/slides/png/ to look at."""
    import check

    if not check.chromium_binary():
        pytest.fail("no chromium: `make deps` installs it (tools/deps.sh test)")
    slides = check.check(deck_html, ROOT / "build" / "slides" / "png")
    assert len(slides) >= 40
    bad = [f"slide {s['slide']} ({s.get('title', '')[:40]}): {p}"
           for s in slides for p in check.problems(s)]
    assert not bad, "\n".join(bad)
    assert max(s["height"] for s in slides) <= check.HEIGHT
    assert min(s["font"] for s in slides if s.get("font")) >= check.MIN_FONT


# --------------------------------------------------------------------------
# The learner's way in: the top README

def makefile_targets() -> set[str]:
    """Every target the Makefile declares .PHONY; the per-step ones as step-NN/serve-NN."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    targets = set()
    for line in re.findall(r"^\.PHONY:(.*)$", text, re.M):
        for prefix in re.findall(r"\$\(addprefix ([\w-]+),[^)]*\)\)", line):
            targets.add(prefix + "NN")
        line = re.sub(r"\$\(addprefix [^)]*\)\)", " ", line)
        targets.update(word for word in line.split() if re.fullmatch(r"[\w-]+", word))
    return targets


def test_readme_links_every_step_and_lists_every_make_target():
    text = (ROOT / "README.md").read_text()
    for step in sorted((ROOT / "steps").glob("[0-9][0-9]-*")):
        link = f"](steps/{step.name}/README.md)"
        assert link in text, f"README.md does not link {step.name}'s README"
        assert (step / "README.md").exists(), f"README.md links {step.name}/README.md: missing"
    targets = makefile_targets()
    assert {"test", "notebooks", "slides", "step-NN", "serve-NN"} <= targets
    for target in sorted(targets):
        assert f"make {target}" in text, f"README.md does not list `make {target}`"
    for doc in ("docs/workshop.md", "docs/self-study.md"):
        assert f"]({doc})" in text, f"README.md does not point at {doc}"


def test_herd_numbers_from_the_bench_rows():
    """Without step 07's own table, notebook 4 reads the per-worker counters
    in the bench's server_stats: wasted wake-ups per connection and shares."""
    import ladder_results as lr

    res = lr.load(FIXTURE)
    herd = {h["server"]: h for h in map(lr.herd, res.select("newconn-c50")) if h}
    assert {"step-07-shared-lt", "step-07-reuseport", "step-08"} <= set(herd)
    for h in herd.values():
        assert abs(sum(h["shares"]) - 1) < 1e-9 and 0 < h["fairness"] <= 1
        assert h["wasted_per_connection"] >= 0
    assert lr.herd({"server": "step-05", "server_stats": '{"requests": 3}'}) is None
