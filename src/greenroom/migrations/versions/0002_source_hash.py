"""Remember which document each entity came from (to skip unchanged documents), and which
entities wait to be stitched again (so that the work survives a replica that dies).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("catalog_entities") as batch:
        batch.add_column(sa.Column("source_hash", sa.String(40), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("needs_stitch", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.create_index("ix_catalog_entities_source", "catalog_entities", ["origin_key", "source_hash"])
    op.create_index("ix_catalog_entities_needs_stitch", "catalog_entities", ["needs_stitch"])


def downgrade() -> None:
    op.drop_index("ix_catalog_entities_needs_stitch", "catalog_entities")
    op.drop_index("ix_catalog_entities_source", "catalog_entities")
    with op.batch_alter_table("catalog_entities") as batch:
        batch.drop_column("needs_stitch")
        batch.drop_column("source_hash")
