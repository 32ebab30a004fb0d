"""Guided demos: `make step-NN` runs run(demo) of steps/NN-name/demo.py.

The driver owns what every demo shares: starting and stopping servers,
printing a table, and pointing at what to read and try next. A step's
demo.py, in the step's own directory, holds only its scenario.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # clients.py, for the demos

from ladder.server import ROOT, Server, step_binaries, step_dirs  # noqa: E402
from quiet import Watch  # noqa: E402

BUSY = "the machine was busy: these numbers are unreliable, rerun"

BOLD = "\033[1m" if sys.stdout.isatty() else ""
RESET = "\033[0m" if sys.stdout.isatty() else ""


class Demo:
    def __init__(self, step: str):
        self.step = step
        self.started = time.monotonic()

    def title(self, text: str) -> None:
        print(f"\n{BOLD}Step {self.step} — {text}{RESET}\n")

    def say(self, text: str) -> None:
        body = text.lstrip("\n")
        print("\n" * (len(text) - len(body)) + f"  {body}", flush=True)

    @contextmanager
    def server(self, *args: str, step: str | None = None):
        """A step's server on a free port; stopped (SIGTERM) on the way out."""
        srv = Server(step or self.step, list(args)).start()
        self.say(f"started {' '.join([f'step-{srv.step}', *args])} on {srv.host}:{srv.port}")
        try:
            yield srv
        finally:
            if srv.proc and srv.proc.poll() is None:
                srv.stop()
            srv.kill()

    def busy(self, watch: Watch) -> None:
        """Instead of a claim the numbers cannot carry."""
        self.say(f"{BOLD}{BUSY}{RESET} ({watch.why()}).")

    def claim(self, holds: bool, watch: Watch, text: str, otherwise: str) -> None:
        """Prints `text` only if this run's own numbers show it; on a busy
        machine says so; otherwise says what the run did show."""
        if watch.busy:
            self.busy(watch)
        elif holds:
            self.say(text)
        else:
            self.say(otherwise)

    @staticmethod
    def out_dir() -> Path:
        """Where a demo may write: build/demo/, never results/ (the committed run)."""
        path = ROOT / "build" / "demo"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def table(self, headers: list[str], rows: list[list[object]]) -> None:
        cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
        line = "  +" + "+".join("-" * (w + 2) for w in widths) + "+"
        print(line)
        for n, row in enumerate(cells):
            print("  | " + " | ".join(c.rjust(w) if c[:1].isdigit() else c.ljust(w)
                                       for c, w in zip(row, widths)) + " |")
            if n == 0:
                print(line)
        print(line, flush=True)

    def bar(self, label: str, value: float, full: float, width: int = 40) -> None:
        filled = 0 if full <= 0 else round(width * min(value / full, 1.0))
        print(f"  {label:>12} {'#' * filled}{'.' * (width - filled)} {value:g}")

    def next(self, read: list[str], tries: list[str]) -> None:
        print(f"\n{BOLD}Read{RESET}")
        for item in read:
            print(f"  {item}")
        print(f"{BOLD}Try{RESET}")
        for item in tries:
            print(f"  {item}")
        print(f"\n  (demo took {time.monotonic() - self.started:.1f} s)")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: demo.py NN", file=sys.stderr)
        return 2
    step = argv[1]
    if step not in step_binaries():
        print(f"step-{step} is not built; known steps: {', '.join(step_dirs())}",
              file=sys.stderr)
        return 2
    path = step_dirs()[step] / "demo.py"
    if not path.is_file():
        print(f"step {step} has no guided demo yet; run `make serve-{step}` and read "
              f"{step_dirs()[step].relative_to(Path.cwd())}/README.md", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location(f"demo_{step}", path)
    scenario = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scenario)
    scenario.run(Demo(step))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
