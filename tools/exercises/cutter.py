"""Exercises cut from the steps' own code (exercises/README.md).

A step's source marks a region with two comment lines:

    // [exercise:drain]
    ... the step's code, unchanged ...
    // [/exercise]

and exercises/NN-name/exercise.toml describes one exercise on it (the region
is `name` without its "NN-", or `region = "..."`). The learner's copy of the
step is the step's code with that region

  - replaced by exercises/NN-name/stub.cpp (kind = "write": a hole to fill), or
  - changed by the `[[plant]]` find/replace pairs (kind = "bug": a bug hunt),

and every tag line (`// [exercise:…]`, `// [snip:…]` and their ends) left
out, so the copy reads like plain code. Because the region is the step's
code, an exercise cannot drift from its step: a plant whose `find` no longer
matches stops the cut with an error, and the suite (tests/exercises) checks
that every stub builds and fails its check while the step passes it.

Exercise regions never start or end inside a snippet (`// [snip:…]`, the
slides' tags): a region holds whole snippets or none, so no exercise tag
ever shows on a slide.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "pylib"))
from ladder import steps as step_info  # noqa: E402

EXERCISES = ROOT / "exercises"

OPEN = re.compile(r"^\s*// \[exercise:([\w-]+)\]\s*$")
CLOSE = re.compile(r"^\s*// \[/exercise\]\s*$")
SNIP_OPEN = re.compile(r"^\s*// \[snip:([\w-]+)\]\s*$")
SNIP_CLOSE = re.compile(r"^\s*// \[/snip\]\s*$")
KINDS = {"write": "write it", "bug": "bug hunt"}
MAX_HINTS = 3


class CutError(Exception):
    """A tag or a description that does not hold together; the text says where."""


def work_root() -> Path:
    """Where learners' copies live: exercises/work/ (git-ignored).
    $LADDER_EXERCISES_WORK moves it (the suite's own tests use a temporary one)."""
    return Path(os.environ.get("LADDER_EXERCISES_WORK", EXERCISES / "work")).resolve()


def is_tag(line: str) -> bool:
    return bool(OPEN.match(line) or CLOSE.match(line) or SNIP_OPEN.match(line)
                or SNIP_CLOSE.match(line))


def untagged(text: str) -> str:
    """The text without its tag lines: what a learner's copy holds."""
    keep = [line for line in text.split("\n") if not is_tag(line)]
    return "\n".join(keep)


# --------------------------------------------------------------------------
# Regions in a step's sources

@dataclasses.dataclass(frozen=True)
class Region:
    path: Path
    tag: str
    start: int  # index of the `// [exercise:tag]` line
    end: int    # index of its `// [/exercise]` line

    @property
    def where(self) -> str:
        rel = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{rel}:{self.start + 1}"


def regions_in(path: Path) -> list[Region]:
    """Every exercise region of one file. Regions may nest; each must open and
    close at the same snippet depth (it holds whole snippets, or none)."""
    found: list[Region] = []
    stack: list[tuple[str, int, int]] = []  # tag, line index, snippet depth
    snip_depth = 0
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    for i, line in enumerate(path.read_text().split("\n")):
        if SNIP_OPEN.match(line):
            snip_depth += 1
        elif SNIP_CLOSE.match(line):
            snip_depth -= 1
            if stack and snip_depth < stack[-1][2]:
                raise CutError(f"{rel}:{i + 1}: a snippet that began before "
                               f"[exercise:{stack[-1][0]}] ends inside it")
        elif m := OPEN.match(line):
            if snip_depth:
                raise CutError(f"{rel}:{i + 1}: [exercise:{m.group(1)}] is inside a snippet: "
                               "put it around the whole [snip:…] … [/snip], so the slides "
                               "never show it")
            stack.append((m.group(1), i, snip_depth))
        elif CLOSE.match(line):
            if not stack:
                raise CutError(f"{rel}:{i + 1}: [/exercise] without [exercise:…]")
            tag, start, depth = stack.pop()
            if snip_depth != depth:
                raise CutError(f"{rel}:{i + 1}: [exercise:{tag}] ends inside a snippet")
            found.append(Region(path, tag, start, i))
    if stack:
        tag, start, _ = stack[-1]
        raise CutError(f"{rel}:{start + 1}: [exercise:{tag}] is never closed")
    return found


def step_regions(info: step_info.StepInfo) -> dict[str, Region]:
    """tag -> Region over all of a step's sources; a tag is used once per step."""
    out: dict[str, Region] = {}
    for path in info.sources:
        for r in regions_in(path):
            if r.tag in out:
                raise CutError(f"{r.where}: [exercise:{r.tag}] is already at {out[r.tag].where}")
            out[r.tag] = r
    return out


# --------------------------------------------------------------------------
# Descriptions: exercises/NN-name/exercise.toml

@dataclasses.dataclass
class Plant:
    find: str
    replace: str


@dataclasses.dataclass
class Exercise:
    name: str               # "06-drain"
    dir: Path               # exercises/06-drain
    step: step_info.StepInfo
    kind: str               # "write" or "bug"
    region: str             # the tag in the step's sources
    title: str
    minutes: int
    teaches: str
    read: str               # a heading of the step's README: the section to read first
    task: str               # the one thing to write (or to find)
    select: str             # pytest -k expression over the step's tests: the check
    fast: str               # the part of it `make test` runs on stub and step
    ids: tuple[str, ...]    # the step's suite ids it runs on ("02", "02-processes"); () = all
    needs: tuple[str, ...]  # other steps whose binaries its tests compare with
    asan: bool              # the check also runs under AddressSanitizer
    workshop: bool          # the one done after the step's demo in a workshop
    hints: list[str]
    says: dict[str, str]    # test name -> what its failure means, in the learner's words
    plants: list[Plant]
    stub: str | None        # kind "write": the region's replacement (stub.cpp)

    @property
    def number(self) -> str:
        return self.step.number

    @property
    def kind_words(self) -> str:
        return KINDS[self.kind]

    def region_of(self) -> Region:
        found = step_regions(self.step)
        if self.region not in found:
            raise CutError(f"{self.name}: no [exercise:{self.region}] in the code of "
                           f"{self.step.name} (it has: {', '.join(sorted(found)) or 'none'})")
        return found[self.region]


def _text(data: dict, key: str, name: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CutError(f"exercises/{name}/exercise.toml: `{key}` is missing")
    return value.strip()


def load(name: str) -> Exercise:
    d = EXERCISES / name
    path = d / "exercise.toml"
    if not re.fullmatch(r"\d\d-[\w-]+", name) or not path.is_file():
        raise CutError(f"no exercise {name!r} (make exercises lists them)")
    data = tomllib.loads(path.read_text())
    steps = step_info.all_steps(ROOT)
    if name[:2] not in steps:
        raise CutError(f"exercises/{name}: no step {name[:2]} under steps/")
    kind = data.get("kind")
    if kind not in KINDS:
        raise CutError(f"exercises/{name}/exercise.toml: kind is {kind!r}, not "
                       f"{' or '.join(map(repr, KINDS))}")
    hints = list(data.get("hints", []))
    if not 1 <= len(hints) <= MAX_HINTS:
        raise CutError(f"exercises/{name}: {len(hints)} hints; one to {MAX_HINTS}")
    plants = [Plant(p["find"], p["replace"]) for p in data.get("plant", [])]
    stub_path = d / "stub.cpp"
    stub = stub_path.read_text() if stub_path.is_file() else None
    if kind == "write" and (stub is None or plants):
        raise CutError(f"exercises/{name}: a `write` exercise has a stub.cpp and no [[plant]]")
    if kind == "bug" and (stub is not None or not plants):
        raise CutError(f"exercises/{name}: a bug hunt has [[plant]] entries and no stub.cpp")
    select = _text(data, "select", name)
    return Exercise(
        name=name, dir=d, step=steps[name[:2]], kind=kind,
        region=data.get("region", name[3:]), title=_text(data, "title", name),
        minutes=int(data.get("minutes", 0)), teaches=_text(data, "teaches", name),
        read=_text(data, "read", name), task=_text(data, "task", name),
        select=select, fast=data.get("fast", select),
        ids=tuple(data.get("ids", ())), needs=tuple(data.get("needs", ())),
        asan=bool(data.get("asan", False)), workshop=bool(data.get("workshop", False)),
        hints=[h.strip() for h in hints],
        says={k: v.strip() for k, v in data.get("says", {}).items()},
        plants=plants, stub=stub)


def names() -> list[str]:
    """Every exercise, in the order of the path: by step, then as listed in
    exercises/ORDER when a step has several (else by name)."""
    found = sorted(p.parent.name for p in EXERCISES.glob("[0-9][0-9]-*/exercise.toml"))
    order_file = EXERCISES / "ORDER"
    order = order_file.read_text().split() if order_file.is_file() else []
    rank = {n: i for i, n in enumerate(order)}
    return sorted(found, key=lambda n: (n[:2], rank.get(n, len(rank)), n))


def all_exercises() -> list[Exercise]:
    return [load(n) for n in names()]


# --------------------------------------------------------------------------
# Cutting

def copied_files(info: step_info.StepInfo) -> list[Path]:
    """What a copy of a step holds: its code and its one-line build file."""
    return [*info.sources, info.dir / "CMakeLists.txt"]


def reference(info: step_info.StepInfo) -> dict[str, str]:
    """The step's own files as a copy would hold them: tag lines left out."""
    return {p.name: untagged(p.read_text()) for p in copied_files(info)}


def planted(ex: Exercise, body: str) -> str:
    for p in ex.plants:
        count = body.count(p.find)
        if count != 1:
            raise CutError(f"{ex.name}: a [[plant]] find= occurs {count} times in "
                           f"[exercise:{ex.region}] of {ex.step.name} (it must occur once): "
                           f"{p.find.strip().splitlines()[0] if p.find.strip() else '(empty)'}")
        body = body.replace(p.find, p.replace)
    return body


def cut(ex: Exercise) -> dict[str, str]:
    """file name -> text of the learner's copy of the step."""
    region = ex.region_of()
    files = {}
    for path in copied_files(ex.step):
        lines = path.read_text().split("\n")
        if path == region.path:
            inside = "\n".join(lines[region.start + 1:region.end])
            if ex.kind == "write":
                new = ex.stub.rstrip("\n")
            else:
                new = planted(ex, untagged(inside) + "\n").removesuffix("\n")
            lines = lines[:region.start] + new.split("\n") + lines[region.end + 1:]
        files[path.name] = untagged("\n".join(lines))
    return files


def write_copy(files: dict[str, str], where: Path) -> None:
    """Writes the files that differ (an unchanged file keeps its time, so a
    build does not redo it) and removes code files the copy no longer has."""
    where.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = where / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    for path in where.iterdir():
        if path.suffix in (".cpp", ".h") and path.name not in files:
            path.unlink()


def digest(where: Path) -> str:
    """One hash over a copy's code: has it changed since the last check?"""
    h = hashlib.sha256()
    for p in sorted(where.iterdir()):
        if p.suffix in (".cpp", ".h") or p.name == "CMakeLists.txt":
            h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


# --------------------------------------------------------------------------
# The README section a learner reads first

def readme_section(info: step_info.StepInfo, heading: str) -> str:
    """The text under `## heading` (or ###) of the step's README, to the next
    heading of the same or a higher level."""
    lines = (info.dir / "README.md").read_text().split("\n")
    for i, line in enumerate(lines):
        m = re.match(r"^(#+) (.*)$", line)
        if m and m.group(2).strip() == heading:
            level = len(m.group(1))
            body = []
            for following in lines[i + 1:]:
                n = re.match(r"^(#+) ", following)
                if n and len(n.group(1)) <= level:
                    break
                body.append(following)
            return "\n".join(body).strip("\n")
    raise CutError(f"{info.name}/README.md has no section {heading!r}")
