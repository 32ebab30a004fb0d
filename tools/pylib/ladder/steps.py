"""The steps, as their directories describe them: steps/NN-name/step.toml.

Every consumer — the step suite, the bench, the demos, the plots, the docs
checks, tools/mkdiff.sh — reads what it knows of a step from here, so a new
step is its own directory and nothing else:

    title = "epoll, edge-triggered"   # the model, in a few words
    base = "05"                       # the step its code grows from (its diff)
    diff_budget = 35                  # changed code lines allowed in that diff
    [suite]  ...                      # what the step suite may expect of it
    [bench]  ...                      # what the bench may run on it

A `variants.NAME` table inside [suite] or [bench] is the same step run with
other arguments: it takes the section's keys and changes the ones it lists.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HEADER = ("Adds", "Why", "Costs", "Observe")


@dataclasses.dataclass(frozen=True)
class StepInfo:
    number: str            # "06"
    name: str              # "06-epoll-et"
    dir: Path
    title: str
    base: str | None       # "05"; None for the first step
    diff_budget: int | None
    max_lines: int | None  # the step's whole code, tags aside, at most this long
    suite: dict
    bench: dict

    @property
    def sources(self) -> list[Path]:
        """The step's own code: every .cpp and .h in its directory."""
        return sorted(p for p in self.dir.iterdir() if p.suffix in (".cpp", ".h"))

    def header(self) -> dict[str, str]:
        """The five words of server.cpp's header block: {"Adds": "...", ...}
        and "Step": the first line's text after the number."""
        lines = (self.dir / "server.cpp").read_text().split("\n", 5)[:5]
        out = {"Step": lines[0].split("—", 1)[-1].strip()}
        for line in lines[1:]:
            m = re.match(r"// (\w+):\s+(.*)", line)
            if m:
                out[m.group(1)] = m.group(2)
        return out


def load(step_dir: Path) -> StepInfo:
    path = step_dir / "step.toml"
    data = tomllib.loads(path.read_text()) if path.is_file() else {}
    number = step_dir.name[:2]
    return StepInfo(number=number, name=step_dir.name, dir=step_dir,
                    title=data.get("title", step_dir.name[3:]),
                    base=data.get("base"), diff_budget=data.get("diff_budget"),
                    max_lines=data.get("max_lines"),
                    suite=data.get("suite", {}), bench=data.get("bench", {}))


def all_steps(root: Path = ROOT) -> dict[str, StepInfo]:
    """{"01": StepInfo, ...} for every steps/NN-name directory, in order."""
    dirs = sorted(p for p in (root / "steps").glob("[0-9][0-9]-*") if p.is_dir())
    return {d.name[:2]: load(d) for d in dirs}


def variants(section: dict) -> dict[str, dict]:
    """A [suite] or [bench] section's variants, each with the section's keys
    and its own on top: {"processes": {...}, ...}."""
    base = {k: v for k, v in section.items() if k != "variants"}
    return {name: {**base, **own} for name, own in section.get("variants", {}).items()}


def own(section: dict) -> dict:
    """The section without its variants."""
    return {k: v for k, v in section.items() if k != "variants"}


def diff_pairs(root: Path = ROOT) -> list[tuple[str, str]]:
    """(base, step) for every step that names its base: the diffs to show."""
    return [(s.base, s.number) for s in all_steps(root).values() if s.base]
