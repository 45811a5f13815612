"""Search rows name their entity by its id too (``catalog_search.entity_id``), and an entity's
rows are found by it: ``(entity_id, key, value)`` instead of ``(ref, key, value)``.

Stitching writes some 35 search rows per entity and replaces them by entity; keyed by ref,
each batch's rows landed at random leaves of that index, since refs come in no order. Ids
are given in the order entities are written (migration 0013), so the same inserts append: a
first load of 50,000 entities on SQLite took 9% less time (``docs/benchmarks.md``,
2026-12-07). The filter index ``(key, value, ref, original_value)`` gains ``entity_id`` at its
end, so that an ordered page checks each row's entity (its smallest value, its filters) by id
without reading the row. ``ref`` stays in each row: filters, facets and ordered pages read it
from the filter index, with ties in ref order as before.

Rows of no stored entity (there should be none) are dropped. SQLite copies the table;
PostgreSQL adds the column and fills it, with the table's indexes dropped meanwhile (updating
them row by row took 18 s against 7 s at 20,000 entities), then analyses it; the rewrite
leaves every old row version behind until ``VACUUM catalog_search``.

Replicas must be upgraded together: a replica on the code before this one writes search rows
without an id, which both databases refuse, and deletes them by ref, which no index serves.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from greenroom.catalog.text_index import create_text_indexes, drop_text_indexes
from greenroom.migrations.sqlite import copy_table

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

REF = sa.String(512)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
N_DISTINCT = -0.03  # rows per entity, as for ``ref`` (migration 0010)


def _search(with_id: bool) -> sa.Table:
    """``catalog_search`` after this migration (``with_id``) or before it."""
    if with_id:
        columns = [sa.Column("entity_id", ID, nullable=False)]
        indexes = [
            sa.Index(
                "ix_catalog_search_key_value", "key", "value", "ref", "original_value", "entity_id"
            ),
            sa.Index("ix_catalog_search_entity_key", "entity_id", "key", "value"),
        ]
    else:
        columns = []
        indexes = [
            sa.Index("ix_catalog_search_key_value", "key", "value", "ref", "original_value"),
            sa.Index("ix_catalog_search_ref_key", "ref", "key", "value"),
        ]
    return sa.Table(
        "catalog_search",
        sa.MetaData(),
        sa.Column("ref", REF, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255), nullable=True),
        sa.Column("original_value", sa.String(255), nullable=True),
        *columns,
        *indexes,
    )


def _copy_sqlite(with_id: bool) -> None:
    if with_id:
        fill = (
            "INSERT INTO catalog_search_new (ref, key, value, original_value, entity_id) "
            "SELECT s.ref, s.key, s.value, s.original_value, e.id FROM catalog_search s "
            "JOIN catalog_entities e ON e.ref = s.ref"
        )
    else:
        fill = (
            "INSERT INTO catalog_search_new (ref, key, value, original_value) "
            "SELECT ref, key, value, original_value FROM catalog_search"
        )
    copy_table(_search(with_id), fill)


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        _copy_sqlite(with_id=True)
        return
    # The indexes first, so that the rewrite of every row does not also update them (0011).
    op.execute("DROP INDEX IF EXISTS ix_catalog_search_ref_key")
    op.execute("DROP INDEX IF EXISTS ix_catalog_search_key_value")  # gone in a first load
    drop_text_indexes(op.get_bind())
    op.add_column("catalog_search", sa.Column("entity_id", ID, nullable=True))
    op.execute(
        "UPDATE catalog_search s SET entity_id = e.id FROM catalog_entities e WHERE e.ref = s.ref"
    )
    op.execute("DELETE FROM catalog_search WHERE entity_id IS NULL")
    op.alter_column("catalog_search", "entity_id", nullable=False)
    for index in _search(with_id=True).indexes:
        index.create(op.get_bind())
    op.execute(f"ALTER TABLE catalog_search ALTER COLUMN entity_id SET (n_distinct = {N_DISTINCT})")
    create_text_indexes(op.get_bind(), create_extension=False)
    op.execute("ANALYZE catalog_search")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        _copy_sqlite(with_id=False)
        return
    op.drop_column("catalog_search", "entity_id")  # and the two indexes that hold it
    for index in _search(with_id=False).indexes:
        index.create(op.get_bind())
