"""Claims that exercises (exercises/, tests/exercises/) check and that no
other test here measures head-on. Each is an ordinary test of every step:
what an exercise's learner must get right, every step gets right."""

import os
import signal
import time

import pytest

from conftest import SLOW, Client

HELLO = b"Hello, World!\n"


@pytest.mark.per_binary
def test_stop_and_continue_while_idle_costs_nothing(start_server):
    """SIGSTOP then SIGCONT (Ctrl-Z and fg, or a debugger attaching) while
    the server waits for clients: epoll_wait returns -1 with EINTR even
    though no handler runs (signal(7)), and the loop must wait again, not
    fail. Every stop lands in the wait: nothing else is going on."""
    server = start_server("http")
    with Client(server.address) as quiet:
        assert quiet.get("/hello").body == HELLO
        for _ in range(10):
            time.sleep(0.02 * SLOW)  # back asleep in its wait
            os.killpg(server.pid, signal.SIGSTOP)
            time.sleep(0.01)
            os.killpg(server.pid, signal.SIGCONT)
        time.sleep(0.05 * SLOW)
        assert server.alive(), f"it did not survive a stop and a continue:\n{server.stderr}"
        assert quiet.get("/hello").body == HELLO
    stopped = server.stop()
    assert stopped.rc == 0, stopped.stderr
