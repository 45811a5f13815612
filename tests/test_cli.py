"""The ``greenroom`` command line, run as a user runs it: a subprocess of the installed script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_files

GREENROOM = shutil.which("greenroom", path=str(Path(sys.executable).parent)) or "greenroom"


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GREENROOM, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


GOOD = """
    apiVersion: backstage.io/v1alpha1
    kind: Component
    metadata: {name: good}
    spec: {type: service, lifecycle: production, owner: team-a}
    """


def test_validate_reports_file_line_column_and_exit_code(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {
            "good.yaml": GOOD,
            "bad.yaml": """
            apiVersion: backstage.io/v1alpha1
            kind: Component
            metadata:
              name: good
            spec:
              type: service
              lifecycle: production
            ---
            kind: [unclosed
            """,
        },
    )
    ok = run("catalog", "validate", "good.yaml", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = run("catalog", "validate", "good.yaml", "bad.yaml", cwd=tmp_path)
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert any(line.startswith("bad.yaml:5:") and "spec.owner" in line for line in lines), lines
    assert any(line.startswith("bad.yaml:") and "YAML syntax error" in line for line in lines), (
        lines
    )
    assert not any(line.startswith("good.yaml") for line in lines)


def test_ingest_prints_a_summary_per_kind(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {
            "catalog/all.yaml": GOOD,
            "app-config.yaml": """
            backend:
              database: sqlite:///gr.sqlite
            catalog:
              locations:
                - {type: file, target: ./catalog/all.yaml}
            """,
        },
    )
    result = run("catalog", "ingest", "--config", "app-config.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Component" in result.stdout and "Location" in result.stdout
    assert "0 problem(s)" in result.stdout
    assert (tmp_path / "gr.sqlite").exists()
    counters = re.compile(
        r"^1 location\(s\) read, (\d+) written, (\d+) unchanged, \d+ stitched, 0 orphaned, "
        r"0 deleted, 0 problem\(s\)(, indexes built)? in \d+\.\d+ s",
        re.MULTILINE,
    )
    first = counters.search(result.stdout)
    assert first is not None and int(first[1]) > 0 and first[2] == "0", result.stdout
    assert first[3], result.stdout  # a first load builds the indexes it deferred
    again = run("catalog", "ingest", "--config", "app-config.yaml", cwd=tmp_path)
    second = counters.search(again.stdout)
    assert second is not None and second[1] == "0", again.stdout  # nothing changed
    assert not second[3], again.stdout  # nothing missing
    assert int(second[2]) == int(first[1]) - 1, again.stdout  # all but the root's Location


def test_a_bad_config_stops_with_the_key_named(tmp_path: Path) -> None:
    write_files(tmp_path, {"app-config.yaml": "catalog:\n  orphanStrategy: maybe\n"})
    result = run("db", "upgrade", "--config", "app-config.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "catalog.orphanStrategy" in result.stderr


def test_db_upgrade_creates_the_tables(tmp_path: Path) -> None:
    result = run(
        "db", "upgrade", cwd=tmp_path, env={"GREENROOM_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_the_main_module_imports_nothing_until_it_runs() -> None:
    """The parser's worker processes import the main module again (multiprocessing's spawn),
    for ``python -m greenroom`` and for the ``greenroom`` script alike: each would otherwise
    load the whole server, 32 MiB and half a second, to parse YAML."""
    code = (
        "import sys, greenroom.__main__; "
        "print(sorted(m for m in sys.modules if m.startswith(('greenroom.', 'fastapi', 'typer'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "['greenroom.__main__']"
    script = Path(sys.executable).parent / "greenroom"
    if script.exists():  # the installed command goes through the same light module
        assert "from greenroom.__main__ import run" in script.read_text()


def test_serving_loads_no_terminal_drawing() -> None:
    """Every command registers the catalog's commands at start-up; only `catalog ingest` draws
    tables and progress bars, so `serve` must not pay for rich (2 MiB and 60-120 ms of a
    start-up that the first ingestion waits for)."""
    script = (
        "import sys\n"
        "from greenroom.cli import cli\n"
        "from greenroom.plugins import plugin_manager\n"
        "plugin_manager().hook.greenroom_cli(cli=cli)\n"
        "import greenroom.app, greenroom.catalog.api\n"
        "print(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
