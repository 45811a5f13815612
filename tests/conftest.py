"""Shared fixtures: a real database (SQLite, and PostgreSQL when configured) and a catalog app.

Every storage and API test takes the ``database_url`` fixture, so it runs on SQLite and, when
``GREENROOM_TEST_DATABASE_URL`` is set (``.ci/run`` sets it), on PostgreSQL too, each test in a
schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import os
import signal
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from greenroom.app import create_app
from greenroom.catalog.plugin import service
from greenroom.catalog.service import CatalogService
from greenroom.config import load_config
from greenroom.context import AppContext, create_context

PG_URL = os.environ.get("GREENROOM_TEST_DATABASE_URL")
ALL_KINDS = [
    "Component",
    "API",
    "Resource",
    "System",
    "Domain",
    "Group",
    "User",
    "Location",
    "Template",
]


def _backends() -> list[str]:
    return ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


@pytest.fixture(params=_backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend."""
    with _fresh_database(request.param, tmp_path / "greenroom.sqlite") as url:
        yield url


@pytest.fixture
def other_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second fresh, empty database on the backend of ``database_url``."""
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    with _fresh_database(backend, tmp_path / "other.sqlite") as url:
        yield url


@contextmanager
def _fresh_database(backend: str, sqlite_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{sqlite_path}"
        return
    assert PG_URL is not None
    base = PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    _trgm_in_public(admin)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _trgm_in_public(admin: sa.Engine) -> None:
    """Create ``pg_trgm`` in ``public`` once, as a production database has it: otherwise the
    first test's migration would create it in that test's schema, and dropping the schema
    would drop the extension with the trigram indexes of tests running beside it."""
    try:
        with admin.begin() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public"))
    except sa.exc.DBAPIError:
        pass  # another worker created it at the same moment, or it is not available


def write_files(root: Path, files: dict[str, str]) -> None:
    """Write ``{relative path: text}`` under ``root`` (text is dedented)."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


class Catalog:
    """A catalog app on a real database, with helpers tests share."""

    def __init__(self, context: AppContext, root: Path) -> None:
        self.context = context
        self.root = root
        self.client = TestClient(create_app(context, background=False))

    @property
    def service(self) -> CatalogService:
        return service(self.context)

    def refresh(self) -> Any:
        return self.service.refresh()

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.client.get(f"/api/catalog{path}", **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def entity(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any]:
        return self.get(f"/entities/by-name/{kind}/{namespace}/{name}")  # type: ignore[no-any-return]

    def status(self, kind: str, name: str, namespace: str = "default") -> int:
        response = self.client.get(f"/api/catalog/entities/by-name/{kind}/{namespace}/{name}")
        return int(response.status_code)


@pytest.fixture
def make_catalog(database_url: str, tmp_path: Path) -> Iterator[Any]:
    """Build a catalog from files: ``make_catalog({"all.yaml": ...}, config={...})``."""
    made: list[Catalog] = []

    def make(
        files: dict[str, str] | None = None,
        *,
        config: dict[str, Any] | None = None,
        locations: list[dict[str, Any]] | None = None,
        plugins: tuple[Any, ...] = (),
    ) -> Catalog:
        root = tmp_path / "catalog"
        root.mkdir(exist_ok=True)
        write_files(root, files or {})
        if locations is None:
            locations = [{"type": "file", "target": str(root / "all.yaml")}] if files else []
        extra: dict[str, Any] = {
            "backend": {"database": database_url},
            "catalog": {
                "rules": [{"allow": ALL_KINDS}],
                "locations": locations,
                "processingInterval": False,
            },
        }
        cfg = load_config([], env={}, extra=_merge(extra, config or {}))
        context = create_context(cfg, plugins=plugins)
        catalog = Catalog(context, root)
        made.append(catalog)
        return catalog

    yield make
    for catalog in made:
        catalog.client.close()
        catalog.context.engine.dispose()


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    from greenroom.config import merge

    return merge(base, extra)


@pytest.fixture
def sigchld_restored() -> Iterator[None]:
    """``greenroom.forks.run_forked`` reaps its child through a SIGCHLD handler of its own:
    the test's handler is put back after."""
    before = signal.getsignal(signal.SIGCHLD)
    yield
    signal.signal(signal.SIGCHLD, before)
