"""Search rows without a foreign key: every insert checked its entity, row by row.

``catalog_search.ref`` referenced ``catalog_entities.ref`` (``ON DELETE CASCADE``). On
PostgreSQL each inserted row then ran the referential trigger (a lookup of the entity and a
``FOR KEY SHARE`` lock on it): 35 search rows per entity, 1.8 million checks in a first load of
50,000 entities, which took 82 s without them and 106 s with them. The rows are written and
deleted only with their entity's stitch, in the same transaction
(:func:`greenroom.catalog.stitch.stitch`, :meth:`IngestionEngine.delete
<greenroom.catalog.ingest.engine.IngestionEngine.delete>` deletes them first), which is what
the constraint guarded; tests check that a deleted entity leaves none behind.

SQLite cannot drop a constraint: the table is copied without it, with its indexes.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

REF = sa.String(512)
FOREIGN_KEY = "catalog_search_ref_fkey"  # PostgreSQL's name for it (0001 gave none)
ORPHANS = "DELETE FROM catalog_search WHERE ref NOT IN (SELECT ref FROM catalog_entities)"


def _search(foreign_key: bool) -> sa.Table:
    """``catalog_search`` as it is before (with the key) or after this migration."""
    ref: list[sa.ForeignKey] = (
        [sa.ForeignKey("catalog_entities.ref", ondelete="CASCADE")] if foreign_key else []
    )
    return sa.Table(
        "catalog_search",
        sa.MetaData(),
        sa.Column("ref", REF, *ref, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255), nullable=True),
        sa.Column("original_value", sa.String(255), nullable=True),
        sa.Index("ix_catalog_search_key_value", "key", "value", "ref"),
        sa.Index("ix_catalog_search_ref_key", "ref", "key", "value"),
    )


def _copy(foreign_key: bool) -> None:
    with op.batch_alter_table("catalog_search", recreate="always", copy_from=_search(foreign_key)):
        pass


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        # By the name the database gave it (a restored or hand-made schema may differ).
        for key in sa.inspect(op.get_bind()).get_foreign_keys("catalog_search"):
            if key["referred_table"] == "catalog_entities" and key["name"]:
                op.drop_constraint(key["name"], "catalog_search", type_="foreignkey")
    else:
        _copy(foreign_key=False)


def downgrade() -> None:
    op.execute(ORPHANS)  # rows the key would refuse (none, unless something went wrong)
    if op.get_context().dialect.name == "postgresql":
        op.create_foreign_key(
            FOREIGN_KEY, "catalog_search", "catalog_entities", ["ref"], ["ref"], ondelete="CASCADE"
        )
    else:
        _copy(foreign_key=True)
