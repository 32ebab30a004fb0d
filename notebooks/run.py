#!/usr/bin/env python3
"""Executes the notebooks headless: `make notebooks`.

Each notebooks/NN-*.ipynb runs in a fresh kernel (cwd notebooks/, matplotlib's
Agg backend) and writes its figures through ladder_results.save(). The
executed copies go to build/notebooks/ (plus HTML when nbconvert is
installed); the notebooks in the tree stay without outputs.

    notebooks/run.py                    every notebook, results/ -> results/figures/
    notebooks/run.py 03-idle-scaling    only those
    LADDER_RESULTS=tests/fixtures/results LADDER_FIGURES=/tmp/f notebooks/run.py
"""

from __future__ import annotations

import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "build" / "notebooks"
TIMEOUT = 120  # seconds per cell: the notebooks only read CSV files and plot


def notebooks(names: list[str] | None = None) -> list[Path]:
    found = sorted(HERE.glob("[0-9][0-9]-*.ipynb"))
    if names:
        found = [p for p in found if any(p.stem.startswith(n.removesuffix(".ipynb"))
                                          for n in names)]
    return found


def execute(path: Path, out_dir: Path | None = OUT, env: dict | None = None) -> tuple[Path, float]:
    """Runs one notebook; raises nbclient's CellExecutionError with the failing
    cell and its traceback. Returns (executed copy, seconds)."""
    import nbformat
    from nbclient import NotebookClient

    os.environ.update(env or {})
    os.environ["MPLBACKEND"] = "Agg"
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # ipykernel's debugger chatter
    started = time.monotonic()
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    copy = path
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        copy = out_dir / path.name
        nbformat.write(nb, copy)
        try:
            from nbconvert import HTMLExporter
        except ImportError:
            pass
        else:
            html, _ = HTMLExporter().from_notebook_node(nb)
            copy.with_suffix(".html").write_text(html)
    return copy, time.monotonic() - started


def main(argv: list[str]) -> int:
    paths = notebooks(argv[1:])
    if not paths:
        print(f"no notebook matches {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))
    import ladder_results

    if not ladder_results.bench_csvs():
        print(f"notebooks: no bench CSV in {ladder_results.results_path()}: run `make bench` "
              f"first (or set LADDER_RESULTS)", file=sys.stderr)
        return 1
    failed = 0
    # One kernel per notebook, two at a time: the machines have two cores.
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        jobs = {p: pool.submit(execute, p) for p in paths}
        for path, job in jobs.items():
            try:
                copy, seconds = job.result()
                print(f"notebooks: {path.name} ran in {seconds:.1f} s -> "
                      f"{copy.relative_to(ROOT)}")
            except Exception as e:  # the cell that failed and its traceback
                failed += 1
                text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # the kernel's colours
                print(f"notebooks: {path.name} FAILED\n{text}", file=sys.stderr)
    figures = os.environ.get("LADDER_FIGURES", ROOT / "results" / "figures")
    print(f"notebooks: figures in {figures}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
