"""An integer id for each entity (``catalog_entities.id``), the table's primary key; ``ref``
stays unique.

Rows that name an entity many times over are cheaper keyed by an integer than by its ref
(about 36 bytes): a first load writes some 35 search rows per entity, and keyed by ref they
land at random leaves of the ``(ref, key, value)`` index, batch after batch. Keyed by an id
given in the order entities are written, the same inserts append. Measured on a copy
(``docs/benchmarks.md``, 2026-12-07): 14-21% off a first load on both databases once
``catalog_search`` holds ids. This migration gives the entities their ids; the writer gives
new entities ``max(id) + 1`` under the write lock.

On SQLite ``id`` is the ``INTEGER PRIMARY KEY``, the rowid itself: the table keeps its layout,
every index carries the id, and the unique index on ``ref`` maps a ref to its id without
reading the row. SQLite cannot change a primary key in place: the table is copied, each row
keeping its rowid as its id. PostgreSQL numbers the rows in ref order.

Replicas must be upgraded together: a replica on the code before this one inserts entities
without an id, which PostgreSQL refuses.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from greenroom.migrations.sqlite import copy_table

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

REF = sa.String(512)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite's rowid needs INTEGER
COLUMNS = (
    "ref, uid, kind, namespace, name, origin_key, location_key, parent_ref, processed, problems, "
    "process_hash, source_hash, final, etag, orphan, updated_at"
)


def _entities(with_id: bool) -> sa.Table:
    """``catalog_entities`` as it is after this migration (``with_id``) or before it."""
    key: list[sa.Column[object]] = (
        [
            sa.Column("id", ID, primary_key=True, autoincrement=False),
            sa.Column("ref", REF, nullable=False, unique=True),
        ]
        if with_id
        else [sa.Column("ref", REF, primary_key=True)]
    )
    return sa.Table(
        "catalog_entities",
        sa.MetaData(),
        *key,
        sa.Column("uid", sa.String(36), nullable=False, unique=True),
        sa.Column("kind", sa.String(63), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("origin_key", sa.Text, nullable=False),
        sa.Column("location_key", sa.Text, nullable=False),
        sa.Column("parent_ref", REF, nullable=True),
        sa.Column("processed", sa.Text, nullable=True),
        sa.Column("problems", sa.Text, nullable=False, server_default="[]"),
        sa.Column("process_hash", sa.String(40), nullable=False, server_default=""),
        sa.Column("source_hash", sa.String(40), nullable=False, server_default=""),
        sa.Column("final", sa.Text, nullable=True),
        sa.Column("etag", sa.String(40), nullable=True),
        sa.Column("orphan", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_catalog_entities_origin", "origin_key"),
        sa.Index("ix_catalog_entities_source", "origin_key", "source_hash"),
        sa.Index("ix_catalog_entities_kind_name", "kind", "namespace", "name"),
        sa.Index(
            "ix_catalog_entities_served_kind",
            sa.func.lower(sa.column("kind")),
            "ref",
            sqlite_where=sa.text("final IS NOT NULL"),
            postgresql_where=sa.text("final IS NOT NULL"),
        ),
    )


def _copy_sqlite(with_id: bool) -> None:
    """Copy ``catalog_entities`` into its new shape (SQLite changes no primary key in place),
    each row keeping its rowid as its id, or its id as its rowid."""
    if with_id:
        fill = (
            f"INSERT INTO catalog_entities_new (id, {COLUMNS}) "
            f"SELECT rowid, {COLUMNS} FROM catalog_entities ORDER BY rowid"
        )
    else:
        fill = (
            f"INSERT INTO catalog_entities_new ({COLUMNS}) "
            f"SELECT {COLUMNS} FROM catalog_entities ORDER BY id"
        )
    copy_table(_entities(with_id), fill)


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        _copy_sqlite(with_id=True)
        return
    op.add_column("catalog_entities", sa.Column("id", ID, nullable=True))
    op.execute(
        "UPDATE catalog_entities e SET id = n.id FROM "
        "(SELECT ref, row_number() OVER (ORDER BY ref) AS id FROM catalog_entities) n "
        "WHERE n.ref = e.ref"
    )
    op.alter_column("catalog_entities", "id", nullable=False)
    # By the name the database gave it (a restored or hand-made schema may differ).
    key = sa.inspect(op.get_bind()).get_pk_constraint("catalog_entities")["name"]
    op.drop_constraint(key or "catalog_entities_pkey", "catalog_entities", type_="primary")
    op.create_primary_key("catalog_entities_pkey", "catalog_entities", ["id"])
    op.create_unique_constraint("catalog_entities_ref_key", "catalog_entities", ["ref"])


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        _copy_sqlite(with_id=False)
        return
    op.drop_constraint("catalog_entities_ref_key", "catalog_entities", type_="unique")
    op.drop_constraint("catalog_entities_pkey", "catalog_entities", type_="primary")
    op.create_primary_key("catalog_entities_pkey", "catalog_entities", ["ref"])
    op.drop_column("catalog_entities", "id")
