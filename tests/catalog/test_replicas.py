"""Several replicas on one database share the refresh work through leases."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from greenroom import db
from greenroom.catalog.leases import Leases
from greenroom.catalog.tables import roots
from tests.servers import app_config, served


def test_a_root_is_held_by_one_replica_at_a_time(database_url: str) -> None:
    engine = db.create_engine(database_url)
    db.upgrade(engine)
    a = Leases(engine, "replica-a", timedelta(seconds=30))
    b = Leases(engine, "replica-b", timedelta(seconds=30))
    a.sync(["file:/x.yaml", "file:/y.yaml"])
    first, second = a.claim_due(), b.claim_due()
    assert first is not None and second is not None
    assert {first, second} == {"file:/x.yaml", "file:/y.yaml"}
    assert a.claim_due() is None and b.claim_due() is None
    assert not b.claim(first)  # held by a: marked due for a instead
    assert a.holder(first) == "replica-a"
    # Marked due while held (a POST /refresh during the walk): due again at once, not after
    # the interval, so that what the walk read past is read.
    a.release(first, timedelta(hours=1))
    assert a.holder(first) is None
    assert b.claim_due() == first
    b.release(first, timedelta(hours=1))  # not marked: due after the interval
    assert a.claim_due() is None and b.claim_due() is None
    assert b.claim(first)
    engine.dispose()


def test_one_process_walks_a_root_once_at_a_time(database_url: str) -> None:
    """Its refresh loop and a POST /refresh share one owner: a claim of a root the process is
    walking waits for that walk to end (the caller reads what it walks next), instead of
    walking it alongside and releasing the lease under it."""
    import threading

    engine = db.create_engine(database_url)
    db.upgrade(engine)
    leases = Leases(engine, "replica", timedelta(seconds=30))
    leases.sync(["file:/x.yaml"])
    assert leases.claim_due() == "file:/x.yaml"  # the loop's walk
    claimed: list[bool] = []
    request = threading.Thread(target=lambda: claimed.append(leases.claim("file:/x.yaml")))
    request.start()
    time.sleep(0.3)
    assert claimed == [] and leases.holder("file:/x.yaml") == "replica"  # waiting
    leases.release("file:/x.yaml", timedelta(hours=1), walked=True)
    request.join(10)
    assert claimed == [True] and leases.holder("file:/x.yaml") == "replica"
    leases.release("file:/x.yaml", timedelta(hours=1), walked=True)
    short = Leases(engine, "replica-2", timedelta(milliseconds=300))
    assert short.claim("file:/x.yaml")
    started = time.monotonic()
    assert not short.claim("file:/x.yaml")  # still walking after a lease's length: marked due
    assert time.monotonic() - started >= 0.3
    engine.dispose()
    engine.dispose()


def test_an_expired_lease_passes_to_another_replica(database_url: str) -> None:
    engine = db.create_engine(database_url)
    db.upgrade(engine)
    dead = Leases(engine, "dead", timedelta(milliseconds=200))
    alive = Leases(engine, "alive", timedelta(seconds=30))
    dead.sync(["file:/x.yaml"])
    assert dead.claim_due() == "file:/x.yaml"
    assert alive.claim_due() is None
    time.sleep(0.3)
    assert alive.claim_due() == "file:/x.yaml"
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _catalog(path: Path, n: int) -> None:
    docs = [
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata: {name: team}\n"
        "spec: {type: team, children: []}"
    ]
    docs += [
        f"apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {{name: svc-{i}}}\n"
        f"spec: {{type: service, lifecycle: production, owner: team, "
        f"dependsOn: ['component:svc-{(i + 1) % n}']}}"
        for i in range(n)
    ]
    path.write_text("\n---\n".join(docs) + "\n")


def test_killing_a_replica_mid_ingestion_lets_another_finish(
    database_url: str, tmp_path: Path
) -> None:
    n = 20_000
    _catalog(tmp_path / "catalog.yaml", n)
    config = app_config(
        tmp_path, database_url, ["Component", "Group"], "  leaseDuration: {seconds: 2}\n"
    )
    subprocess.run(
        [sys.executable, "-m", "greenroom", "db", "upgrade", "--config", str(config)],
        check=True,
        capture_output=True,
    )
    ports = [_free_port(), _free_port()]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "greenroom",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for port in ports
    ]
    engine = db.create_engine(database_url)
    try:
        holder = _wait_for_holder(engine, procs)
        # The holder is a server, or the process it forked for the first load of a new
        # catalog (a child in the server's process group, killed with it).
        holder_pid = int(holder.split(":")[1])
        victim = next(i for i, p in enumerate(procs) if p.pid in (holder_pid, _ppid(holder_pid)))
        survivor = 1 - victim
        _wait_for_some_served(ports[victim])
        os.killpg(procs[victim].pid, signal.SIGKILL)
        procs[victim].wait()
        served_at_kill = served(ports[survivor])
        assert 0 < served_at_kill < n + 2, "the replica was not killed in the middle"
        total = _wait_for_all_served(ports[survivor], n + 2)
        assert total == n + 2  # components, the group, the generated Location
        owner = _last_owner(engine)
        assert owner is None or procs[survivor].pid in _pid_and_parent(owner), owner
        assert _wait_for_relations(ports[survivor], n) == n
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
        engine.dispose()


def _ppid(pid: int) -> int:
    """The parent of ``pid`` (0 once it has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def _pid_and_parent(owner: str) -> tuple[int, int]:
    pid = int(owner.split(":")[1])
    return pid, _ppid(pid)


def _wait_for_holder(engine: sa.Engine, procs: list[subprocess.Popen[bytes]]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        owner = _last_owner(engine)
        if owner:
            return str(owner)
        assert all(p.poll() is None for p in procs), "a replica exited"
        time.sleep(0.02)
    raise AssertionError("no replica claimed the root")


def _last_owner(engine: sa.Engine) -> Any:
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(roots.c.lease_owner)).scalar()
    except sa.exc.OperationalError:
        return None


def _wait_for_some_served(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if served(port) > 0:
            return
        time.sleep(0.02)
    raise AssertionError("the holder served nothing")


def _wait_for_relations(port: int, expected: int) -> int:
    """How many components the group owns, once the survivor has stitched it completely."""
    url = f"http://127.0.0.1:{port}/api/catalog/entities/by-name/group/default/team"
    deadline = time.monotonic() + 120
    owned = 0
    while time.monotonic() < deadline:
        group = httpx.get(url, timeout=5).json()
        owned = sum(1 for r in group["relations"] if r["type"] == "ownerOf")
        if owned >= expected:
            break
        time.sleep(0.2)
    return owned


def _wait_for_all_served(port: int, expected: int) -> int:
    deadline = time.monotonic() + 180
    count = 0
    while time.monotonic() < deadline:
        count = served(port)
        if count >= expected:
            return count
        time.sleep(0.2)
    return count
