"""``greenroom serve --workers N`` as an operator runs it: real processes on a real port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gunicorn runs on Unix")

N = 40
SERVE = (sys.executable, "-m", "greenroom", "serve")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def test_workers_are_forked_replaced_when_killed_and_stopped_together(
    database_url: str, tmp_path: Path
) -> None:
    """Two workers forked by one master (they start with what it imported instead of a new
    interpreter each), serving one port; a worker killed is replaced and the API keeps
    answering; SIGTERM to the master stops everything, with status 0."""
    config = _config(tmp_path, database_url)
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        master = subprocess.Popen(
            [*SERVE, "-c", str(config), "--port", str(port), "--workers", "2"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait(lambda: _served(port) == N + 1, "every component and the Location served")
        workers = _children(master.pid)
        assert len(workers) == 2, log.read_text()
        for pid in workers:
            # A fork keeps the master's command line; a spawned worker would be a new
            # interpreter running multiprocessing's spawn_main.
            assert _cmdline(pid) == _cmdline(master.pid)

        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: victim not in _children(master.pid), "the killed worker to be reaped")
        _wait(lambda: len(_children(master.pid)) == 2, "a worker in its place")
        assert _served(port) == N + 1

        os.kill(master.pid, signal.SIGTERM)
        assert master.wait(timeout=40) == 0, log.read_text()
        survivors = {
            pid for pid in workers | _children(master.pid) if Path(f"/proc/{pid}").exists()
        }
        assert not survivors, log.read_text()
        assert "catalog pass:" in log.read_text()  # the refresh ran in a worker
    finally:
        if master.poll() is None:
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
        assert "Retrying" not in done.stderr  # gunicorn's own way: five tries, then status 1
