"""The step suite's machinery: which steps exist, what each one can do, a
Server that runs one, and a small raw-socket HTTP client.

Steps are discovered from the binaries (build/bin/step-NN, or $LADDER_BIN);
nothing here lists them. What a step can do is the [suite] section of its
steps/NN-name/step.toml (CAPS below): without one it is an ordinary
concurrent server. A known weakness is a `lacks` entry with its reason: every
test marked `claim(<name>)` then xfails strictly on that step, so the day the
weakness disappears the suite says so.

    pytest tests/steps -k "01 and waits"      one step, one lesson
    LADDER_STEPS=01,02 pytest tests/steps     only those steps
    LADDER_BIN=build-asan/bin LADDER_SANITIZER=asan pytest tests/steps
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Sanitized builds run several times slower: every bound grows with them.
SANITIZER = os.environ.get("LADDER_SANITIZER", "").strip()
SLOW = 4 if SANITIZER else 1
IO_TIMEOUT = 5.0 * SLOW      # any single wait on a socket
READY_TIMEOUT = 10.0 * SLOW  # from exec to "listening on"
STOP_TIMEOUT = 10.0 * SLOW   # from SIGTERM to exit (the server's own drain is ~2 s)
TEST_TIMEOUT = 60 * SLOW     # pytest-timeout backstop per test

SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")
STATS_KEYS = {"step", "mode", "accepted", "requests", "bytes_in", "bytes_out", "wakeups"}


# --------------------------------------------------------------------------
# What each step can do: the [suite] section of steps/NN-name/step.toml

@dataclasses.dataclass(frozen=True)
class Caps:
    per_conn: str | None = None  # "thread" / "process": one kernel task per connection
    loop: str | None = None      # the event loop's wait call: "select", "poll", "epoll-lt", ...
    fd_cap: int | None = None    # highest descriptor + 1 the loop can watch (select: FD_SETSIZE)
    args: tuple[str, ...] = ()   # extra command-line arguments
    workers: str | None = None   # N workers, one port: "herd" (07 --variant), "reuseport" (08)
    # Sleeps in read()/write() for its client (a thread or process each, no event loop):
    # no header or idle timeout, and an idle client holds its server until it leaves.
    blocking: bool = False
    # One thread runs the whole server (steps 03-06): no thread per anything.
    one_thread: bool = False
    # The arguments that run it with two loops (the hot-path tests count a
    # quiet second loop too).
    two_loops: tuple[str, ...] = ()
    # read() calls per keep-alive request: 1 where a short read ends the drain
    # (or one read per readiness, level-triggered), 2 where it reads on to EAGAIN.
    reads_per_request: int = 1
    # Arguments that make the binary say whether it can run here at all (step
    # 11: io_uring may be missing or forbidden): exit 0, or exit 1 with the
    # cause on stderr, and every test of the step is skipped with that cause.
    probe: tuple[str, ...] = ()
    # Known weaknesses: claim -> why the step cannot make it (xfail, strict).
    lacks: dict[str, str] = dataclasses.field(default_factory=dict)
    # Variants run as separate parameters, "NN-name": name -> that variant's Caps.
    variants: dict[str, "Caps"] = dataclasses.field(default_factory=dict)

    @property
    def concurrent(self) -> bool:
        """Serves a second client while the first is still connected."""
        return "concurrent" not in self.lacks

    @property
    def event_loop(self) -> bool:
        """One thread waits on many sockets (select/poll/epoll)."""
        return self.loop is not None

    @classmethod
    def from_section(cls, section: dict) -> "Caps":
        keys = {k: v for k, v in section.items() if k != "variants"}
        for key in ("args", "two_loops", "probe"):
            if key in keys:
                keys[key] = tuple(keys[key])
        if keys.get("loop") == "":  # a variant that has no event loop of the suite's kind
            keys["loop"] = None
        return cls(**keys, variants={name: cls.from_section(v)
                                     for name, v in steps.variants(section).items()})


sys.path.insert(0, str(ROOT / "tools" / "pylib"))
from ladder import steps  # noqa: E402
from ladder.server import dies_with_parent  # noqa: E402

# "NN" -> Caps, from every step's description. A step without a [suite]
# section is an ordinary concurrent server: the contract, echo and http tests.
CAPS: dict[str, Caps] = {n: Caps.from_section(s.suite) for n, s in steps.all_steps(ROOT).items()}
DEFAULT_CAPS = Caps()


@dataclasses.dataclass(frozen=True)
class Step:
    number: str           # "02"
    id: str               # "02" or "02-processes"
    binary: Path
    caps: Caps
    variant: str | None = None
    skip: str | None = None  # why it cannot run here (its probe failed)

    def __str__(self) -> str:
        return self.id


def bin_dir() -> Path:
    env = os.environ.get("LADDER_BIN")
    return Path(env).resolve() if env else ROOT / "build" / "bin"


def discover_steps() -> list[Step]:
    """Every build/bin/step-NN and its variants; $LADDER_STEPS="01,02" narrows
    to those numbers (-k "01" also matches ids like "501")."""
    only = {n.strip() for n in os.environ.get("LADDER_STEPS", "").split(",") if n.strip()}
    steps = []
    for binary in sorted(bin_dir().glob("step-[0-9][0-9]")):
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            continue
        number = binary.name.removeprefix("step-")
        if only and number not in only:
            continue
        caps = CAPS.get(number, DEFAULT_CAPS)
        skip = probe(binary, caps.probe)
        steps.append(Step(number, number, binary, caps, skip=skip))
        for name, vcaps in caps.variants.items():
            steps.append(Step(number, f"{number}-{name}", binary, vcaps, name, skip))
    return steps


def probe(binary: Path, args: tuple[str, ...]) -> str | None:
    """None when the step can run here; else why not, in its own words."""
    if not args:
        return None
    try:
        r = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{binary.name} {' '.join(args)}: {e}"
    if r.returncode == 0:
        return None
    return (r.stderr.strip().splitlines() or [f"{binary.name}: exit {r.returncode}"])[0]


STEPS = discover_steps()


def pytest_configure(config):
    if not STEPS and not config.option.collectonly:
        raise pytest.UsageError(f"no step binaries (step-NN) in {bin_dir()}: "
                                "build first (make build), or set LADDER_BIN")


def pytest_generate_tests(metafunc):
    """`step` is a module-scoped parameter over every discovered binary and
    variant, narrowed by `only(...)` / `per_binary`, with `claim(...)` xfails."""
    if "step" not in metafunc.fixturenames:
        return
    definition = metafunc.definition
    steps = STEPS
    if definition.get_closest_marker("per_binary"):
        steps = [s for s in steps if s.variant is None]
    for mark in definition.iter_markers("only"):
        steps = [s for s in steps
                 if all(getattr(s.caps, k) == v for k, v in mark.kwargs.items())]
    claims = [m.args[0] for m in definition.iter_markers("claim")]
    params = []
    for s in steps:
        marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=s.caps.lacks[c])
                 for c in claims if c in s.caps.lacks]
        if s.skip:
            marks.append(pytest.mark.skip(reason=s.skip))
        params.append(pytest.param(s, id=s.id, marks=marks))
    metafunc.parametrize("step", params, scope="module")


def pytest_collection_modifyitems(items):
    if SLOW > 1:
        for item in items:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))


def pytest_report_header(config):
    names = ", ".join(s.id for s in STEPS) or "none"
    extra = f", sanitizer {SANITIZER} (timeouts x{SLOW})" if SANITIZER else ""
    return f"ladder: binaries in {bin_dir()}: {names}{extra}"


# --------------------------------------------------------------------------
# Running a step

@dataclasses.dataclass
class Stopped:
    rc: int
    stats: dict | None   # the JSON line printed at exit, parsed
    stderr: str
    stdout_lines: list[str]


def thread_stacks(pid: int) -> str:
    """Every thread's stack of a live process, from gdb when it is installed
    (for a server that does not stop: where is it waiting?)."""
    if not shutil.which("gdb"):
        return "(install gdb to see the threads' stacks here)"
    try:
        r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex",
                            "thread apply all bt 12"], capture_output=True, text=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"(gdb: {e})"
    return "\n".join(line for line in r.stdout.splitlines()
                     if line.startswith(("Thread", "#"))) or r.stderr[-2000:]


class Server:
    """One step binary on --port 0. start() waits for the ready line; stop()
    signals it and returns (rc, stats, stderr); kill() always cleans up,
    children included (the server runs in its own process group)."""

    def __init__(self, step: Step, mode: str = "http", extra: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, wrapper: tuple[str, ...] = ()):
        self.step = step
        self.mode = mode
        # wrapper: a command that runs the server (strace ...); env: added to ours.
        self.argv = [*wrapper, str(step.binary), "--port", "0", "--mode", mode,
                     *step.caps.args, *extra]
        self.env = {**os.environ, **env} if env else None
        self.proc: subprocess.Popen | None = None
        self.host = ""
        self.port = 0
        self._lines: list[str] = []
        self._stdout_eof = False
        self._err = bytearray()
        self._cond = threading.Condition()
        self._readers: list[threading.Thread] = []

    # -- life cycle

    def start(self) -> "Server":
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True, env=self.env,
                                     preexec_fn=dies_with_parent)  # a killed pytest leaves none
        for target in (self._read_stdout, self._read_stderr):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._readers.append(t)
        if not self.wait_lines(1, READY_TIMEOUT):
            self.kill()
            raise AssertionError(f"{self}: no ready line within {READY_TIMEOUT:.0f}s; "
                                 f"rc={self.proc.returncode} stderr:\n{self.stderr}")
        line = self.stdout_lines[0]
        m = re.fullmatch(r"listening on (\S+):(\d+)", line)
        if not m:
            self.kill()
            raise AssertionError(f"{self}: bad ready line {line!r}; stderr:\n{self.stderr}")
        self.host = m.group(1).strip("[]")
        self.port = int(m.group(2))
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> Stopped:
        if self.alive():
            os.kill(self.pid, sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stacks = thread_stacks(self.pid)
            self.kill()
            raise AssertionError(f"{self}: still running {timeout:.0f}s after "
                                 f"{signal.Signals(sig).name}; stderr:\n{self.stderr}"
                                 f"\nwhere its threads were:\n{stacks}")
        self._join_readers()
        lines = self.stdout_lines
        stats = None
        if len(lines) == 2:
            try:
                stats = json.loads(lines[1])
            except ValueError:
                pass
        return Stopped(rc, stats, self.stderr, lines)

    def kill(self) -> None:
        """Never leaves a process behind: SIGKILL to the whole group."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(READY_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        self._join_readers()
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def check_sanitizer(self) -> None:
        text = self.stderr
        for pattern in SANITIZER_REPORTS:
            at = text.find(pattern)
            if at >= 0:
                raise AssertionError(f"{self}: sanitizer report on stderr:\n"
                                     f"{text[max(0, at - 200):at + 3000]}")

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
        self.check_sanitizer()

    def __str__(self) -> str:
        return f"step {self.step.id} ({self.mode})"

    # -- output

    @property
    def stdout_lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    @property
    def stderr(self) -> str:
        with self._cond:
            return self._err.decode(errors="replace")

    def wait_lines(self, n: int, timeout: float) -> bool:
        """True once stdout has n lines; False on timeout or EOF before that."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._lines) < n and not self._stdout_eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return len(self._lines) >= n

    def _read_stdout(self) -> None:
        try:
            for raw in iter(self.proc.stdout.readline, b""):
                with self._cond:
                    self._lines.append(raw.decode(errors="replace").rstrip("\n"))
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self._stdout_eof = True
                self._cond.notify_all()

    def _read_stderr(self) -> None:
        fd = self.proc.stderr.fileno()
        try:
            while chunk := os.read(fd, 65536):
                with self._cond:
                    self._err += chunk
        except (OSError, ValueError):
            pass

    def _join_readers(self) -> None:
        for t in self._readers:
            t.join(IO_TIMEOUT)


class SharedServer:
    """One server per (module, step, mode), restarted if a test killed it so
    that one crash is reported by the test that caused it, not by the rest."""

    def __init__(self, step: Step, mode: str):
        self.step, self.mode = step, mode
        self.server: Server | None = None

    def get(self) -> Server:
        if self.server is None or not self.server.alive():
            if self.server is not None:
                self.server.kill()
            self.server = Server(self.step, self.mode).start()
        return self.server

    def close(self) -> None:
        if self.server is None:
            return
        s = self.server
        try:
            if s.alive():
                stopped = s.stop()
                assert stopped.rc == 0, f"{s}: exit {stopped.rc} on SIGTERM:\n{stopped.stderr}"
                assert stopped.stats is not None, f"{s}: no stats line: {stopped.stdout_lines}"
        finally:
            s.kill()
            s.check_sanitizer()


def _shared(request, step, mode):
    shared = SharedServer(step, mode)
    request.addfinalizer(shared.close)
    return shared


@pytest.fixture(scope="module")
def _shared_http(request, step):
    return _shared(request, step, "http")


@pytest.fixture(scope="module")
def _shared_echo(request, step):
    return _shared(request, step, "echo")


def _use(shared: SharedServer):
    server = shared.get()
    yield server
    if not server.alive():
        pytest.fail(f"{server} died during this test: rc={server.proc.returncode}\n"
                    f"{server.stderr[-3000:]}")
    try:
        server.check_sanitizer()
    except AssertionError:
        server.kill()  # the next test gets a fresh server: one report, one error
        shared.server = None
        raise


@pytest.fixture
def http_server(_shared_http):
    """A running http-mode server shared by the module's tests (close every
    connection you open: step 01 serves one client at a time)."""
    yield from _use(_shared_http)


@pytest.fixture
def echo_server(_shared_echo):
    yield from _use(_shared_echo)


@pytest.fixture(params=["http", "echo"])
def mode(request):
    """Both protocols, for tests that hold in either."""
    return request.param


@pytest.fixture
def server(step, mode, request):
    """The module's shared server of the test's `mode`."""
    yield request.getfixturevalue(f"{mode}_server")


@pytest.fixture
def start_server(step):
    """Factory for a server of one's own: start_server(mode="http", *extra,
    env=None, wrapper=()) (see Server)."""
    servers: list[Server] = []

    def start(mode: str = "http", *extra: str, **kw) -> Server:
        s = Server(step, mode, extra, **kw)
        servers.append(s)
        return s.start()

    yield start
    for s in servers:
        s.kill()
    for s in servers:
        s.check_sanitizer()


def lowest_free_fd(pid: int) -> int:
    """The descriptor the server's next open would get: an RLIMIT_NOFILE of
    this leaves it no room at all (the limit bounds numbers, not a count)."""
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    return min(set(range(len(used) + 1)) - used)


def run_binary(step: Step, *args: str,
               timeout: float = READY_TIMEOUT) -> subprocess.CompletedProcess:
    """Runs a binary that is expected to exit by itself (--help, bad flags)."""
    proc = subprocess.Popen([str(step.binary), *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"step-{step.number} {' '.join(args)}: still running after "
                             f"{timeout:.0f}s")
    return subprocess.CompletedProcess(proc.args, proc.returncode,
                                       out.decode(errors="replace"), err.decode(errors="replace"))


# --------------------------------------------------------------------------
# A raw-socket client

NO_BODY_STATUSES = {204, 304}


@dataclasses.dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]  # names lower-cased, in order
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        assert len(values) <= 1, f"header {name} appears {len(values)} times: {values}"
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def closes(self) -> bool:
        return "close" in (self.header("connection") or "").lower()


def request_bytes(method: str, path: str, body: bytes | None = None,
                  headers: list[tuple[str, str]] | None = None,
                  version: str = "HTTP/1.1", host: bool = True) -> bytes:
    """A well-formed request; Host (HTTP/1.1) and Content-Length (when there
    is a body) are added unless `headers` already has them."""
    headers = list(headers or [])
    names = {k.lower() for k, _ in headers}
    if host and version == "HTTP/1.1" and "host" not in names:
        headers.insert(0, ("Host", "ladder.test"))
    if body is not None and "content-length" not in names:
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode() + b"\r\n" + (body or b"")


class Client:
    """A TCP client whose every wait is bounded. A timeout is an
    AssertionError (the server did not answer), a reset reads as EOF."""

    def __init__(self, address: tuple[str, int], timeout: float = IO_TIMEOUT,
                 rcvbuf: int | None = None, connect: bool = True):
        self.address = address
        self.timeout = timeout
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if rcvbuf is not None:  # before connect: it sets the window the peer sees
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.buf = bytearray()
        self.eof = False
        self.was_reset = False
        self.received = 0  # bytes read from the socket so far
        if connect:
            self.sock.connect(address)

    # -- plumbing

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Close with SO_LINGER 0: the peer gets an RST, not a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def _recv(self, deadline: float, what: str) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}; have {bytes(self.buf[:300])!r}")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 16)
        except socket.timeout:
            raise AssertionError(f"nothing within {self.timeout:.1f}s while waiting for "
                                 f"{what}; have {bytes(self.buf[:300])!r}") from None
        except ConnectionResetError:
            self.was_reset = True
            chunk = b""
        if not chunk:
            self.eof = True
        self.received += len(chunk)
        return chunk

    def readable_within(self, seconds: float) -> bool:
        """Whether anything (data or EOF) arrives within `seconds`."""
        if self.buf or self.eof:
            return True
        r, _, _ = select.select([self.sock], [], [], seconds)
        return bool(r)

    def read_exactly(self, n: int, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            chunk = self._recv(deadline, f"{n} bytes")
            if not chunk:
                raise AssertionError(f"connection closed after {len(self.buf)} of {n} bytes")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until_closed(self, timeout: float | None = None) -> bytes:
        """Everything that arrives until the server closes (FIN or RST)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.eof:
            self.buf += self._recv(deadline, "the server to close the connection")
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def expect_closed(self, timeout: float | None = None) -> None:
        extra = self.read_until_closed(timeout)
        assert extra == b"", f"bytes after the last response: {extra[:300]!r}"

    # -- HTTP

    def read_response(self, timeout: float | None = None, head: bool = False) -> Response:
        """The next response; `head`: it answers a HEAD (no body follows)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            chunk = self._recv(deadline, "a response")
            if not chunk:
                raise AssertionError(f"connection closed before a complete response; "
                                     f"got {bytes(self.buf[:300])!r}")
            self.buf += chunk
        text = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end + 4]
        status_line, *lines = text.split("\r\n")
        m = re.fullmatch(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?", status_line)
        assert m, f"bad status line {status_line!r}"
        headers = []
        for line in lines:
            name, colon, value = line.partition(":")
            assert colon and name and name == name.strip(), f"bad header line {line!r}"
            headers.append((name.lower(), value.strip()))
        resp = Response(m.group(1), int(m.group(2)), m.group(3) or "", headers, b"")
        length = resp.header("content-length")
        if head:
            pass
        elif length is not None:
            assert length.isdigit(), f"bad Content-Length {length!r}"
            resp.body = self.read_exactly(int(length), max(0.0, deadline - time.monotonic()))
        elif resp.status in NO_BODY_STATUSES or 100 <= resp.status < 200:
            pass
        else:  # framed by the close
            resp.body = self.read_until_closed(max(0.0, deadline - time.monotonic()))
        return resp

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: list[tuple[str, str]] | None = None,
                version: str = "HTTP/1.1") -> Response:
        self.send(request_bytes(method, path, body, headers, version))
        return self.read_response()

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)


# --------------------------------------------------------------------------
# Echo and /proc helpers

def random_chunks(rng: random.Random, total: int):
    """Offsets and sizes that cut `total` bytes into a random mix of tiny,
    segment-sized and large writes."""
    pos = 0
    while pos < total:
        kind = rng.random()
        if kind < 0.2:
            n = rng.randint(1, 8)
        elif kind < 0.6:
            n = rng.randint(9, 1460)
        else:
            n = rng.randint(1461, 65536)
        n = min(n, total - pos)
        yield pos, n
        pos += n


def echo_exchange(client: Client, data: bytes, seed: int, half_close: bool = False,
                  timeout: float | None = None) -> bytes:
    """Sends `data` from a thread in random fragments while this thread reads
    the echo (so neither side's buffers can deadlock the exchange). Returns
    what came back: len(data) bytes, or everything up to EOF if half_close."""
    rng = random.Random(seed)
    failure: list[BaseException] = []

    def sender():
        try:
            for pos, n in random_chunks(rng, len(data)):
                client.sock.sendall(data[pos:pos + n])
            if half_close:
                client.sock.shutdown(socket.SHUT_WR)
        except BaseException as e:  # reported by the reader
            failure.append(e)

    t = threading.Thread(target=sender, daemon=True)
    client.sock.settimeout(timeout or client.timeout)
    t.start()
    try:
        if half_close:
            got = client.read_until_closed(timeout)
        else:
            got = client.read_exactly(len(data), timeout)
    finally:
        t.join(timeout or client.timeout)
    assert not failure, f"sending failed: {failure[0]!r}"
    return got


def proc_threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError(f"no Threads: line for pid {pid}")


def proc_children(pid: int) -> dict[int, str]:
    """pid -> state letter of every child of `pid` (zombies are 'Z')."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            out[int(entry)] = fields[0]
    return out


# -- CPUs apart: the server on one, its load on the others (as the bench pins)

def cpus_apart() -> tuple[set[int] | None, set[int] | None]:
    """(the server's CPU, the load's CPUs), as the bench pins them; on one
    CPU (None, None): nothing is pinned."""
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, set(cpus[1:])) if len(cpus) >= 2 else (None, None)


def pin_process(pid: int, cpus: set[int] | None) -> None:
    """Every thread of `pid` onto `cpus` (a thread started later inherits it)."""
    if not cpus:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:
            pass  # a thread that just ended


def on_cpus(cpus: set[int] | None):
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def wait_for(probe, want, timeout: float = IO_TIMEOUT, every: float = 0.02):
    """Polls probe() until it returns `want` (or want(value) is true);
    returns the last value either way, for the caller's assertion."""
    test = want if callable(want) else (lambda v: v == want)
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if test(value) or time.monotonic() >= deadline:
            return value
        time.sleep(every)
