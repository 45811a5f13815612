"""``greenroom serve --workers N`` as an operator runs it: real processes on a real port."""

from __future__ import annotations

import asyncio
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
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from greenroom.catalog.ingest.engine import PassSummary
from greenroom.db import create_engine
from greenroom.forks import Forked, run_forked
from tests.catalog.indexes import missing_deferred
from tests.forking import sleeping
from tests.servers import app_config, served

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
    return app_config(tmp_path, database_url, ["Component"])


def _children(pid: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(line) for line in found.split()}


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _start(config: Path, log: Path, *options: str) -> tuple[subprocess.Popen[bytes], int]:
    """``serve`` on a port the system picks; the process and that port."""
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*SERVE, "-c", str(config), "--port", "0", *options],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    found: list[int] = []

    def listening() -> bool:
        assert server.poll() is None, log.read_text()
        # gunicorn's line, or uvicorn's
        where = r"(?:Listening at: |running on )http://127\.0\.0\.1:(\d+)"
        match = re.search(where, log.read_text())
        if match:
            found.append(int(match.group(1)))
        return bool(found)

    _wait(listening, "the server to listen")
    return server, found[0]


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
    master, port = _start(_config(tmp_path, database_url), log, "--workers", "2")
    try:
        _wait(lambda: served(port) == N + 1, "every component and the Location served")
        # The first load's line comes once its last entity is served.
        _wait(lambda: "catalog pass" in log.read_text(), "the first load")
        # The first load's own process (a new, small catalog) ends once it is done.
        _wait(lambda: len(_children(master.pid)) == 2, "two workers and nothing else")
        workers = _children(master.pid)
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
        assert served(port) == N + 1
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


def _relations(port: int, ref: str) -> set[tuple[str, str]]:
    kind, _, rest = ref.partition(":")
    namespace, _, name = rest.partition("/")
    entity = httpx.get(
        f"http://127.0.0.1:{port}/api/catalog/entities/by-name/{kind}/{namespace}/{name}",
        timeout=5,
    ).json()
    return {(r["type"], r["targetRef"]) for r in entity["relations"]}


def test_a_new_small_catalog_is_loaded_by_a_process_forked_at_start(
    database_url: str, tmp_path: Path
) -> None:
    """One process: the first load of a new catalog runs in a child forked once the database
    is migrated, beside the server's start; it is served whole and the child is reaped. A
    restart on the loaded catalog refreshes in the server itself."""
    config = _config(tmp_path, database_url)
    engine = create_engine(database_url)
    try:
        _serve_until_served(config, tmp_path / "serve-new.log", first_load=engine)
        text = _serve_until_served(config, tmp_path / "serve-again.log")
    finally:
        engine.dispose()
    assert "loading the new catalog" not in text  # not a new catalog: the loop's work


def _serve_until_served(config: Path, log: Path, *, first_load: sa.Engine | None = None) -> str:
    """Serve until everything is; with ``first_load`` (the database's engine), check that a
    forked process did the load and that the server built the indexes the load left."""
    server, port = _start(config, log)
    try:
        _wait(lambda: served(port) == N + 1, "every component and the Location served")
        if first_load is not None:
            forked = re.search(r"loading the new catalog in process (\d+)", log.read_text())
            assert forked is not None, log.read_text()
            child = int(forked.group(1))
            assert child != server.pid
            _wait(lambda: _gone({child}), "the first load's process to end and be reaped")
            loaded = re.search(
                r"catalog pass \(the first load, process (\d+)\): (.*)", log.read_text()
            )
            assert loaded is not None, log.read_text()
            assert int(loaded.group(1)) == child  # the child did the work, not the server
            assert loaded.group(2).startswith("1 location(s) read, 41 written"), loaded.group(2)
            assert "indexes" not in loaded.group(2)  # not built by the child, which has ended
            # The server's refresh loop, which waited for the child to end, built them.
            _wait(lambda: not missing_deferred(first_load), "the server to build the indexes")
            _wait(
                lambda: re.search(r"catalog pass: .*indexes built", log.read_text()) is not None,
                "the server's pass that built them to say so",
            )
        assert _relations(port, "component:default/svc-7") >= {("ownedBy", "group:default/team")}
        assert _children(server.pid) == set()
        return log.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_only_a_new_catalog_of_small_roots_is_loaded_apart_at_start(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large roots keep their walk apart in the refresh loop (a forked child alive for a long
    load would hold a second copy of the server's pages); a loaded catalog, a loop turned off
    or a database in this process's memory are never loaded apart."""
    from greenroom.catalog import service as service_module
    from greenroom.catalog.plugin import service
    from greenroom.catalog.service import first_load_apart
    from greenroom.config import load_config
    from greenroom.context import create_context

    config = _config(tmp_path, database_url)

    def context_with(**catalog: object) -> Any:
        cfg = load_config([config], env={}, extra={"catalog": catalog} if catalog else None)
        return create_context(cfg)

    new = context_with()
    assert first_load_apart(new)
    off = context_with(processingInterval=False)
    assert not first_load_apart(off)
    off.engine.dispose()
    with monkeypatch.context() as patch:
        size = (tmp_path / "catalog.yaml").stat().st_size
        patch.setattr(service_module, "MIN_BYTES", size)  # as large as the limit: not small
        assert not first_load_apart(new)
    memory = create_context(
        load_config([config], env={}, extra={"backend": {"database": "sqlite://"}})
    )
    assert not first_load_apart(memory)
    memory.engine.dispose()
    service(new).refresh()
    assert not first_load_apart(new)  # loaded: refreshes are the loop's
    new.engine.dispose()


def _first_pass_after(
    catalog: Any, forked: Forked, monkeypatch: pytest.MonkeyPatch, marker: Path
) -> bool:
    """Run the server's refresh loop, ``forked`` being the first load's process, until its
    first pass; whether ``marker`` (written by the child at its end) existed by then."""
    from greenroom.catalog import plugin

    monkeypatch.setattr(plugin, "_first_load", forked)
    passes: list[bool] = []

    def run_due() -> PassSummary:
        passes.append(marker.exists())
        return PassSummary()

    monkeypatch.setattr(catalog.service, "run_due", run_due)
    [loop] = plugin.greenroom_background_tasks(context=catalog.context)

    async def until_first_pass() -> None:
        task: asyncio.Future[None] = asyncio.ensure_future(loop())
        while not passes:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(until_first_pass(), 30))
    return passes[0]


@pytest.mark.usefixtures("sigchld_restored")
def test_the_refresh_loop_waits_for_the_first_load_to_end(
    make_catalog: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its first pass (which builds the indexes the load left) comes after the child's end,
    not beside the load, whose leases and write lock it would only wait for."""
    catalog = make_catalog(config={"catalog": {"processingInterval": {"hours": 1}}})
    marker = tmp_path / "ended"
    forked = run_forked("test load", sleeping(marker, 0.5))
    assert forked is not None
    try:
        assert _first_pass_after(catalog, forked, monkeypatch, marker)
    finally:
        os.close(forked.ended)


@pytest.mark.usefixtures("sigchld_restored")
def test_the_refresh_loop_waits_for_the_first_load_at_most_a_lease(
    make_catalog: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A first load that hangs (or left a process of its own holding the pipe) stops renewing
    its leases: after a lease's duration the loop goes on, as for any replica's work."""
    catalog = make_catalog(
        config={"catalog": {"processingInterval": {"hours": 1}, "leaseDuration": {"seconds": 1}}}
    )
    marker = tmp_path / "ended"
    forked = run_forked("test load", sleeping(marker, 5))
    assert forked is not None
    try:
        started = time.monotonic()
        assert not _first_pass_after(catalog, forked, monkeypatch, marker)
        assert 1 <= time.monotonic() - started < 4
        assert f"first load's process {forked.pid} has not ended after 1.0 s" in caplog.text
    finally:
        os.kill(forked.pid, signal.SIGKILL)
        os.close(forked.ended)
