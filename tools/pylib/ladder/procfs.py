"""What /proc says about a server: CPU time, memory, threads, descriptors,
context switches — for one process, its whole process tree, or the machine.

Shared by the demos (tools/demo), the bench (tools/bench) and anyone who
wants a number the kernel already keeps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")  # the unit of every time in /proc/*/stat and /proc/stat


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict (Threads, VmRSS, VmHWM, voluntary_ctxt_switches…)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def threads(pid: int) -> int:
    return int(proc_status(pid)["Threads"])


def rss_kib(pid: int) -> int:
    return int(proc_status(pid)["VmRSS"].split()[0])


def peak_rss_kib(pid: int) -> int:
    """VmHWM: the most resident memory the process has had (shared by its threads)."""
    return int(proc_status(pid)["VmHWM"].split()[0])


def context_switches(pid: int) -> int:
    """Voluntary + involuntary switches of every live thread of the process.
    Threads that already ended are not counted: for a lifetime total, reap
    the process and read getrusage(RUSAGE_CHILDREN)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except FileNotFoundError:
            continue  # the thread ended while we looked
        for line in status.splitlines():
            if "ctxt_switches:" in line:
                total += int(line.split()[-1])
    return total


def children(pid: int) -> list[int]:
    """Child process ids (every thread's children)."""
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return kids


def descendants(pid: int) -> list[int]:
    """pid and every process below it (a fork-per-connection server, nginx's workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += children(p)
        except FileNotFoundError:
            continue  # exited while we walked
    return out


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces and parens)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the whole thread group, ended threads included."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu_seconds(pid: int) -> float:
    """CPU of pid and everything below it: live processes' own time plus the
    time of children they already reaped (cutime/cstime), each counted once."""
    total = 0
    for p in descendants(pid):
        try:
            fields = _stat_fields(p)
        except FileNotFoundError:
            continue
        total += sum(int(v) for v in fields[11:15])
    return total / TICK


def tree_user_system_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU of pid's live process tree, in clock ticks' worth
    of seconds (10 ms each): coarse, but the split that schedstat lacks."""
    user = system = 0
    for p in descendants(pid):
        try:
            fields = _stat_fields(p)
        except FileNotFoundError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / TICK, system / TICK


def tree_runtime_ns(pid: int) -> dict[int, int]:
    """{tid: nanoseconds on a CPU} for every live thread of pid's process tree,
    from /proc/PID/task/TID/schedstat: exact, where /proc/PID/stat counts in
    clock ticks (10 ms). Threads that ended are missing: compare the key sets."""
    out = {}
    for p in descendants(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/schedstat") as f:
                    out[int(tid)] = int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
    return out


def tree_tids(pid: int) -> set[int]:
    """Every live thread id in pid's process tree."""
    out = set()
    for p in descendants(pid):
        try:
            out.update(int(t) for t in os.listdir(f"/proc/{p}/task"))
        except FileNotFoundError:
            continue
    return out


def tree_threads(pid: int) -> int:
    """Kernel tasks (threads) in pid's process tree."""
    total = 0
    for p in descendants(pid):
        try:
            total += threads(p)
        except (FileNotFoundError, KeyError):
            continue
    return total


def tree_rss_kib(pid: int) -> int:
    """Resident memory summed over the process tree (shared pages count twice)."""
    total = 0
    for p in descendants(pid):
        try:
            total += rss_kib(p)
        except (FileNotFoundError, KeyError, IndexError):
            continue  # exited, or a zombie (no VmRSS line)
    return total


def fd_count(pid: int) -> int:
    """Open descriptors of pid's process tree."""
    total = 0
    for p in descendants(pid):
        try:
            total += len(os.listdir(f"/proc/{p}/fd"))
        except (FileNotFoundError, PermissionError):
            continue
    return total


def kernel_threads(prefix: str) -> list[int]:
    """Pids of kernel threads whose name starts with prefix (e.g. "ksoftirqd/")."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().startswith(prefix):
                    found.append(int(entry))
            except OSError:
                continue
    return found


@dataclass(frozen=True)
class MachineCpu:
    """The first line of /proc/stat, in seconds summed over every CPU."""

    busy: float   # user + nice + system + irq + softirq (guest time is inside user)
    idle: float   # idle + iowait
    steal: float  # time the hypervisor gave our vCPUs to someone else

    @property
    def total(self) -> float:
        return self.busy + self.idle + self.steal

    def __sub__(self, other: "MachineCpu") -> "MachineCpu":
        return MachineCpu(self.busy - other.busy, self.idle - other.idle,
                          self.steal - other.steal)


def machine_cpu() -> MachineCpu:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    values += [0] * (8 - len(values))
    user, nice, system, idle, iowait, irq, softirq, steal = values[:8]
    return MachineCpu((user + nice + system + irq + softirq) / TICK,
                      (idle + iowait) / TICK, steal / TICK)
