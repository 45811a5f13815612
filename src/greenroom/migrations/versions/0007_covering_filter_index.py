"""Filters without table reads: ``catalog_search (key, value, ref)``, ``lower(kind), ref``.

Every filter condition is ``ref IN (SELECT ref FROM catalog_search WHERE key = ? AND value IN
(...))``. With an index on ``(key, value)`` alone, each matching entry costs a read of its table
row to find the ref: at 50,000 entities, listing the first 100 components read 32,480 rows and
took 70 ms on SQLite. With the ref in the index the subquery is answered from the index alone
(PostgreSQL: an index-only scan once the visibility map is set, which the statistics refresh
after a large pass does).

``kind=`` filters, the most common of all, are answered from ``catalog_entities`` by an index
on ``(lower(kind), ref)``: a page of components in ref order reads that page and stops.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The index may be missing: a first load drops it and builds it at its end, so a database
    # whose first load was interrupted before 0007 existed has none (it is built below).
    op.drop_index("ix_catalog_search_key_value", "catalog_search", if_exists=True)
    op.create_index("ix_catalog_search_key_value", "catalog_search", ["key", "value", "ref"])
    op.create_index(
        "ix_catalog_entities_kind_ref", "catalog_entities", [sa.text("lower(kind)"), "ref"]
    )


def downgrade() -> None:
    op.drop_index("ix_catalog_entities_kind_ref", "catalog_entities")
    op.drop_index("ix_catalog_search_key_value", "catalog_search", if_exists=True)
    op.create_index("ix_catalog_search_key_value", "catalog_search", ["key", "value"])
