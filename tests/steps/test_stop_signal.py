"""A stop signal is never lost: SIGTERM sent the moment the ready line is
read — when a signal handler would race the process's first blocking calls
— stops every step, 200 starts each, in every build (the sanitizer runs
included: a runtime that defers signal handlers is where a handler loses
them; the steps read SIGINT/SIGTERM through a signalfd instead)."""

import concurrent.futures
import os
import signal
import subprocess

import pytest

from conftest import READY_TIMEOUT, SLOW

pytestmark = pytest.mark.per_binary

STARTS = 200
AT_ONCE = 4          # starts in flight together (each mostly waits)
BOUND = 5.0 * SLOW   # seconds from SIGTERM to exit: an idle server stops at once


def start_and_stop(step) -> str | None:
    """One start, SIGTERM as soon as the ready line arrives. None when the
    server printed its stats line and exited 0 within the bound; else what
    went wrong."""
    proc = subprocess.Popen([str(step.binary), "--port", "0", *step.caps.args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        ready = proc.stdout.readline()
        if not ready.startswith(b"listening on "):
            return f"no ready line: {ready!r}"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=BOUND)
        lines = out.decode(errors="replace").splitlines()
        if proc.returncode != 0 or len(lines) != 1 or not lines[0].startswith("{"):
            return f"exit {proc.returncode}, stdout {lines}, stderr {err[-300:]!r}"
        return None
    except subprocess.TimeoutExpired:
        return f"still running {BOUND:.0f} s after SIGTERM"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(READY_TIMEOUT)


def test_sigterm_right_after_the_ready_line_always_stops_the_server(step):
    with concurrent.futures.ThreadPoolExecutor(AT_ONCE) as pool:
        failures = [f for f in pool.map(lambda _: start_and_stop(step), range(STARTS)) if f]
    assert not failures, f"{len(failures)} of {STARTS} starts: {failures[:3]}"
