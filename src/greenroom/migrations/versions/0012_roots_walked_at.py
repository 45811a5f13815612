"""Remember whether each root location has been walked (``catalog_roots.walked_at``: when a walk
of it last ended, failed or not; NULL again for every root when a pass finds the catalog empty).

A first load builds its deferred indexes when no walk is under way, so that another replica's
first load keeps the benefit of deferring them. "No walk" waited for any lease: with many root
locations and several replicas, some replica is nearly always refreshing one, and the indexes
of filters and facets could stay missing indefinitely. Only a first walk (``walked_at`` NULL)
holds them back now. Roots that exist at this upgrade were walked by the version before.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "catalog_roots", sa.Column("walked_at", sa.DateTime(timezone=True), nullable=True)
    )
    table = sa.table("catalog_roots", sa.column("walked_at", sa.DateTime(timezone=True)))
    op.get_bind().execute(table.update().values(walked_at=datetime.now(UTC)))


def downgrade() -> None:
    with op.batch_alter_table("catalog_roots") as batch:
        batch.drop_column("walked_at")
