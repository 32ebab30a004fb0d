"""What the notebooks share: find the bench's CSV, read it, save figures.

The notebooks never start a server; they read what `make bench` wrote.

    results    $LADDER_RESULTS (a directory or one .csv), else results/
    which run  the newest bench CSV there, by its `date` column and then its
               file time: your own `make bench` if you ran one, otherwise the
               committed reference run
    figures    save() writes $LADDER_FIGURES/NAME.png, else results/figures/

The CSV's columns are the bench's (tools/bench/report.py, COLUMNS): one row
per server x scenario x client (x path, for the two loads of `mix-work`).
Numbers arrive as text; rows() turns the numeric ones into floats (None
when empty), and keeps the rest as text.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Columns that are text; every other column is a number (or empty).
TEXT = {"date", "machine", "kernel", "cpu", "compiler", "build_type", "commit", "pinning",
        "server", "step", "variant", "kind", "scenario", "mode", "client", "path", "loop",
        "error_kinds", "syscalls_top", "server_stats", "note"}
# A bench CSV has these; its -runs.csv companion (one row per run) does not.
BENCH_COLUMNS = {"server", "scenario", "client", "connections", "rps", "rps_min",
                 "cpu_us_per_req"}
# The idle-connection curve: scenario -> idle connections beside the 50 active.
IDLE_CURVE = {"http-c50": 0, "idle-100": 100, "idle-1k": 1000, "idle-5k": 5000,
              "idle-15k": 15000}


def _from_env(name: str, default: Path) -> Path:
    """A path from the environment; a relative one is taken from the kit's
    root (a notebook's kernel runs in notebooks/, `make` in the root)."""
    value = os.environ.get(name)
    if not value:
        return default
    path = Path(value)
    return path if path.is_absolute() else ROOT / path


def results_path() -> Path:
    return _from_env("LADDER_RESULTS", ROOT / "results")


def figures_dir() -> Path:
    path = _from_env("LADDER_FIGURES", ROOT / "results" / "figures")
    path.mkdir(parents=True, exist_ok=True)
    return path


def num(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return next(csv.reader(f), [])


def bench_csvs(where: Path | None = None) -> list[Path]:
    """Every bench CSV under `where`, oldest first."""
    where = where or results_path()
    if where.is_file():
        return [where]
    found = [p for p in where.glob("*.csv") if BENCH_COLUMNS <= set(_header(p))]

    def age(p: Path):
        with p.open(newline="") as f:
            first = next(csv.DictReader(f), {}) or {}
        return (first.get("date", ""), p.stat().st_mtime, p.name)

    return sorted(found, key=age)


@dataclass
class Results:
    path: Path
    rows: list[dict]

    @property
    def about(self) -> str:
        """One line for a figure: which run, on what machine."""
        r = self.rows[0] if self.rows else {}
        bits = [self.path.name, r.get("date", ""),
                f"{int(num(r.get('nproc')) or 0)} cores" if r.get("nproc") else "",
                r.get("kernel", ""), f"commit {r['commit']}" if r.get("commit") else ""]
        return " · ".join(b for b in bits if b)

    def select(self, scenario: str | None = None, client: str | None = "loadgen",
               path: str | None = None, kind: str | None = None, **match) -> list[dict]:
        """Rows matching every given field (None matches anything)."""
        out = []
        for r in self.rows:
            if scenario is not None and r["scenario"] != scenario:
                continue
            if client is not None and r["client"] != client:
                continue
            if path is not None and r["path"] != path:
                continue
            if kind is not None and r["kind"] != kind:
                continue
            if any(r.get(k) != v for k, v in match.items()):
                continue
            out.append(r)
        return sorted(out, key=order)

    def servers(self) -> list[str]:
        return sorted({r["server"] for r in self.rows}, key=lambda s: order({"server": s}))


def order(row: dict):
    """Steps first, by number and variant; then the reference peers."""
    server = row["server"]
    return (0, server) if server.startswith("step-") else (1, server)


def load(where: Path | None = None) -> Results:
    """The newest bench CSV (see the module's docstring)."""
    found = bench_csvs(where)
    if not found:
        raise FileNotFoundError(
            f"no bench CSV in {where or results_path()}: run `make bench`, or point "
            f"LADDER_RESULTS at a directory that has one")
    path = found[-1]
    with path.open(newline="") as f:
        rows = [{k: (v if k in TEXT else num(v)) for k, v in r.items()}
                for r in csv.DictReader(f)]
    return Results(path, rows)


def server_stats(row: dict) -> dict:
    """The server's own JSON stats at the end of the row's median run."""
    try:
        return json.loads(row.get("server_stats") or "{}")
    except json.JSONDecodeError:
        return {}


def herd(row: dict) -> dict | None:
    """Wasted wake-ups per connection and each worker's share, from the
    per-worker counters a step with workers prints (07, 08, 09)."""
    workers = server_stats(row).get("workers") or []
    conns = [w.get("connections", 0) for w in workers]
    total = sum(conns)
    if not workers or total == 0:
        return None
    wasted = sum(w.get("wasted_wakeups", 0) + w.get("silent_wakeups", 0) for w in workers)
    return {"server": row["server"], "variant": row.get("variant") or "default",
            "workers": len(workers), "connections": total,
            "wasted_per_connection": wasted / total,
            "shares": [c / total for c in conns],
            "fairness": total * total / (len(conns) * sum(c * c for c in conns))}


def label(server: str) -> str:
    """step-07-shared-lt -> 07 shared-lt; floor and nginx stay as they are."""
    if server.startswith("step-"):
        rest = server[len("step-"):]
        return rest.replace("-", " ", 1) if "-" in rest else rest
    return server


def save(fig, name: str) -> Path:
    """Writes the figure as NAME.png in the figures directory and shows that
    file in the notebook: the same picture in Jupyter, in the executed copies
    (`make notebooks` runs headless, with the Agg backend) and on the slides."""
    import matplotlib.pyplot as plt

    path = figures_dir() / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)  # shown once, below, not again by the inline backend
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        pass
    else:
        if get_ipython() is not None:
            display(Image(filename=str(path)))
    print(f"wrote {path}")
    return path


def errors(values: list[tuple[float | None, float | None, float | None]]):
    """[(median, min, max)] -> (medians, [below, above]) for matplotlib's yerr/xerr."""
    mid = [v[0] or 0.0 for v in values]
    below = [max(0.0, (v[0] or 0.0) - (v[1] if v[1] is not None else v[0] or 0.0))
             for v in values]
    above = [max(0.0, (v[2] if v[2] is not None else v[0] or 0.0) - (v[0] or 0.0))
             for v in values]
    return mid, [below, above]


# One colour per step, distinct from its neighbours; greys for the references.
# Twenty, so that a new step gets a colour of its own (tests/steps/test_one_place.py).
STEP_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#bcbd22", "#17becf", "#393b79", "#e6550d", "#31a354", "#843c39", "#7b4173",
                "#637939", "#3182bd", "#d6616b", "#ce6dbd", "#8ca252", "#fd8d3c"]
PEER_COLOURS = {"floor": "#b0b0b0", "nginx": "#505050"}


def colour(server: str) -> str:
    """The same colour for a step in every notebook (its variants share it)."""
    if server in PEER_COLOURS:
        return PEER_COLOURS[server]
    digits = server[len("step-"):len("step-") + 2]
    n = int(digits) if digits.isdigit() else 1
    return STEP_COLOURS[(n - 1) % len(STEP_COLOURS)]


def footer(fig, res: Results) -> None:
    """Which run a figure shows, in small print under it."""
    fig.text(0.01, 0.005, res.about, fontsize=7, color="grey", va="bottom")


def placeholder(name: str, res: Results, message: str) -> Path:
    """When the CSV lacks a scenario (a partial `make bench --scenarios …`),
    the figure says so instead of the notebook failing: slides stay buildable."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.8))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=14, wrap=True)
    footer(fig, res)
    return save(fig, name)
