"""Root locations with their schedule and leases, shared by replicas.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog_roots",
        sa.Column("root_key", sa.String(2048), primary_key=True),
        sa.Column("next_refresh_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_catalog_roots_due", "catalog_roots", ["next_refresh_at"])


def downgrade() -> None:
    op.drop_table("catalog_roots")
