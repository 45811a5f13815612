#!/usr/bin/env python3
"""Catalog benchmark: Greenroom (SQLite and PostgreSQL) and any other catalog API, one workload.

The workload is the shared one that Backstage was measured with
(``../shared/anchors/backstage/bench_catalog.py``, read in place): N deterministic entities in
one file location, ingestion timed from process start until every entity is served with all its
relations, then the latency of five API calls with 1 and 8 clients, and memory. This script runs
that workload against Greenroom on each database asked for, and against another server when
given its start command, then prints one table with the ratios to a baseline.

    python bench/catalog.py run --n 1000 --n 10000 --db sqlite --db postgresql
    python bench/catalog.py table bench/results/*.json \\
        --baseline ../shared/anchors/backstage/results/result-n10000.json

See docs/benchmarks.md for the figures and the exact commands.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKLOAD = ROOT.parent / "shared" / "anchors" / "backstage" / "bench_catalog.py"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "greenroom_bench"

CONFIG = """\
backend:
  database: {database}
  listen: {{host: 127.0.0.1, port: {port}}}
catalog:
  processingInterval: {{seconds: 100}}
  maxFileBytes: 2147483648
  rules:
    - allow: [Component, API, Resource, System, Domain, Group, User, Location, Template]
  locations:
    - type: file
      target: ${{ENTITIES_FILE}}
"""


def _pg_reset_cmd() -> str:
    code = (
        f"import psycopg; c = psycopg.connect({PG_ADMIN!r}, autocommit=True); "
        f"c.execute('DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)'); "
        f"c.execute('CREATE DATABASE {PG_BENCH_DB}')"
    )
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def greenroom_target(db: str, work: Path, port: int, workers: int) -> dict[str, str]:
    """Config file, start and reset commands for Greenroom on ``db``."""
    if db == "sqlite":
        path = work / "greenroom-bench.sqlite"
        database = f"sqlite:///{path}"
        reset = f"rm -f {shlex.quote(str(path))}*"
    elif db == "postgresql":
        database = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_BENCH_DB}"
        reset = _pg_reset_cmd()
    else:
        raise SystemExit(f"unknown --db {db}; use sqlite or postgresql")
    config = work / f"app-config.{db}.yaml"
    config.write_text(CONFIG.format(database=database, port=port))
    serve = (
        f"exec {shlex.quote(sys.executable)} -m greenroom serve --config {shlex.quote(str(config))}"
    )
    if workers > 1:
        serve += f" --workers {workers}"
    return {"start": serve, "reset": reset, "base_url": f"http://127.0.0.1:{port}"}


def run_workload(
    workload: Path, n: int, target: dict[str, str], out: Path, extra: list[str]
) -> dict[str, Any]:
    """Run the shared workload once; returns its JSON report."""
    cmd = [
        sys.executable,
        str(workload),
        "run",
        "--n",
        str(n),
        "--base-url",
        target["base_url"],
        "--start-cmd",
        target["start"],
        "--json-out",
        str(out),
        "--entities-file",
        str(out.parent / f"entities-n{n}.yaml"),
        "--server-log",
        str(out.with_suffix(".log")),
        *extra,
    ]
    if target.get("reset"):
        cmd += ["--reset-cmd", target["reset"]]
    subprocess.run(cmd, check=True)
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def cmd_run(args: argparse.Namespace) -> None:
    workload = Path(args.workload)
    if not workload.exists():
        raise SystemExit(f"workload script not found: {workload} (see --workload)")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = [
        "--requests",
        str(args.requests),
        "--ingest-timeout",
        str(args.ingest_timeout),
        "--poll",
        str(args.poll),
    ]
    if args.skip_latency:
        extra.append("--skip-latency")
    reports = []
    against: list[dict[str, Any]] = []
    # An installed wheel comes with its bytecode compiled; an editable checkout compiles it on
    # the first start, which would be charged to whichever run comes first (a second of it).
    compileall.compile_dir(ROOT / "src", quiet=1)
    for n in args.n:
        for db in args.db:
            target = greenroom_target(db, out_dir, args.port, args.workers)
            name = f"greenroom-{db}" + (f"-w{args.workers}" if args.workers > 1 else "")
            report = run_workload(workload, n, target, out_dir / f"{name}-n{n}.json", extra)
            report["system"] = name
            (out_dir / f"{name}-n{n}.json").write_text(json.dumps(report, indent=2))
            reports.append(report)
        if args.against_start_cmd:
            target = {
                "start": args.against_start_cmd,
                "reset": args.against_reset_cmd or "",
                "base_url": args.against_url,
            }
            name = args.against_name
            report = run_workload(workload, n, target, out_dir / f"{name}-n{n}.json", extra)
            report["system"] = name
            (out_dir / f"{name}-n{n}.json").write_text(json.dumps(report, indent=2))
            against.append(report)
    # Measured in the same run, the other server is the baseline of the ratios.
    print_table(reports, against)


def _load(path: str, default_name: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(Path(path).read_text())
    report.setdefault("system", default_name)
    return report


def _ratio(ours: float | None, theirs: float | None, higher_is_better: bool) -> str:
    if not ours or not theirs:
        return ""
    ratio = ours / theirs if higher_is_better else theirs / ours
    return f"{ratio:.1f}x"


def print_table(reports: list[dict[str, Any]], baselines: list[dict[str, Any]]) -> None:
    """Ingestion, memory and latency per system and N; ``x`` columns: times better than baseline
    (throughput ours/theirs, latency and memory theirs/ours)."""
    base_by_n = {b["n"]: b for b in baselines}
    print("\n## Ingestion and memory\n")
    header = [
        "system",
        "N",
        "all served (s)",
        "entities/s",
        "vs baseline",
        "RSS after ingest MiB (peak)",
        "vs baseline",
    ]
    print("| " + " | ".join(header) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for rep in sorted(reports + baselines, key=lambda r: (r["n"], r["system"])):
        ing, mem = rep.get("ingest", {}), rep.get("memory_after_ingest", {})
        base = base_by_n.get(rep["n"]) if rep not in baselines else None
        bi = (base or {}).get("ingest", {})
        bm = (base or {}).get("memory_after_ingest", {})
        print(
            f"| {rep['system']} | {rep['n']:,} | {ing.get('all_ready_s', '')} | "
            f"{ing.get('entities_per_s', '')} | "
            f"{_ratio(ing.get('entities_per_s'), bi.get('entities_per_s'), True)} | "
            f"{mem.get('rss_mib', '')} ({mem.get('hwm_mib', '')}) | "
            f"{_ratio(mem.get('rss_mib'), bm.get('rss_mib'), False)} |"
        )
    print("\n## Latency (ms) and throughput\n")
    header = [
        "system",
        "N",
        "endpoint",
        "clients",
        "p50",
        "p99",
        "req/s",
        "p50 vs baseline",
        "p99 vs baseline",
    ]
    print("| " + " | ".join(header) + " |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for rep in sorted(reports + baselines, key=lambda r: (r["n"], r["system"])):
        base = base_by_n.get(rep["n"]) if rep not in baselines else None
        theirs = {(r["endpoint"], r["concurrency"]): r for r in (base or {}).get("latency", [])}
        for row in rep.get("latency", []):
            other = theirs.get((row["endpoint"], row["concurrency"]), {})
            print(
                f"| {rep['system']} | {rep['n']:,} | {row['endpoint']} | {row['concurrency']} | "
                f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['rps']:.0f} | "
                f"{_ratio(row['p50_ms'], other.get('p50_ms'), False)} | "
                f"{_ratio(row['p99_ms'], other.get('p99_ms'), False)} |"
            )


def cmd_table(args: argparse.Namespace) -> None:
    reports = [_load(p, Path(p).stem) for p in args.reports]
    baselines = [_load(p, args.baseline_name) for p in args.baseline]
    print_table(reports, baselines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the workload against Greenroom (and another server)")
    run.add_argument("--n", type=int, action="append", required=True)
    run.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    run.add_argument("--workers", type=int, default=1)
    run.add_argument("--port", type=int, default=7017)
    run.add_argument("--requests", type=int, default=200)
    run.add_argument("--skip-latency", action="store_true")
    run.add_argument(
        "--poll",
        type=float,
        default=1.0,
        help="seconds between the workload's progress polls (1.0, as Backstage was recorded "
        "with); ingestion is only seen as done at a poll, so at 1,000 entities a finer poll "
        "(0.1) measures both servers closer to when they are done",
    )
    run.add_argument(
        "--ingest-timeout",
        type=float,
        default=3600,
        help="seconds each server gets to serve every entity (Backstage took 596 s at 50,000)",
    )
    run.add_argument("--workload", default=str(DEFAULT_WORKLOAD))
    run.add_argument("--out", default=str(ROOT / "bench" / "results"))
    run.add_argument("--against-name", default="other")
    run.add_argument("--against-url", default="http://127.0.0.1:7007")
    run.add_argument("--against-start-cmd", help="start command of the other server")
    run.add_argument("--against-reset-cmd", help="reset command of the other server")
    run.set_defaults(func=cmd_run)
    table = sub.add_parser("table", help="print the table of saved reports")
    table.add_argument("reports", nargs="+")
    table.add_argument(
        "--baseline",
        action="append",
        default=[],
        help="reports of the system to compare with (e.g. Backstage's)",
    )
    table.add_argument("--baseline-name", default="backstage")
    table.set_defaults(func=cmd_table)
    args = parser.parse_args()
    if args.command == "run" and not args.db:
        args.db = ["sqlite"]
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    args.func(args)


if __name__ == "__main__":
    main()
