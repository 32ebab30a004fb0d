"""Start a step binary on --port 0, wait for its ready line, stop it."""

from __future__ import annotations

import ctypes
import json
import os
import re
import select
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# The /proc helpers used to live here; ladder.procfs has them now.
from ladder.procfs import children, context_switches, proc_status, rss_kib, threads  # noqa: F401

ROOT = Path(__file__).resolve().parents[3]
READY = re.compile(r"^listening on (\S+):(\d+)$")

_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def dies_with_parent() -> None:
    """In the child, before exec: the kernel sends it SIGKILL when the thread
    that started it ends, so a demo, bench or soak that is killed leaves no
    server behind."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def bin_dir() -> Path:
    return Path(os.environ.get("LADDER_BIN", ROOT / "build" / "bin")).resolve()


def step_binaries() -> dict[str, Path]:
    """{"01": build/bin/step-01, ...} for every step binary that was built."""
    found = {}
    for path in sorted(bin_dir().glob("step-[0-9][0-9]")):
        if os.access(path, os.X_OK):
            found[path.name[len("step-"):]] = path
    return found


def step_dirs() -> dict[str, Path]:
    """{"01": steps/01-blocking, ...} from the source tree."""
    return {p.name[:2]: p for p in sorted((ROOT / "steps").glob("[0-9][0-9]-*")) if p.is_dir()}


@dataclass
class Stopped:
    code: int
    stats: dict | None
    stdout: str
    stderr: str


@dataclass
class Server:
    """A running step. Use as a context manager: it is always stopped."""

    step: str
    args: list[str] = field(default_factory=list)
    ready_timeout: float = 10.0
    binary: Path | None = None    # default: bin_dir()/step-NN (the bench also runs tools/floor)
    cpus: set[int] | None = None  # CPU affinity, set before exec so every thread inherits it
    host: str = ""
    port: int = 0
    proc: subprocess.Popen | None = None
    result: Stopped | None = None  # set by stop()
    _stderr_path: Path | None = None

    def start(self) -> "Server":
        binary = self.binary or bin_dir() / f"step-{self.step}"
        if not binary.exists():
            raise FileNotFoundError(f"{binary} is not built (make build)")
        argv = [str(binary), "--port", "0", *self.args]
        # stderr goes to a file: a chatty server can never block on a full pipe.
        fd, name = tempfile.mkstemp(prefix=f"{binary.name}-", suffix=".stderr")
        self._stderr_path = Path(name)
        cpus = self.cpus

        def setup() -> None:
            dies_with_parent()
            if cpus:
                os.sched_setaffinity(0, cpus)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=fd,
                                     stdin=subprocess.DEVNULL, text=True, preexec_fn=setup)
        os.close(fd)
        line = self._read_line(self.ready_timeout)
        match = READY.match(line.strip()) if line else None
        if not match:
            self.kill()
            raise RuntimeError(f"{self.name} did not print its ready line; "
                               f"got {line!r}; stderr: {self.stderr()[-2000:]}")
        self.host = match.group(1).strip("[]")
        self.port = int(match.group(2))
        return self

    def _read_line(self, timeout: float) -> str:
        assert self.proc and self.proc.stdout
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline() if ready else ""

    @property
    def name(self) -> str:
        return self.binary.name if self.binary else f"step-{self.step}"

    @property
    def pid(self) -> int:
        assert self.proc
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def stderr(self) -> str:
        if self._stderr_path and self._stderr_path.exists():
            return self._stderr_path.read_text(errors="replace")
        return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> Stopped:
        """Signal the server, wait for it, parse the stats line it prints."""
        assert self.proc
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"{self.name} did not exit within {timeout}s of "
                               f"signal {sig}")
        stats = None
        for line in out.splitlines():
            if line.startswith("{"):
                stats = json.loads(line)
        self.result = Stopped(self.proc.returncode, stats, out, self.stderr())
        self._cleanup()
        return self.result

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        if self._stderr_path:
            self._stderr_path.unlink(missing_ok=True)
            self._stderr_path = None

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
