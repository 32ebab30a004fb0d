#!/usr/bin/env python3
"""Assembles the slide deck from slides/deck.md and renders it with Marp.

Nothing on a slide is pasted by hand: the template names what it shows, and
this script fetches it from the tree, so a slide cannot drift from the code.
A directive is a line of its own:

    {{ snip 06 et-drain }}            lines between `// [snip:et-drain]` and its
                                      `// [/snip]` in steps/06-*/server.cpp
    {{ diff 05-06 match=EPOLLET }}    the changes in docs/diffs/05-06.diff with a line
                                      matching the regex, one line of context (context=N),
                                      at most max=N lines
    {{ diffstat 02-03 }}              the functions a big diff removes, adds and changes
    {{ card 03 }}                     Adds / Why / Costs from steps/03-*/server.cpp's header
    {{ observe 03 }}                  its Observe commands
    {{ ladder }}                      one row per steps/NN-*/ (title and Adds)
    {{ diagram 03 }}                  the first ``` block of steps/03-*/README.md
    {{ try 03 }}                      the numbered exercises under its README's ## Try
    {{ head 07 herd.h }}              the leading comment block of steps/07-*/herd.h
    {{ plot idle-scaling w=900 }}     results/figures/idle-scaling.png, embedded

Anything unresolved (a tag, a diff, a figure that does not exist, a regex that
matches no hunk) stops the build with the reason: the test suite renders the
deck, so a broken slide fails CI rather than a talk.

    slides/build.py                         build/slides/ladder.{md,html} (+ .pdf with Chromium)
    slides/build.py --figures DIR --out DIR --no-pdf
    slides/build.py --no-render             assemble build/slides/ladder.md only
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLIDES = ROOT / "slides"
DIRECTIVE = re.compile(r"^\{\{\s*(\w+)\s*(.*?)\s*\}\}\s*$")
SNIP_OPEN = re.compile(r"^\s*// \[snip:([\w-]+)\]\s*$")
SNIP_CLOSE = re.compile(r"^\s*// \[/snip\]\s*$")
BOILERPLATE = re.compile(r"^[-+](// (Step \d\d|Adds:|Why:|Costs:|Observe:)|"
                         r"\s+\.(program|summary) = |\s*$)")
CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BuildError(Exception):
    pass


@dataclass
class Used:
    """What a build pulled in, so a test can check each reference exists."""

    snippets: list[tuple[str, str]] = field(default_factory=list)  # (file, tag)
    diffs: list[str] = field(default_factory=list)
    docs: list[str] = field(default_factory=list)  # READMEs and headers read
    figures: list[str] = field(default_factory=list)


def step_dir(number: str) -> Path:
    found = sorted((ROOT / "steps").glob(f"{number}-*"))
    if not found:
        raise BuildError(f"no step {number} under steps/")
    return found[0]


# --------------------------------------------------------------------------
# Snippets: `// [snip:name]` ... `// [/snip]`, nestable; tag lines never shown

def snippets(path: Path) -> dict[str, list[str]]:
    """Every tagged region of a source file, tags stripped, dedented."""
    found: dict[str, list[str]] = {}
    open_tags: list[tuple[str, int]] = []
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines, 1):
        if m := SNIP_OPEN.match(line):
            if m.group(1) in found or any(t == m.group(1) for t, _ in open_tags):
                raise BuildError(f"{path.relative_to(ROOT)}:{n}: [snip:{m.group(1)}] twice")
            open_tags.append((m.group(1), n))
            found[m.group(1)] = []
        elif SNIP_CLOSE.match(line):
            if not open_tags:
                raise BuildError(f"{path.relative_to(ROOT)}:{n}: [/snip] without [snip:…]")
            open_tags.pop()
        else:
            for tag, _ in open_tags:
                found[tag].append(line)
    if open_tags:
        tag, n = open_tags[-1]
        raise BuildError(f"{path.relative_to(ROOT)}:{n}: [snip:{tag}] is never closed")
    return {tag: textwrap.dedent("\n".join(body)).splitlines() for tag, body in found.items()}


def snip(args: list[str], used: Used) -> str:
    if len(args) not in (2, 3):
        raise BuildError("usage: {{ snip NN tag [file.cpp] }}")
    number, tag = args[0], args[1]
    path = step_dir(number) / (args[2] if len(args) == 3 else "server.cpp")
    if not path.exists():
        raise BuildError(f"{path.relative_to(ROOT)} does not exist")
    tags = snippets(path)
    if tag not in tags:
        raise BuildError(f"no [snip:{tag}] in {path.relative_to(ROOT)} "
                         f"(it has: {', '.join(sorted(tags)) or 'none'})")
    rel = str(path.relative_to(ROOT))
    used.snippets.append((rel, tag))
    return "```cpp\n" + "\n".join(tags[tag]) + "\n```\n" + \
        f'<div class="src">{rel} · [snip:{tag}]</div>'


# --------------------------------------------------------------------------
# Diffs: hunks of the generated docs/diffs/NN-MM.diff

def hunks(path: Path) -> list[list[str]]:
    out: list[list[str]] = []
    for line in path.read_text().splitlines():
        if line.startswith("@@"):
            out.append([line])
        elif out and not line.startswith(("--- ", "+++ ")):
            out[-1].append(line)
    return out


def change_blocks(hunk: list[str]) -> list[tuple[int, int]]:
    """[start, end) of each run of changed (+/-) lines in a hunk's body."""
    blocks, start = [], None
    for i, line in enumerate(hunk + [" "]):
        changed = line[:1] in ("+", "-")
        if changed and start is None:
            start = i
        elif not changed and start is not None:
            blocks.append((start, i))
            start = None
    return blocks


def diff(args: list[str], used: Used) -> str:
    """The changes of a generated diff that match a regex, each with `context`
    unchanged lines around it; `max` caps the lines shown."""
    if not args:
        raise BuildError("usage: {{ diff NN-MM [match=REGEX] [context=N] [max=N] }}")
    name = args[0]
    opts = dict(a.split("=", 1) for a in args[1:])
    path = ROOT / "docs" / "diffs" / f"{name}.diff"
    if not path.exists():
        raise BuildError(f"docs/diffs/{name}.diff does not exist (tools/mkdiff.sh makes it)")
    pattern = re.compile(opts.get("match", "."))
    context = int(opts.get("context", 1))
    body: list[str] = []
    for h in hunks(path):
        # A snippet tag is bookkeeping, not the lesson: keep it off the slide.
        lines = [line for line in h[1:] if "[snip:" not in line and "[/snip]" not in line]
        keep: set[int] = set()
        for start, end in change_blocks(lines):
            if all(BOILERPLATE.match(line) for line in lines[start:end]):
                continue  # the header block and program name change in every diff
            if any(pattern.search(line[1:]) for line in lines[start:end]):
                keep.update(range(max(0, start - context), min(len(lines), end + context)))
        last = None
        for i in sorted(keep):
            if last is None or i != last + 1:
                body.append("@@ …")
            body.append(lines[i])
            last = i
    if not body:
        raise BuildError(f"docs/diffs/{name}.diff: no change matches {opts.get('match')!r}")
    limit = int(opts.get("max", 0))
    if limit and len(body) > limit:
        more = len(body) - limit
        body = body[:limit] + [f"@@ … {more} more lines in docs/diffs/{name}.diff"]
    used.diffs.append(name)
    added = sum(1 for line in hunks_text(path) if line.startswith("+"))
    removed = sum(1 for line in hunks_text(path) if line.startswith("-"))
    return "```diff\n" + "\n".join(body) + "\n```\n" + \
        f'<div class="src">docs/diffs/{name}.diff: +{added} −{removed} in all</div>'


DEFINITION = re.compile(r"^(?:(?:class|struct) (\w+)|(?!return\b)[\w:<>,&*]+(?: [\w:<>,&*]+)* [*&]?(\w+)\()")


def definitions(lines: list[str]) -> list[str | None]:
    """For each line of a source file, the top-level function or class it
    belongs to (None between them): the nearest definition line above it at
    column 0, unless a closing brace at column 0 came first."""
    owner, out = None, []
    for line in lines:
        if m := DEFINITION.match(line):
            owner = m.group(1) or m.group(2)
        out.append(owner)
        if line.startswith("}") or (m and line.rstrip().endswith(("}", "};"))):
            owner = None
    return out


def diffstat(args: list[str], used: Used) -> str:
    """For a diff too big for a slide: the top-level functions and classes it
    removes, adds and changes (from the two files it compares), and its size."""
    name = args[0]
    path = ROOT / "docs" / "diffs" / f"{name}.diff"
    if not path.exists():
        raise BuildError(f"docs/diffs/{name}.diff does not exist (tools/mkdiff.sh makes it)")
    text = path.read_text().splitlines()
    files = [ROOT / line.split()[1] for line in text[:2]]
    if len(files) != 2 or not all(f.exists() for f in files):
        raise BuildError(f"docs/diffs/{name}.diff: cannot find the files it compares")
    old, new = (f.read_text().splitlines() for f in files)
    old_owner, new_owner = definitions(old), definitions(new)
    changed: list[str] = []
    a = b = 0
    for line in text[2:]:
        if m := re.match(r"@@ -(\d+)(?:,\d+)? \+(\d+)", line):
            a, b = int(m.group(1)) - 1, int(m.group(2)) - 1
            continue
        if line.startswith("-"):
            owner, a = old_owner[a], a + 1
        elif line.startswith("+"):
            owner, b = new_owner[b], b + 1
        else:
            a, b = a + 1, b + 1
            continue
        if owner and owner != "main" and owner not in changed:
            changed.append(owner)
    before = [n for n in dict.fromkeys(o for o in old_owner if o)]
    after = [n for n in dict.fromkeys(o for o in new_owner if o)]
    removed = [n for n in before if n not in after]
    added = [n for n in after if n not in before]
    changed = [n for n in changed if n in before and n in after]
    plus = sum(1 for line in text[2:] if line.startswith("+"))
    minus = sum(1 for line in text[2:] if line.startswith("-"))
    used.diffs.append(name)

    def names(items: list[str]) -> str:
        return ", ".join(f"`{n}`" for n in items) or "—"

    return (f"| lines | +{plus} −{minus} in docs/diffs/{name}.diff |\n|---|---|\n"
            f"| **removed** | {names(removed)} |\n| **added** | {names(added)} |\n"
            f"| **changed** | {names(changed)} |")


def hunks_text(path: Path) -> list[str]:
    return [line for h in hunks(path) for line in h[1:]]


# --------------------------------------------------------------------------
# A step's own words: the header block of server.cpp, and its README

def header(number: str) -> tuple[Path, dict[str, str]]:
    """`// Step 06 — title.` and the Adds / Why / Costs / Observe lines."""
    path = step_dir(number) / "server.cpp"
    lines = path.read_text().splitlines()[:5]
    m = re.match(r"// Step \d\d — (.*?)\.?$", lines[0]) if lines else None
    if not m:
        raise BuildError(f"{path.relative_to(ROOT)}: no `// Step NN — …` header")
    words = {"Title": m.group(1)}
    for line in lines[1:]:
        if w := re.match(r"// (\w+):\s+(.*)$", line):
            words[w.group(1)] = w.group(2)
    return path, words


def code_spans(text: str) -> str:
    """Header prose names calls, flags and errnos: set those in code type."""
    token = r"(?<![\w`])(\w+\(\)|EPOLL\w+|SO_\w+|FD_SETSIZE|EAGAIN|EINTR|--[a-z][\w-]*|/\w+)(?![\w`])"
    return re.sub(token, r"`\1`", text)


def card(args: list[str], used: Used) -> str:
    path, words = header(args[0])
    rows = []
    for word in ("Adds", "Why", "Costs"):
        if word not in words:
            raise BuildError(f"{path.relative_to(ROOT)}: no `// {word}:` header line")
        rows.append(f"| **{word}** | {code_spans(words[word])} |")
    used.docs.append(str(path.relative_to(ROOT)))
    return "| | |\n|---|---|\n" + "\n".join(rows)


def ladder(args: list[str], used: Used) -> str:
    """One row per step directory: the ladder is whatever steps/ holds."""
    rows = []
    for path in sorted((ROOT / "steps").glob("[0-9][0-9]-*/server.cpp")):
        number = path.parent.name[:2]
        _, words = header(number)
        rows.append(f"| **{number}** | {words['Title']} | {code_spans(words.get('Adds', ''))} |")
    if not rows:
        raise BuildError("no steps/NN-*/server.cpp")
    return "| step | model | adds |\n|---|---|---|\n" + "\n".join(rows)


def readme(number: str) -> tuple[Path, str]:
    path = step_dir(number) / "README.md"
    if not path.exists():
        raise BuildError(f"{path.relative_to(ROOT)} does not exist")
    return path, path.read_text()


def diagram(args: list[str], used: Used) -> str:
    path, text = readme(args[0])
    m = re.search(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    if not m:
        raise BuildError(f"{path.relative_to(ROOT)} has no ``` diagram")
    used.docs.append(str(path.relative_to(ROOT)))
    return "```text\n" + m.group(1) + "```"


def tries(args: list[str], used: Used) -> str:
    """The numbered exercises under the README's `## Try`."""
    path, text = readme(args[0])
    section = text.split("## Try", 1)
    if len(section) != 2:
        raise BuildError(f"{path.relative_to(ROOT)} has no ## Try section")
    body = re.split(r"^#|^Next:", section[1], maxsplit=1, flags=re.M)[0].strip()
    if not re.search(r"^1\. ", body, re.M):
        raise BuildError(f"{path.relative_to(ROOT)}: ## Try has no numbered list")
    used.docs.append(str(path.relative_to(ROOT)))
    return body


def head(args: list[str], used: Used) -> str:
    """A file's leading comment block: where a file says what it is for."""
    if len(args) != 2:
        raise BuildError("usage: {{ head NN file }}")
    path = step_dir(args[0]) / args[1]
    if not path.exists():
        raise BuildError(f"{path.relative_to(ROOT)} does not exist")
    block = []
    for line in path.read_text().splitlines():
        if not line.startswith("//"):
            break
        block.append(line)
    if not block:
        raise BuildError(f"{path.relative_to(ROOT)} does not start with a comment")
    rel = str(path.relative_to(ROOT))
    used.snippets.append((rel, "head"))
    return "```cpp\n" + "\n".join(block) + "\n```\n" + f'<div class="src">{rel}</div>'


def observe(args: list[str], used: Used) -> str:
    path, words = header(args[0])
    if "Observe" not in words:
        raise BuildError(f"{path.relative_to(ROOT)}: no `// Observe:` header line")
    commands = [c.strip() for c in words["Observe"].split(";") if c.strip()]
    return "\n".join(f"- `{c}`" for c in commands)


# --------------------------------------------------------------------------
# Figures, embedded so the HTML is one self-contained file

def plot(args: list[str], used: Used, figures: Path) -> str:
    name = args[0]
    opts = dict(a.split("=", 1) for a in args[1:])
    path = figures / f"{name}.png"
    if not path.exists():
        raise BuildError(f"{path} does not exist: run `make notebooks` (it plots results/*.csv)")
    data = base64.b64encode(path.read_bytes()).decode()
    size = f"w:{opts['w']}" if "w" in opts else ""
    used.figures.append(name)
    return f"![{size}](data:image/png;base64,{data})"


def assemble(template: Path, figures: Path, used: Used) -> str:
    out = []
    for n, line in enumerate(template.read_text().splitlines(), 1):
        m = DIRECTIVE.match(line)
        if not m:
            if "{{" in line:
                raise BuildError(f"{template.name}:{n}: a directive must be alone on its line")
            out.append(line)
            continue
        kind, args = m.group(1), m.group(2).split()
        if kind != "ladder" and not args:
            raise BuildError(f"{template.name}:{n}: {kind} needs arguments")
        try:
            if kind == "snip":
                out.append(snip(args, used))
            elif kind == "diff":
                out.append(diff(args, used))
            elif kind == "diffstat":
                out.append(diffstat(args, used))
            elif kind == "diagram":
                out.append(diagram(args, used))
            elif kind == "card":
                out.append(card(args, used))
            elif kind == "ladder":
                out.append(ladder(args, used))
            elif kind == "try":
                out.append(tries(args, used))
            elif kind == "head":
                out.append(head(args, used))
            elif kind == "observe":
                out.append(observe(args, used))
            elif kind == "plot":
                out.append(plot(args, used, figures))
            else:
                raise BuildError(f"unknown directive {kind!r}")
        except BuildError as e:
            raise BuildError(f"{template.name}:{n}: {e}") from None
    return "\n".join(out) + "\n"


def count_slides(markdown: str) -> int:
    """Slide separators (`---` lines outside code), less the front matter's two."""
    rulers, fenced = 0, False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif line.strip() == "---" and not fenced:
            rulers += 1
    return rulers - 1


def chromium() -> str | None:
    if path := os.environ.get("CHROME_PATH"):
        return path
    for name in CHROMIUM:
        if found := shutil.which(name):
            return found
    return None


def marp(markdown: Path, output: Path, pdf: bool) -> None:
    binary = SLIDES / "node_modules" / ".bin" / "marp"
    if not binary.exists():
        raise BuildError("Marp CLI is not installed: run `make slides-deps` "
                         "(npm ci in slides/, from package-lock.json)")
    argv = [str(binary), "--no-stdin", "--html", "--theme", str(SLIDES / "ladder.css"),
            str(markdown), "-o", str(output)]
    env = dict(os.environ)
    if pdf:
        argv[1:1] = ["--pdf", "--allow-local-files"]
        env["CHROME_PATH"] = chromium() or ""
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode != 0 or not output.exists():
        raise BuildError(f"marp failed ({r.returncode}):\n{r.stdout}{r.stderr}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--template", type=Path, default=SLIDES / "deck.md")
    ap.add_argument("--figures", type=Path,
                    default=Path(os.environ.get("LADDER_FIGURES", ROOT / "results" / "figures")))
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "slides")
    ap.add_argument("--no-pdf", action="store_true", help="HTML only, even with Chromium")
    ap.add_argument("--no-render", action="store_true", help="assemble the Markdown only")
    args = ap.parse_args(argv[1:])
    used = Used()
    try:
        text = assemble(args.template, args.figures, used)
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.template.stem if args.template.stem != "deck" else "ladder"
        md = args.out / f"{stem}.md"
        md.write_text(text)
        print(f"slides: {md}: {count_slides(text)} slides, {len(used.snippets)} snippets, "
              f"{len(used.diffs)} diffs, {len(used.figures)} figures")
        if args.no_render:
            return 0
        html = md.with_suffix(".html")
        marp(md, html, pdf=False)
        print(f"slides: {html}")
        if not args.no_pdf:
            if not chromium():
                print("slides: no Chromium, so no PDF (apt-get install chromium)")
            else:
                try:
                    marp(md, md.with_suffix(".pdf"), pdf=True)
                    print(f"slides: {md.with_suffix('.pdf')}")
                except BuildError as e:  # the HTML is the deck; the PDF is a copy
                    print(f"slides: no PDF: {str(e)[:500]}", file=sys.stderr)
    except BuildError as e:
        print(f"slides: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
