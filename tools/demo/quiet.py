"""Was the machine quiet while a demo measured? The bench's rule
(tools/bench/measure.py): more than ~0.1 core of CPU used by processes that
are not ours, or more than ~2 % of the time stolen by the hypervisor, and
the numbers of that stretch say more about the neighbours than the server.

    with Watch() as w:
        ... measure ...
    if w.busy:
        demo.busy(w)      # "the machine was busy: these numbers are unreliable, rerun"
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from ladder import procfs  # noqa: E402

try:  # the bench's thresholds, so that demo and bench judge alike
    from measure import Config as _Config  # noqa: E402

    QUIET_CORES = _Config.__dataclass_fields__["quiet_cores"].default
    QUIET_STEAL = _Config.__dataclass_fields__["quiet_steal"].default
except Exception:  # measure.py needs nothing a demo lacks; this is a fallback
    QUIET_CORES, QUIET_STEAL = 0.1, 0.02


def own_cpu_seconds() -> float:
    """CPU of this demo and everything it started: the servers and load
    generators still running, and those that have exited."""
    t = os.times()
    return procfs.tree_cpu_seconds(os.getpid()) + t.children_user + t.children_system


class Watch:
    """Foreign CPU (in cores) and steal over the `with` block."""

    def __init__(self) -> None:
        self.foreign = 0.0
        self.steal = 0.0

    def __enter__(self) -> "Watch":
        self._m, self._own, self._t = procfs.machine_cpu(), own_cpu_seconds(), time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        m = procfs.machine_cpu() - self._m
        wall = max(time.monotonic() - self._t, 1e-3)
        self.foreign = max(0.0, (m.busy - (own_cpu_seconds() - self._own)) / wall)
        self.steal = m.steal / m.total if m.total > 0 else 0.0

    @property
    def busy(self) -> bool:
        return self.foreign > QUIET_CORES or self.steal > QUIET_STEAL

    def why(self) -> str:
        return (f"{self.foreign:.2f} cores used by other processes, "
                f"{self.steal * 100:.1f} % stolen by the hypervisor")


def wait_quiet(patience: float = 3.0, window: float = 0.25) -> bool:
    """Waits (at most `patience` s) for a quiet moment before measuring."""
    deadline = time.monotonic() + patience
    while True:
        with Watch() as w:
            time.sleep(window)
        if not w.busy or time.monotonic() >= deadline:
            return not w.busy
