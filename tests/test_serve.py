"""``greenroom serve --workers N`` as an operator runs it: real processes on a real port."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; gunicorn's workers are Unix only"
)

N = 40
SERVE = (sys.executable, "-m", "greenroom", "serve")


def _config(tmp_path: Path, database_url: str) -> Path:
    docs = [
        f"apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {{name: svc-{i}}}\n"
        f"spec: {{type: service, lifecycle: production, owner: team}}"
        for i in range(N)
    ]
    (tmp_path / "catalog.yaml").write_text("\n---\n".join(docs) + "\n")
    config = tmp_path / "app-config.yaml"
    config.write_text(
        f"""
backend:
  database: "{database_url}"
catalog:
  processingInterval: {{hours: 1}}
  rules:
    - allow: [Component, Location]
  locations:
    - {{type: file, target: {tmp_path / "catalog.yaml"}}}
"""
    )
    return config


def _children(pid: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(line) for line in found.split()}


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _served(port: int) -> int:
    try:
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/catalog/entities/by-query",
            params={"limit": 0},
            timeout=5,
        )
    except httpx.TransportError:
        return -1
    return int(response.json()["totalItems"]) if response.status_code == 200 else -1


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _start(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``serve --workers 2`` on a port the system picks; the master and that port."""
    with log.open("wb") as out:
        master = subprocess.Popen(
            [*SERVE, "-c", str(config), "--port", "0", "--workers", "2"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    found: list[int] = []

    def listening() -> bool:
        assert master.poll() is None, log.read_text()
        match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log.read_text())
        if match:
            found.append(int(match.group(1)))
        return bool(found)

    _wait(listening, "the master to listen")
    return master, found[0]


def _gone(pids: set[int]) -> bool:
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_workers_are_forked_replaced_when_killed_and_stopped_with_the_master(
    database_url: str, tmp_path: Path, stop: signal.Signals
) -> None:
    """Two workers forked by one master (they start with what it imported instead of a new
    interpreter each), serving one port; a worker killed is replaced and the API keeps
    answering. SIGTERM or SIGINT to the master alone stops every worker through its shutdown
    (status 0); a master killed outright takes its workers with it."""
    log = tmp_path / "serve.log"
    master, port = _start(_config(tmp_path, database_url), log)
    try:
        _wait(lambda: _served(port) == N + 1, "every component and the Location served")
        # The pass's line comes once its indexes are built, after everything is served; a
        # worker killed before it would take the pass with it.
        _wait(lambda: "catalog pass:" in log.read_text(), "the refresh, in a worker")
        workers = _children(master.pid)
        assert len(workers) == 2, log.read_text()
        for pid in workers:
            assert b"spawn_main" not in _cmdline(pid)  # not a new interpreter: a fork

        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: victim not in _children(master.pid), "the killed worker to be reaped")
        _wait(lambda: len(_children(master.pid)) == 2, "a worker in its place")
        _wait(
            lambda: log.read_text().count("Application startup complete.") == 3,
            "the new worker to start its app",
        )
        assert _served(port) == N + 1
        workers |= _children(master.pid)

        os.kill(master.pid, stop)
        if stop == signal.SIGKILL:
            master.wait(timeout=40)
            _wait(lambda: _gone(workers), "the workers to end with their master", timeout=20)
            return
        assert master.wait(timeout=40) == 0, log.read_text()
        assert _gone(workers), log.read_text()
        text = log.read_text()
        stopping = text[text.index("Handling signal:") :]
        assert stopping.count("Application shutdown complete.") == 2, text
        assert "SIGKILL" not in stopping, text  # stopped, not killed at the end of the grace
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(master.pid, signal.SIGKILL)
        master.wait()


def test_a_taken_port_stops_workers_at_once_with_status_3(tmp_path: Path) -> None:
    """As one process does: a clear message and status 3, not gunicorn's five retries."""
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'g.sqlite'}")
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*SERVE, "-c", str(config), "--port", str(port), "--workers", "2"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 3, done.stderr
        assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
        assert "Connection in use" not in done.stderr  # gunicorn's way: five tries, status 1
