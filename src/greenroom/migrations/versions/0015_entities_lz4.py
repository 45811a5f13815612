"""PostgreSQL compresses the entity JSON (``processed`` and ``final`` of ``catalog_entities``)
with lz4 instead of its default pglz, where the server has lz4 (version 14 on, built with it).

An entity's row is some 3 KB of JSON, above the size at which PostgreSQL compresses values:
every first write and every stitch compresses it again. With pglz, copying 50,000 entities into
the table cost 2.6-3.5 s of the server's time, with lz4 1.6-2.0 s, for the same size on disk and
reads as fast (``docs/benchmarks.md``, 2026-12-07). Values already stored keep their
compression until they are next written; both are read alike. SQLite has nothing to change.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

COLUMNS = ("processed", "final")


def _compress(method: str) -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    available = op.get_bind().exec_driver_sql(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
    )
    if not available.scalar():
        return
    alter = ", ".join(f"ALTER COLUMN {column} SET COMPRESSION {method}" for column in COLUMNS)
    op.execute(f"ALTER TABLE catalog_entities {alter}")


def upgrade() -> None:
    _compress("lz4")


def downgrade() -> None:
    _compress("default")
