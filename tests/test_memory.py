"""What start-up allocates for good is kept out of the collector's way."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenroom.memory import kept_for_good


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generations of the collections that start while the test runs."""
    started: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(seen)
    try:
        yield started
    finally:
        gc.callbacks.remove(seen)
        gc.unfreeze()


def test_no_collection_runs_in_the_block_and_what_it_made_is_frozen(
    collections: list[int],
) -> None:
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with kept_for_good():
        kept = [[index] for index in range(50_000)]  # far past the collector's threshold
        assert not gc.isenabled()
    assert collections == [1]  # the young garbage made before it, as it starts; none after
    assert gc.isenabled()  # collections resume after it
    assert gc.get_freeze_count() >= frozen + len(kept)


def test_a_collector_turned_off_before_stays_off(collections: list[int]) -> None:
    gc.disable()
    try:
        with kept_for_good():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_command_runs_with_the_collector_on_and_its_imports_frozen(tmp_path: Path) -> None:
    """``greenroom`` imports with collections off, then turns them on for the command's work
    (a migration, a load: work that makes cyclic garbage)."""
    config = tmp_path / "app-config.yaml"
    config.write_text(f'backend: {{database: "sqlite:///{tmp_path / "db.sqlite"}"}}\n')
    code = (
        "import gc, sys\n"
        "from greenroom import db\n"
        "from greenroom.__main__ import run\n"
        "upgrade, during = db.upgrade, []\n"
        "def watched(engine):\n"
        "    during.append(gc.isenabled())\n"
        "    upgrade(engine)\n"
        "db.upgrade = watched\n"
        f"sys.argv = ['greenroom', 'db', 'upgrade', '-c', {str(config)!r}]\n"
        "try:\n"
        "    run()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(during, gc.isenabled(), gc.get_freeze_count())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    during, enabled, frozen = done.stdout.split()[-3:]
    assert "database is up to date" in done.stdout
    assert during == "[True]"  # the migration ran with the collector on
    assert enabled == "True"
    assert int(frozen) > 50_000  # the libraries imported in the block (88,559 here)


def test_the_garbage_made_before_may_be_left_uncollected(collections: list[int]) -> None:
    """``serve``'s block: no collection at all, the start being what is measured."""
    with kept_for_good(collect_first=False):
        [[index] for index in range(50_000)]
    assert collections == []
