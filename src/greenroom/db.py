"""The database: one SQLAlchemy engine per app, migrations by Alembic.

SQLite is the embedded default (WAL mode, a busy timeout, foreign keys on); PostgreSQL through
psycopg 3 is for production. Every capability declares its tables on :data:`metadata` in its own
``tables.py``; the migrations in ``greenroom/migrations`` create them on both databases.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

metadata = sa.MetaData()
MIGRATIONS = Path(__file__).parent / "migrations"


def create_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An engine for ``url`` with the settings Greenroom needs on each database."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False}, **kwargs)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            if url not in ("sqlite://", "sqlite:///:memory:"):
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, **kwargs)


def is_sqlite(engine: sa.Engine) -> bool:
    """True on SQLite, where writes are serialised by the application."""
    return engine.dialect.name == "sqlite"


def upgrade(engine: sa.Engine) -> None:
    """Apply every migration to the database of ``engine``."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def bulk_insert(
    connection: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> int:
    """Insert many rows in one ``executemany`` through the driver, skipping SQLAlchemy's
    per-row parameter processing, which costs more than the insert itself on the hot path
    of ingestion. Values must already be of the driver's types (str, int, bool, None)."""
    batch = [tuple(row) for row in rows]
    if not batch:
        return 0
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))})"
    )
    connection.exec_driver_sql(sql, batch)
    return len(batch)
