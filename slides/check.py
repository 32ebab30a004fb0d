#!/usr/bin/env python3
"""Projects the rendered deck the way a room sees it, and measures it.

Opens build/slides/ladder.html in headless Chromium at 1280x720 (the size of
a Marp slide: one CSS pixel is one projector pixel), shows every slide in
turn, screenshots it to build/slides/png/NNN.png and measures it:

    height     how far down the slide its content reaches (more than 720: cut off)
    wide       code wider than its box (a line cut off at the right)
    font       the smallest text on it, in px (a room cannot read below 18)
    code_font  the smallest code, in px;   code_lines  the longest code block
    misaligned a code line whose characters are not all one width (ASCII art
               drawn with glyphs the monospace font lacks)
    empty_header  a table whose header row is empty

    slides/check.py [build/slides/ladder.html] [--png DIR] [--json]

Prints one line per slide that breaks a rule and a summary; exits 1 if any
does. tests/steps/test_notebooks_slides.py runs it. Chromium is Debian's
`chromium` (tools/deps.sh test); it runs with a fresh profile, no network
beyond loopback, and is driven over a pipe (--remote-debugging-pipe): no port.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1280, 720
MIN_FONT, MIN_CODE_FONT, MAX_CODE_LINES = 18, 20, 16
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
         f"--window-size={WIDTH},{HEIGHT}", "--remote-debugging-pipe"]

# Runs in the page, on the slide on screen: what check() reports for it.
MEASURE = r"""
(() => {
  const active = document.querySelector('svg.bespoke-marp-active');
  const sections = active ? [active.querySelector('section')] : [];
  const s = sections[0];
  if (!s) return null;
  const box = s.getBoundingClientRect();
  const scale = box.height / 720;
  let bottom = 0, font = 1e9, codeFont = 1e9, codeLines = 0, wide = [], misaligned = [];
  let smallest = '';
  for (const el of s.querySelectorAll('*')) {
    const cs = getComputedStyle(el);
    if (cs.display === 'none' || cs.visibility === 'hidden') continue;
    const r = el.getBoundingClientRect();
    if (r.height > 0) bottom = Math.max(bottom, (r.bottom - box.top) / scale);
    const text = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (text) {
      const px = parseFloat(cs.fontSize);
      if (px < font) { font = px; smallest = el.tagName + ': ' + el.textContent.trim().slice(0, 40); }
    }
  }
  const after = parseFloat(getComputedStyle(s, '::after').fontSize);
  const pageNumber = getComputedStyle(s, '::after').content;
  if (pageNumber && pageNumber !== 'none' && after < font) { font = after; smallest = 'page number'; }
  const canvas = document.createElement('canvas').getContext('2d');
  for (const pre of s.querySelectorAll('pre')) {
    const code = pre.querySelector('code') || pre;
    const cs = getComputedStyle(code);
    codeFont = Math.min(codeFont, parseFloat(cs.fontSize));
    const lines = code.textContent.replace(/\n$/, '').split('\n');
    codeLines = Math.max(codeLines, lines.length);
    if (pre.scrollWidth > pre.clientWidth + 1) wide.push(lines.reduce((a, b) => a.length > b.length ? a : b));
    canvas.font = cs.fontStyle + ' ' + cs.fontWeight + ' ' + cs.fontSize + ' ' + cs.fontFamily;
    const unit = canvas.measureText('M').width;
    for (const line of lines) {
      const chars = [...line].length;
      if (Math.abs(canvas.measureText(line).width - unit * chars) > 1.5) { misaligned.push(line); break; }
    }
  }
  const emptyHeader = [...s.querySelectorAll('thead tr')].filter(
    tr => ![...tr.children].some(c => c.textContent.trim())).length;
  return {height: Math.round(bottom), font: font === 1e9 ? null : font, smallest,
          code_font: codeFont === 1e9 ? null : codeFont, code_lines: codeLines,
          wide, misaligned, empty_header: emptyHeader,
          title: (s.querySelector('h1') || {textContent: ''}).textContent.trim()};
})()
"""


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return None


class Browser:
    """Chromium's DevTools protocol over --remote-debugging-pipe (fds 3 and 4)."""

    def __init__(self, binary: str, profile: Path):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        # The child reads commands on fd 3 and writes answers on fd 4: move the
        # pipe's ends out of the way first, so that neither is overwritten.
        high_r, high_w = os.dup(to_child_r) + 100, os.dup(from_child_w) + 100
        os.dup2(to_child_r, high_r)
        os.dup2(from_child_w, high_w)

        def fds():
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     preexec_fn=fds, pass_fds=(3, 4, high_r, high_w),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (high_r, high_w, high_r - 100, high_w - 100):
            os.close(fd)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._id = 0
        self.events: list[dict] = []

    def _read(self, timeout: float) -> dict:
        import select

        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            e = self._read(deadline - time.monotonic())
            if e.get("method") == method:
                return e
            self.events.append(e)
        raise TimeoutError(method)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)


def check(html: Path, png_dir: Path | None) -> list[dict]:
    """One dict per slide: its measures (see the module's docstring)."""
    binary = chromium_binary()
    if not binary:
        raise FileNotFoundError("no chromium: apt-get install chromium (tools/deps.sh test)")
    if png_dir:
        png_dir.mkdir(parents=True, exist_ok=True)
        for old in png_dir.glob("*.png"):
            old.unlink()
    with tempfile.TemporaryDirectory(prefix="ladder-chromium-") as profile:
        browser = Browser(binary, Path(profile))
        try:
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send("Target.attachToTarget",
                                   {"targetId": target, "flatten": True})["sessionId"]

            def cmd(method, params=None):
                return browser.send(method, params, session)

            cmd("Emulation.setDeviceMetricsOverride",
                {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
            cmd("Page.enable")
            cmd("Page.navigate", {"url": html.resolve().as_uri()})
            browser.wait_event("Page.loadEventFired")
            count = cmd("Runtime.evaluate", {
                "expression": "document.querySelectorAll('svg[data-marpit-svg]').length",
                "returnByValue": True})["result"]["value"]
            slides = []
            for n in range(1, count + 1):
                cmd("Runtime.evaluate", {"expression": f"location.hash = '#{n}'"})
                time.sleep(0.05)
                # Fonts loaded and the slide laid out before it is measured.
                cmd("Runtime.evaluate", {"expression": "document.fonts.ready.then(() => 1)",
                                         "awaitPromise": True})
                m = cmd("Runtime.evaluate", {"expression": MEASURE, "returnByValue": True})
                value = m["result"].get("value") or {}
                value["slide"] = n
                if png_dir:
                    shot = cmd("Page.captureScreenshot", {"format": "png"})
                    (png_dir / f"{n:03d}.png").write_bytes(base64.b64decode(shot["data"]))
                slides.append(value)
            return slides
        finally:
            browser.close()


def problems(slide: dict) -> list[str]:
    out = []
    if not slide.get("title") and slide.get("height") is None:
        return ["not measured"]
    if (slide.get("height") or 0) > HEIGHT:
        out.append(f"content {slide['height']} px tall (slide: {HEIGHT})")
    if slide.get("font") is not None and slide["font"] < MIN_FONT:
        out.append(f"text at {slide['font']:g} px ({slide.get('smallest')})")
    if slide.get("code_font") is not None and slide["code_font"] < MIN_CODE_FONT:
        out.append(f"code at {slide['code_font']:g} px")
    if slide.get("code_lines", 0) > MAX_CODE_LINES:
        out.append(f"{slide['code_lines']} lines of code")
    for line in slide.get("wide", []):
        out.append(f"code wider than the slide: {line.strip()[:60]!r}")
    for line in slide.get("misaligned", []):
        out.append(f"code not aligned (a glyph of another width): {line.strip()[:60]!r}")
    if slide.get("empty_header"):
        out.append("a table with an empty header row")
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("html", nargs="?", type=Path, default=ROOT / "build" / "slides" / "ladder.html")
    ap.add_argument("--png", type=Path, default=ROOT / "build" / "slides" / "png")
    ap.add_argument("--json", action="store_true", help="print every slide's measures")
    args = ap.parse_args(argv[1:])
    slides = check(args.html, args.png)
    bad = 0
    for s in slides:
        if args.json:
            print(json.dumps(s))
        for p in problems(s):
            bad += 1
            print(f"slide {s['slide']} ({s.get('title', '')[:40]}): {p}")
    tallest = max(slides, key=lambda s: s.get("height") or 0)
    fonts = [s["font"] for s in slides if s.get("font") is not None]
    print(f"slides: {len(slides)} at {WIDTH}x{HEIGHT}; tallest content {tallest.get('height')} px "
          f"(slide {tallest['slide']}); smallest text {min(fonts):g} px; "
          f"{bad} problem(s); screenshots in {args.png}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
