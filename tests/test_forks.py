"""A process forked from the server, and how the server learns that it has ended."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from greenroom.forks import Forked, ended, run_forked
from tests.forking import sleeping

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.usefixtures("sigchld_restored"),
]


def _wait_ended(forked: Forked, timeout: float) -> float:
    """Seconds until ``ended`` returned (``TimeoutError`` after ``timeout``)."""

    async def wait() -> float:
        started = time.monotonic()
        await asyncio.wait_for(ended(forked), timeout)
        return time.monotonic() - started

    return asyncio.run(wait())


def test_the_server_learns_when_the_child_has_ended_without_a_thread(tmp_path: Path) -> None:
    marker = tmp_path / "done"
    forked = run_forked("test work", sleeping(marker, 0.5))
    assert forked is not None and forked.pid != os.getpid()
    try:
        # Still running: waiting a little times out, and the event loop is left clean.
        with pytest.raises(TimeoutError):
            _wait_ended(forked, 0.1)
        assert not marker.exists()
        _wait_ended(forked, 30)
        assert marker.read_text() == str(forked.pid)  # its work done before it ended
        # Ended, it stays ended for every later waiter (a worker forked after it started).
        assert _wait_ended(forked, 5) < 1
    finally:
        os.close(forked.ended)


def test_several_tasks_may_wait_for_one_child(tmp_path: Path) -> None:
    """A plugin's task beside the catalog's refresh loop: an event loop keeps one reader per
    descriptor, and each waiter must still return."""
    forked = run_forked("test work", sleeping(tmp_path / "done", 0.3))
    assert forked is not None

    async def both() -> None:
        await asyncio.wait_for(asyncio.gather(ended(forked), ended(forked)), 30)

    try:
        asyncio.run(both())
    finally:
        os.close(forked.ended)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_a_child_whose_work_fails_ends_too_and_is_reaped(tmp_path: Path) -> None:
    marker = tmp_path / "done"
    forked = run_forked("test work", sleeping(marker, 0.1, fail=True))
    assert forked is not None
    _wait_ended(forked, 30)
    os.close(forked.ended)
    assert marker.exists()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{forked.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the parent reaps it on SIGCHLD: no zombie left
    assert not Path(f"/proc/{forked.pid}").exists()
