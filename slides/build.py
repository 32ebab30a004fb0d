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


def snip(args: list[str], used: Used) -> list[str]:
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
    pages = paginate(tags[tag])
    return [code_block("cpp", page) +
            f'<div class="src">{rel} · [snip:{tag}]{part(i, len(pages))}</div>'
            for i, page in enumerate(pages)]


# --------------------------------------------------------------------------
# A slide holds at most MAX_LINES of code: at 20 px that fills 1280x720.
# Longer code goes on as many slides as it needs, cut at blank lines (the
# places the code's author chose to pause), never truncated.

MAX_LINES = 16


def paginate(lines: list[str], limit: int = MAX_LINES, cut=None) -> list[list[str]]:
    """Lines in the fewest pages of at most `limit`, of about equal length,
    each cut where the code pauses: best at a blank line (for diffs, an
    `@@ …` line), else after a statement or block at a shallow indent."""
    good = cut or (lambda line: not line.strip())

    def cost(lines: list[str], end: int) -> float:
        if good(lines[end]) or good(lines[end - 1]):
            return 0.0
        before, after = lines[end - 1].rstrip(), lines[end]
        indent = len(after) - len(after.lstrip())
        if before.endswith(("}", ";", "};")) or after.lstrip().startswith("//"):
            return 1.0 + indent / 4
        return 12.0 + indent / 4

    def trim(page: list[str]) -> list[str]:
        while page and not page[0].strip():
            page = page[1:]
        while page and not page[-1].strip():
            page = page[:-1]
        return page

    lines = trim(list(lines))
    n = len(lines)
    if n <= limit:
        return [lines] if lines else []
    best: tuple[float, list[int]] | None = None
    fewest = -(-n // limit)
    for k in (fewest, fewest + 1):  # one page more only if it cuts much better
        ideal = n / k
        # table[j][e]: the cheapest way to put lines[:e] on j pages, and its cuts.
        table: list[dict[int, tuple[float, list[int]]]] = [{0: (0.0, [])}]
        for j in range(1, k + 1):
            row: dict[int, tuple[float, list[int]]] = {}
            for start, (c0, cuts) in table[-1].items():
                for end in range(start + 1, min(start + limit, n) + 1):
                    if (end == n) != (j == k):
                        continue
                    c = c0 + (cost(lines, end) if end < n else 0) + ((end - start) - ideal) ** 2 / 8
                    if end not in row or c < row[end][0]:
                        row[end] = (c, cuts + [end])
            table.append(row)
        if n in table[-1]:
            c, cuts = table[-1][n]
            c += 4 * (k - fewest)
            if best is None or c < best[0]:
                best = (c, cuts)
    assert best is not None
    pages, start = [], 0
    for end in best[1]:
        pages.append(trim(lines[start:end]))
        start = end
    return [p for p in pages if p]


def part(i: int, n: int) -> str:
    return f" · {i + 1}/{n}" if n > 1 else ""


def code_block(lang: str, lines: list[str]) -> str:
    return f"```{lang}\n" + "\n".join(lines) + "\n```\n"


# --------------------------------------------------------------------------
# Diffs: hunks of the generated docs/diffs/NN-MM.diff

def hunks(path: Path, file: str | None = None) -> list[list[str]]:
    """The hunks of a generated diff; with `file`, only those of that file
    (its name in the step directory: "server.cpp")."""
    out: list[list[str]] = []
    current = ""
    for line in path.read_text().splitlines():
        if line.startswith("+++ "):
            current = line[4:].rsplit("/", 1)[-1]
        elif line.startswith("@@"):
            out.append([line] if file in (None, current) else [])
        elif out and out[-1] and not line.startswith("--- "):
            out[-1].append(line)
    return [h for h in out if h]


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


def diff_size(path: Path) -> tuple[int, int]:
    lines = [line for h in hunks(path) for line in h[1:]]
    return (sum(1 for line in lines if line.startswith("+")),
            sum(1 for line in lines if line.startswith("-")))


def diff_source(name: str) -> str:
    """Where a slide's diff comes from, linked (the HTML lives in build/slides/)."""
    added, removed = diff_size(ROOT / "docs" / "diffs" / f"{name}.diff")
    return (f'<div class="src">the lesson\'s hunk of <a href="../../docs/diffs/{name}.diff">'
            f"docs/diffs/{name}.diff</a> (+{added} −{removed} in all)</div>")


def diff(args: list[str], used: Used) -> list[str]:
    """The changes of a generated diff that match a regex, each with `context`
    unchanged lines around it: the lesson's hunk, not the whole diff. It fits
    `pages` slides (default 1) or the build stops: narrow the regex."""
    if not args:
        raise BuildError("usage: {{ diff NN-MM [match=REGEX] [file=NAME] [context=N] [pages=N] }}")
    name = args[0]
    opts = dict(a.split("=", 1) for a in args[1:])
    path = ROOT / "docs" / "diffs" / f"{name}.diff"
    if not path.exists():
        raise BuildError(f"docs/diffs/{name}.diff does not exist (tools/mkdiff.sh makes it)")
    pattern = re.compile(opts.get("match", "."))
    context = int(opts.get("context", 1))
    body: list[str] = []
    for h in hunks(path, opts.get("file")):
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
    pages = paginate(body, cut=lambda line: line.startswith("@@"))
    allowed = int(opts.get("pages", 1))
    if len(pages) > allowed:
        raise BuildError(f"docs/diffs/{name}.diff: {len(body)} lines match {opts.get('match')!r}, "
                         f"{len(pages)} slides of {MAX_LINES} (pages={allowed}): narrow the match")
    used.diffs.append(name)
    return [code_block("diff", dedent_diff(page)) + diff_source(name) for page in pages]


def dedent_diff(lines: list[str]) -> list[str]:
    """Removes the indent every line of a diff page shares, after its +/-/space."""
    bodies = [line[1:] for line in lines if not line.startswith("@@") and line[1:].strip()]
    cut = min((len(b) - len(b.lstrip(" ")) for b in bodies), default=0)
    return [line if line.startswith("@@") else line[:1] + line[1 + cut:] for line in lines]


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


def diff_files(text: list[str]) -> list[tuple[str, str, list[str]]]:
    """(old path, new path, that file's hunk lines) for each file of a diff."""
    out: list[tuple[str, str, list[str]]] = []
    for i, line in enumerate(text):
        if line.startswith("--- ") and i + 1 < len(text) and text[i + 1].startswith("+++ "):
            out.append((line[4:].split("\t")[0], text[i + 1][4:].split("\t")[0], []))
        elif out and not line.startswith("+++ "):
            out[-1][2].append(line)
    return out


def diffstat(args: list[str], used: Used) -> str:
    """For a diff too big for a slide: per file, the top-level functions and
    classes it removes, adds and changes, and its size."""
    name = args[0]
    path = ROOT / "docs" / "diffs" / f"{name}.diff"
    if not path.exists():
        raise BuildError(f"docs/diffs/{name}.diff does not exist (tools/mkdiff.sh makes it)")
    files = diff_files(path.read_text().splitlines())
    if not files:
        raise BuildError(f"docs/diffs/{name}.diff: cannot find the files it compares")
    rows, fresh = [], []
    for old_path, new_path, body in files:
        old = (ROOT / old_path).read_text().splitlines() if (ROOT / old_path).exists() else []
        new = (ROOT / new_path).read_text().splitlines() if (ROOT / new_path).exists() else []
        old_owner, new_owner = definitions(old), definitions(new)
        changed: list[str] = []
        a = b = 0
        for line in body:
            if m := re.match(r"@@ -(\d+)(?:,\d+)? \+(\d+)", line):
                a, b = max(int(m.group(1)) - 1, 0), max(int(m.group(2)) - 1, 0)
                continue
            if line.startswith("-"):
                owner, a = (old_owner[a] if a < len(old_owner) else None), a + 1
            elif line.startswith("+"):
                owner, b = (new_owner[b] if b < len(new_owner) else None), b + 1
            else:
                a, b = a + 1, b + 1
                continue
            if owner and owner != "main" and owner not in changed:
                changed.append(owner)
        before = list(dict.fromkeys(o for o in old_owner if o))
        after = list(dict.fromkeys(o for o in new_owner if o))
        plus = sum(1 for line in body if line.startswith("+"))
        minus = sum(1 for line in body if line.startswith("-"))
        if not old:
            fresh.append((new_path.rsplit("/", 1)[-1], plus))
            continue
        if not new:
            what = "removed"
        else:
            bits = [f"{label} {names(items)}" for label, items in (
                ("adds", [n for n in after if n not in before]),
                ("changes", [n for n in changed if n in before and n in after]),
                ("removes", [n for n in before if n not in after])) if items]
            what = "; ".join(bits) or "comments and declarations"
        rows.append(f"| `{new_path.rsplit('/', 1)[-1]}` | +{plus}&nbsp;−{minus} | {what} |")
    if fresh:
        rows.append(f"| new files | +{sum(n for _, n in fresh)}&nbsp;−0 | "
                    + ", ".join(f"`{f}` ({n} lines)" for f, n in fresh) + " |")
    used.diffs.append(name)
    return ("| file | lines | what changes |\n|---|---:|---|\n" + "\n".join(rows) + "\n\n" +
            diff_source(name).replace("the lesson's hunk of ", "the whole diff: "))


def names(items: list[str], most: int = 6) -> str:
    shown = ", ".join(f"`{n}`" for n in items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


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
    token = (r"(?<![\w`])(\w+\(\)|EPOLL\w+|SO_\w+|FD_SETSIZE|EAGAIN|EINTR|--[a-z][\w-]*|/\w+|"
             r"accept4|epoll_\w+|io_uring_\w+|co_await|eventfd|timerfd)(?![\w`])")
    return re.sub(token, r"`\1`", text)


def card(args: list[str], used: Used) -> str:
    """Adds / Why / Costs, one line each (a table would need a header row)."""
    path, words = header(args[0])
    rows = []
    for word in ("Adds", "Why", "Costs"):
        if word not in words:
            raise BuildError(f"{path.relative_to(ROOT)}: no `// {word}:` header line")
        rows.append(f"- **{word}** {code_spans(words[word])}")
    used.docs.append(str(path.relative_to(ROOT)))
    return '<div class="card">\n\n' + "\n".join(rows) + "\n\n</div>"


def code_size(step: Path) -> str:
    """A step's own code, counted from the tree: "server.cpp, 205 lines"."""
    files = sorted(p for p in step.iterdir() if p.suffix in (".cpp", ".h"))
    lines = sum(len(p.read_text().splitlines()) for p in files)
    return (f"{files[0].name}, {lines} lines" if len(files) == 1
            else f"{len(files)} files, {lines} lines")


def ladder(args: list[str], used: Used) -> str:
    """One row per step directory: the ladder is whatever steps/ holds."""
    rows = []
    for path in sorted((ROOT / "steps").glob("[0-9][0-9]-*/server.cpp")):
        number = path.parent.name[:2]
        _, words = header(number)
        rows.append(f"| **{number}** | {words['Title']} | {code_size(path.parent)} |")
    if not rows:
        raise BuildError("no steps/NN-*/server.cpp")
    return "| step | model | its own code |\n|---|---|---|\n" + "\n".join(rows)


def labs(args: list[str], used: Used) -> str:
    """One row per labs/NAME/ directory: its make target and its claim, the
    title line of its README ("# Lab NAME — claim"). `{{ labs 1/2 }}` and
    `{{ labs 2/2 }}` split the list over two slides, so a new lab lands on
    one of them and neither outgrows the slide."""
    rows = []
    paths = sorted((ROOT / "labs").glob("*/README.md"))
    if args:
        m = re.fullmatch(r"(\d+)/(\d+)", args[0])
        if len(args) != 1 or not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
            raise BuildError(f"labs takes nothing or PART/PARTS (1/2), not {' '.join(args)}")
        part, parts = int(m.group(1)), int(m.group(2))
        size = -(-len(paths) // parts)
        paths = paths[(part - 1) * size:part * size]
    for path in paths:
        first = path.read_text().splitlines()[0]
        claim = first.split("—", 1)[-1].strip() if "—" in first else first.lstrip("# ")
        rows.append(f"| `make lab-{path.parent.name}` | {claim} |")
        used.docs.append(str(path.relative_to(ROOT)))
    if not rows:
        raise BuildError("no labs/*/README.md")
    return "| lab | what it shows |\n|---|---|\n" + "\n".join(rows)


def readme(number: str) -> tuple[Path, str]:
    path = step_dir(number) / "README.md"
    if not path.exists():
        raise BuildError(f"{path.relative_to(ROOT)} does not exist")
    return path, path.read_text()


def diagram(args: list[str], used: Used) -> list[str]:
    """The README's first ``` block; a tall one goes on over two slides, cut
    at a blank line."""
    path, text = readme(args[0])
    m = re.search(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    if not m:
        raise BuildError(f"{path.relative_to(ROOT)} has no ``` diagram")
    used.docs.append(str(path.relative_to(ROOT)))
    return [code_block("text", page) for page in paginate(m.group(1).rstrip("\n").splitlines())]


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
    # Relative links point into the step's directory, not the slides'.
    body = re.sub(r"\]\((?!http|#)([^)]+)\)", lambda m: f"]({link(path.parent, m.group(1))})", body)
    return unwrap(body)


def link(base: Path, target: str) -> str:
    return "../../" + str((base / target).resolve().relative_to(ROOT))


def head(args: list[str], used: Used) -> list[str]:
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
    pages = paginate(block, cut=lambda line: line.strip() == "//")
    return [code_block("cpp", page) + f'<div class="src">{rel}{part(i, len(pages))}</div>'
            for i, page in enumerate(pages)]


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


# --------------------------------------------------------------------------
# Prose: Marp turns every newline of a paragraph into a line break, so a
# paragraph wrapped at 78 columns in the source would break there on the
# slide. unwrap() joins each paragraph (and list item) into one line.

BLOCK_START = re.compile(r"^\s*([-*+] |\d+\. |#|\||```|<|!\[|>|---\s*$)")


def unwrap(text: str) -> str:
    out: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            out.append(line)
            continue
        joinable = (not fenced and out and out[-1].strip() and line.strip()
                    and not BLOCK_START.match(line) and not out[-1].startswith(("```", "|", "<"))
                    and not out[-1].rstrip().endswith("-->")
                    and not DIRECTIVE.match(out[-1]) and not DIRECTIVE.match(line))
        if joinable:
            out[-1] = out[-1].rstrip() + " " + line.strip()
        else:
            out.append(line)
    return "\n".join(out)


def assemble(template: Path, figures: Path, used: Used) -> str:
    out: list[str] = []
    title, classes = "", []  # the current slide's heading and class directives
    text = template.read_text()
    if text.startswith("---\n"):  # the front matter is YAML: one key a line
        end = text.index("\n---\n", 4) + 5
        text = text[:end] + unwrap(text[end:])
    else:
        text = unwrap(text)
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip() == "---":
            title, classes = "", []
        elif line.startswith("# ") and not title:
            title = line[2:].strip()
        elif line.startswith("<!-- _class:"):
            classes.append(line)
        m = DIRECTIVE.match(line)
        if not m:
            if "{{" in line:
                raise BuildError(f"{template.name}: a directive must be alone on its line: {line}")
            out.append(line)
            continue
        kind, args = m.group(1), m.group(2).split()
        if kind not in ("ladder", "labs") and not args:
            raise BuildError(f"{template.name}: {kind} needs arguments: {line}")
        try:
            if kind == "snip":
                result = snip(args, used)
            elif kind == "diff":
                result = diff(args, used)
            elif kind == "diffstat":
                result = diffstat(args, used)
            elif kind == "diagram":
                result = diagram(args, used)
            elif kind == "card":
                result = card(args, used)
            elif kind == "ladder":
                result = ladder(args, used)
            elif kind == "labs":
                result = labs(args, used)
            elif kind == "try":
                result = tries(args, used)
            elif kind == "head":
                result = head(args, used)
            elif kind == "observe":
                result = observe(args, used)
            elif kind == "plot":
                result = plot(args, used, figures)
            else:
                raise BuildError(f"unknown directive {kind!r}")
        except BuildError as e:
            raise BuildError(f"{template.name}: {line.strip()}: {e}") from None
        if isinstance(result, str):
            out.append(result)
            continue
        # Code longer than a slide: the same heading on the next slides.
        for i, page in enumerate(result):
            if i:
                out += ["", "---", "", *classes, "", f"# {title} (continued)", ""]
            out.append(page)
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
