"""How long a server of Greenroom's stack takes to answer its first request, from process start.

At 1,000 entities the shared workload's ingestion time (from process start until every entity
is served with its relations) is mostly this: starting Python and importing the libraries the
design prescribes (FastAPI on Starlette, uvicorn, SQLAlchemy, pydantic). Three servers, each
started ``--runs`` times, timed until their first ``200``:

- ``empty app``: a FastAPI app with one route, importing what Greenroom's server imports
  (SQLAlchemy, pydantic, typer) and nothing of Greenroom: the floor of the stack;
- ``greenroom, no catalog``: ``greenroom serve`` on a new SQLite database with no locations
  (its configuration, migrations, plugins and routes on top of the floor);
- ``greenroom, 1,000 entities``: the same with the shared workload's 1,000 entities, until
  ``/api/catalog/entities`` holds them all (for comparison with the workload's figure).

    .venv/bin/python bench/startup.py --entities-file /tmp/b1/entities-n1000.yaml

With ``--compare SRC ...`` it instead starts ``greenroom serve`` on the entities with each source
tree in turn (``PYTHONPATH=SRC``, e.g. a ``git archive`` of an older commit's ``src``), ``--runs``
times interleaved, on a new SQLite file or, with ``--postgresql URL``, a database created anew
each time, and prints the median seconds from the command until the first load is forked (its
log line), the server listens, and every entity is served:

    mkdir -p /tmp/before && git archive HEAD~1 src | tar -x -C /tmp/before
    .venv/bin/python bench/startup.py --entities-file /tmp/b1/entities-n1000.yaml --runs 10 \
        --compare /tmp/before/src src --postgresql postgresql://postgres@127.0.0.1:5432/gr_start
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

EMPTY_APP = """
import pydantic, sqlalchemy, typer
import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/healthcheck")
async def healthcheck():
    return {"status": "ok"}


uvicorn.run(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), log_level="warning")
"""

CONFIG = """
backend: {{database: "{database}", listen: {{port: {port}}}}}
catalog:
  processingInterval: {{seconds: 100}}
  maxFileBytes: 2147483648
  rules: [{{allow: [Component, API, Resource, System, Domain, Group, User, Location, Template]}}]
  locations: {locations}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bytes(response.read()) if response.status == 200 else None
    except OSError:
        return None


def _time_until(command: list[str], ready: Callable[[], bool]) -> float:
    """Seconds from starting ``command`` until ``ready()``; the process is stopped after."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not ready():
            if process.poll() is not None:
                raise SystemExit(f"{command} exited with status {process.returncode}")
            if time.monotonic() - started > 60:
                raise SystemExit(f"{command} did not answer within 60 s")
            time.sleep(0.01)
        return time.monotonic() - started
    finally:
        process.terminate()
        process.wait()


#: Log lines of ``greenroom serve`` that mark a moment of its start.
MOMENTS = {"first load forked": "loading the new catalog", "listening": "Uvicorn running"}


def _new_postgresql(url: str) -> None:
    """Drop and create the database of ``url`` (through the server's ``postgres`` database)."""
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def compare(args: argparse.Namespace, work: Path) -> None:
    """``--compare``: the moments of a start on the entities, per source tree, interleaved."""
    trees = [str(Path(tree).resolve()) for tree in args.compare]
    for tree in trees:  # a missing one would be skipped by Python: the installed code measured
        if not (Path(tree) / "greenroom" / "__init__.py").is_file():
            raise SystemExit(f"{tree} holds no greenroom package (give the tree's src folder)")
    args.compare = trees
    moments: dict[str, dict[str, list[float]]] = {
        tree: {name: [] for name in [*MOMENTS, "all served"]} for tree in args.compare
    }
    port = _free_port()
    for run in range(args.runs):
        for number, tree in enumerate(args.compare):
            if args.postgresql:
                _new_postgresql(args.postgresql)
                database = args.postgresql.replace("postgresql://", "postgresql+psycopg://", 1)
            else:
                database = f"sqlite:///{work / f'compare-{run}-{number}.sqlite'}"  # a new one
            config = work / "compare.yaml"
            target = json.dumps([{"type": "file", "target": args.entities_file}])
            config.write_text(CONFIG.format(database=database, port=port, locations=target))
            started = time.monotonic()
            server = subprocess.Popen(
                [sys.executable, "-m", "greenroom", "serve", "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": tree},
            )
            seen: dict[str, float] = {}

            def read(log: IO[str], seen: dict[str, float] = seen, t0: float = started) -> None:
                for line in log:
                    for name, text in MOMENTS.items():
                        if text in line and name not in seen:
                            seen[name] = time.monotonic() - t0

            reader = threading.Thread(target=read, args=(server.stderr,), daemon=True)
            reader.start()
            try:
                url = f"http://127.0.0.1:{port}/api/catalog/entities/by-query?limit=0"
                while (body := _get(url)) is None or json.loads(body)["totalItems"] < args.count:
                    if server.poll() is not None or time.monotonic() - started > 60:
                        raise SystemExit(f"greenroom serve with {tree} did not serve everything")
                    time.sleep(0.01)
                seen["all served"] = time.monotonic() - started
            finally:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
                reader.join(timeout=5)
            for name, seconds in dict(seen).items():
                moments[tree][name].append(seconds)
    print(
        "| source | "
        + " | ".join(f"{name}, s (median)" for name in [*MOMENTS, "all served"])
        + " |"
    )
    print("| --- |" + " --- |" * (len(MOMENTS) + 1))
    for tree, times in moments.items():
        cells = [f"{statistics.median(t):.3f}" if t else "-" for t in times.values()]
        print(f"| {tree} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--entities-file", help="the workload's entities, for the third line")
    parser.add_argument("--count", type=int, default=1001, help="entities served when done")
    parser.add_argument("--compare", nargs="+", metavar="SRC", help="source trees to compare")
    parser.add_argument("--postgresql", metavar="URL", help="with --compare: this database")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="greenroom-startup-"))
    if args.compare:
        if not args.entities_file:
            raise SystemExit("--compare needs --entities-file")
        compare(args, work)
        return
    (work / "empty_app.py").write_text(EMPTY_APP)

    def greenroom(locations: str) -> tuple[list[str], int]:
        port = _free_port()
        database = work / f"db-{port}.sqlite"
        config = work / f"app-config-{port}.yaml"
        config.write_text(
            CONFIG.format(database=f"sqlite:///{database}", port=port, locations=locations)
        )
        return [sys.executable, "-m", "greenroom", "serve", "-c", str(config)], port

    def served(port: int) -> bool:
        body = _get(f"http://127.0.0.1:{port}/api/catalog/entities/by-query?limit=0")
        return body is not None and json.loads(body)["totalItems"] >= args.count

    rows: dict[str, list[float]] = {"empty app": [], "greenroom, no catalog": []}
    if args.entities_file:
        rows["greenroom, 1,000 entities"] = []
    for _ in range(args.runs):  # interleaved, so that the machine's drift touches each alike
        port = _free_port()
        rows["empty app"].append(
            _time_until(
                [sys.executable, str(work / "empty_app.py"), str(port)],
                lambda p=port: _get(f"http://127.0.0.1:{p}/healthcheck") is not None,
            )
        )
        command, port = greenroom("[]")
        rows["greenroom, no catalog"].append(
            _time_until(
                command, lambda p=port: _get(f"http://127.0.0.1:{p}/healthcheck") is not None
            )
        )
        if args.entities_file:
            target = json.dumps([{"type": "file", "target": args.entities_file}])
            command, port = greenroom(target)
            rows["greenroom, 1,000 entities"].append(_time_until(command, lambda p=port: served(p)))
    print("| server | first answer, s (min / median / max) |")
    print("| --- | --- |")
    for name, times in rows.items():
        print(f"| {name} | {min(times):.2f} / {statistics.median(times):.2f} / {max(times):.2f} |")


if __name__ == "__main__":
    main()
