"""What a learner reads stays true: every measured figure comes from its
source through tools/docs/numbers.py (or the README's bench block), nothing
names a path, a make target or a flag that does not exist, and nothing talks
of project history (issues, "the seed") a learner never saw."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LEARNER_TEXT = sorted({*ROOT.glob("README.md"), *ROOT.glob("docs/*.md"),
                       *ROOT.glob("docs/diffs/README.md"), ROOT / "slides" / "deck.md",
                       *ROOT.glob("steps/*/README.md"), *ROOT.glob("steps/*/demo.py"),
                       *ROOT.glob("labs/*/README.md"),
                       *ROOT.glob("tools/demo/*.py"), *ROOT.glob("notebooks/*.ipynb")})
# Where the kit's own words are the teacher's: no figure typed by hand.
NARRATIVE = [ROOT / "docs" / "workshop.md", ROOT / "docs" / "self-study.md",
             ROOT / "slides" / "deck.md"]
ids = [str(p.relative_to(ROOT)) for p in LEARNER_TEXT]


def without_generated(text: str) -> str:
    text = re.sub(r"<!-- numbers:[\w-]+ -->.*?<!-- /numbers -->", "", text, flags=re.S)
    return re.sub(r"<!-- bench:begin .*?<!-- bench:end -->", "", text, flags=re.S)


def test_quoted_figures_match_their_source():
    """tools/docs/numbers.py --check: every numbers block is what the
    committed run (the CSV README's bench block names) says now."""
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "docs" / "numbers.py"), "--check"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_generator_reads_the_committed_run(tmp_path):
    """A numbers block follows its CSV: another run, other figures."""
    sys.path.insert(0, str(ROOT / "tools" / "docs"))
    import numbers as gen  # noqa: F401  (tools/docs/numbers.py, not the stdlib's)

    if not hasattr(gen, "BLOCKS"):  # the stdlib module came first on the path
        import importlib.util

        spec = importlib.util.spec_from_file_location("ladder_numbers",
                                                      ROOT / "tools" / "docs" / "numbers.py")
        gen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gen)
    run = gen.Run(gen.committed_csv())
    text = "<!-- numbers:idle-cost -->\nold\n<!-- /numbers -->"
    out = gen.render(text, run, "test")
    step04 = run.value("step-04", "idle-5k", "cpu_us_per_req")
    assert step04 is not None and gen.fmt(step04) in out and "old" not in out
    with pytest.raises(SystemExit):
        gen.render("<!-- numbers:nothing -->\n<!-- /numbers -->", run, "test")


NUMBER_WITH_UNIT = re.compile(
    r"(?<![\w.`-])\d[\d,.]*\s?(µs|ms|KiB|MiB|GiB|req/s|requests/s|%|×|x\b|s\b|seconds|"
    r"lines\b|wake-ups|connections|clients|threads)")
# Constants of the code and of the protocol, quoted as what they are.
ALLOWED = {"1 MiB"}


@pytest.mark.parametrize("path", NARRATIVE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_hand_typed_measurement(path):
    text = without_generated(path.read_text())
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # code and ASCII art
    text = re.sub(r"`[^`\n]*`", "", text)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    found = [m.group(0) for m in NUMBER_WITH_UNIT.finditer(text)
             if m.group(0) not in ALLOWED]
    assert not found, (f"{path.name}: figures typed by hand (generate them with "
                       f"tools/docs/numbers.py, or quote the constant by name): {found}")


@pytest.mark.parametrize("path", LEARNER_TEXT, ids=ids)
def test_no_project_history(path):
    text = path.read_text()
    for pattern in (r"\bthe seeds?\b", r"\bseed articles?\b", r"\b[Ii]ssue #?\d+",
                    r"(?<![\w/&])#\d+\b(?![\w-])"):
        m = re.search(pattern, text)
        assert not m, f"{path.name}: {m.group(0)!r}: say what the idea is"


PATH = re.compile(r"(?<![\w./-])((?:steps|docs|tools|notebooks|results|slides|common|tests|labs)"
                  r"/[\w./-]*[\w/])")


def mentioned_paths(path: Path) -> set[str]:
    text = path.read_text()
    found = set(PATH.findall(text))
    return {p for p in found if not re.search(r"NN|BB|MM|\*|<|\{|\.\.\.|…", p)}


@pytest.mark.parametrize("path", LEARNER_TEXT, ids=ids)
def test_mentioned_paths_exist(path):
    missing = []
    for p in sorted(mentioned_paths(path)):
        target = p.rstrip("/.")
        if target.startswith("results/figures") or target.startswith("tests/fixtures"):
            continue  # made by make notebooks; fixtures exist but are not quoted
        if not ((ROOT / target).exists() or (path.parent / target).exists()
                or any(ROOT.glob(target + "*"))):
            missing.append(p)
    assert not missing, f"{path.name} mentions paths that do not exist: {missing}"


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    # and the fragments it includes (labs/labs.mk, exercises/exercises.mk)
    included = re.findall(r"^include (\S+)", makefile, re.M)
    text = makefile + "".join((ROOT / f).read_text() for f in included if (ROOT / f).is_file())
    targets = set(re.findall(r"^([\w.-]+)\s*:(?!=)", text.replace("\\\n", " "), re.M))
    for line in re.findall(r"^\.PHONY:(.*)$", text.replace("\\\n", " "), re.M):
        targets.update(w for w in line.split() if re.fullmatch(r"[\w-]+", w))
    steps = [p.name[:2] for p in (ROOT / "steps").glob("[0-9][0-9]-*")]
    targets |= {f"step-{n}" for n in steps} | {f"serve-{n}" for n in steps}
    targets |= {"step-NN", "serve-NN"}
    labs = [p.name for p in (ROOT / "labs").iterdir() if p.is_dir()]
    targets |= {f"lab-{n}" for n in labs} | {f"test-lab-{n}" for n in labs}
    return targets


@pytest.mark.parametrize("path", LEARNER_TEXT, ids=ids)
def test_mentioned_make_targets_exist(path):
    targets = make_targets()
    said = set(re.findall(r"\bmake ([a-z][\w-]*[\w])", path.read_text()))
    said -= {"sure", "the", "a", "it", "one", "them", "that", "this", "every", "each", "your",
             "no", "all", "sense", "room", "target", "serve"}
    missing = sorted(t for t in said if t not in targets and not t.startswith("lab-NAME"))
    assert not missing, f"{path.name} names make targets that do not exist: {missing}"


def binary_flags(name: str) -> set[str] | None:
    bin_dir = Path(os.environ.get("LADDER_BIN", ROOT / "build" / "bin"))
    exe = bin_dir / name
    if not exe.exists():
        return None
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=10)
    return set(re.findall(r"--[a-z][\w-]*", r.stdout + r.stderr))


@pytest.mark.parametrize("path", LEARNER_TEXT, ids=ids)
def test_mentioned_flags_exist(path):
    """`build/bin/step-06 --naive-et`, `build/bin/loadgen --idle 5000`: each
    flag is one the binary's --help lists."""
    wrong = []
    for name, rest in re.findall(r"build/bin/(step-\d\d|loadgen)((?: +--?[\w-]+(?: +[\w.:/]+)?)+)",
                                 path.read_text()):
        flags = binary_flags(name)
        if flags is None:
            pytest.skip(f"{name} is not built (LADDER_BIN)")
        wrong += [f"{name} {f}" for f in re.findall(r"--[a-z][\w-]*", rest) if f not in flags]
    assert not wrong, f"{path.name}: flags the binaries do not have: {wrong}"
