#!/usr/bin/env python3
"""Fan-out benchmark: one group with 20,000 members, one component with 5,000 dependents.

Backstage users report that a group with thousands of members needs a multi-gigabyte heap:
every member's processing touches the group, and the group's stitched entity carries one
relation per member. This benchmark ingests such a catalog with ``greenroom catalog ingest``
(a fresh process each step, so that its peak memory is its own) and reports, per database:

- the first ingestion (the hubs come first in the file, so they are stitched again after
  everything that points at them: the worst case);
- a refresh where one member changed (the group's 20,000 relations are stitched again);
- peak resident memory of each step, and the relation counts actually served.

    python bench/fanout.py --db sqlite --db postgresql
    python bench/fanout.py --members 20000 --dependents 5000 --db sqlite

See docs/benchmarks.md for the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DB = "greenroom_fanout"

CONFIG = """\
backend:
  database: {database}
catalog:
  maxFileBytes: 2147483648
  rules:
    - allow: [Component, Group, User]
  locations:
    - type: file
      target: {entities}
"""


def write_catalog(path: Path, members: int, dependents: int, changed: str = "") -> None:
    """The hubs first, then their members and dependents."""
    docs = [
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata: {name: big-group}\n"
        "spec: {type: team, children: []}",
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: core-lib}\n"
        "spec: {type: library, lifecycle: production, owner: big-group}",
    ]
    for i in range(members):
        title = changed if i == 0 and changed else f"Member {i}"
        docs.append(
            f"apiVersion: backstage.io/v1alpha1\nkind: User\n"
            f"metadata: {{name: member-{i}, title: '{title}'}}\n"
            f"spec: {{memberOf: [big-group], profile: {{email: member-{i}@example.com}}}}"
        )
    for i in range(dependents):
        docs.append(
            f"apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {{name: app-{i}}}\n"
            f"spec: {{type: service, lifecycle: production, owner: big-group, "
            f"dependsOn: ['component:core-lib']}}"
        )
    path.write_text("\n---\n".join(docs) + "\n")


def ingest(config: Path) -> dict[str, float]:
    """One ``greenroom catalog ingest`` in a child process: wall time and the peak RSS of that
    child (with the parser process it waited for), from ``wait4``."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "greenroom", "catalog", "ingest", "--config", str(config)],
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"greenroom catalog ingest failed with exit code {proc.returncode}")
    return {"seconds": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def served_relations(url: str, ref: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        final = conn.execute(
            sa.text("SELECT final FROM catalog_entities WHERE ref = :ref"), {"ref": ref}
        ).scalar_one()
    engine.dispose()
    counts: dict[str, int] = {}
    for relation in json.loads(final)["relations"]:
        counts[relation["type"]] = counts.get(relation["type"], 0) + 1
    return counts


def run(db: str, members: int, dependents: int, work: Path) -> dict[str, Any]:
    entities = work / "fanout.yaml"
    if db == "sqlite":
        path = work / "fanout.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {PG_DB}")
        admin.dispose()
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DB}"
    config = work / f"fanout.{db}.yaml"
    config.write_text(CONFIG.format(database=url, entities=entities))
    write_catalog(entities, members, dependents)
    first = ingest(config)
    write_catalog(entities, members, dependents, changed="Member zero, renamed")
    one_changed = ingest(config)
    group = served_relations(url, "group:default/big-group")
    lib = served_relations(url, "component:default/core-lib")
    assert group.get("hasMember") == members, group
    assert lib.get("dependencyOf") == dependents, lib
    return {
        "db": db,
        "members": members,
        "dependents": dependents,
        "first": first,
        "one_changed": one_changed,
        "group_relations": group,
        "component_relations": lib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--dependents", type=int, default=5_000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for db in args.db or ["sqlite"]:
            rows.append(run(db, args.members, args.dependents, Path(tmp)))
    total = args.members + args.dependents + 2
    print(f"\n{total:,} entities: 1 group with {args.members:,} members, 1 component with ")
    print(f"{args.dependents:,} dependents (hubs first in the file)\n")
    print("| db | first ingestion (s) | peak RSS MiB | one member changed (s) | peak RSS MiB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['db']} | {row['first']['seconds']} | {row['first']['peak_rss_mib']} | "
            f"{row['one_changed']['seconds']} | {row['one_changed']['peak_rss_mib']} |"
        )
    print(f"\nCPUs: {os.cpu_count()}; relations served checked: group hasMember, lib dependencyOf.")


if __name__ == "__main__":
    main()
