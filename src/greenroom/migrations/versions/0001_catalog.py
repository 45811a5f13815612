"""The catalog's tables.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

REF = sa.String(512)


def upgrade() -> None:
    op.create_table(
        "catalog_locations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("type", "target", name="uq_catalog_locations_type_target"),
    )
    op.create_table(
        "catalog_entities",
        sa.Column("ref", REF, primary_key=True),
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
        sa.Column("final", sa.Text, nullable=True),
        sa.Column("etag", sa.String(40), nullable=True),
        sa.Column("orphan", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_catalog_entities_origin", "catalog_entities", ["origin_key"])
    op.create_index(
        "ix_catalog_entities_kind_name", "catalog_entities", ["kind", "namespace", "name"]
    )
    op.create_table(
        "catalog_relations",
        sa.Column("originating_ref", REF, nullable=False),
        sa.Column("source_ref", REF, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("target_ref", REF, nullable=False),
    )
    op.create_index("ix_catalog_relations_originating", "catalog_relations", ["originating_ref"])
    op.create_index("ix_catalog_relations_source", "catalog_relations", ["source_ref"])
    op.create_table(
        "catalog_search",
        sa.Column(
            "ref",
            REF,
            sa.ForeignKey("catalog_entities.ref", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255), nullable=True),
        sa.Column("original_value", sa.String(255), nullable=True),
    )
    op.create_index("ix_catalog_search_key_value", "catalog_search", ["key", "value"])
    op.create_index("ix_catalog_search_ref_key", "catalog_search", ["ref", "key", "value"])


def downgrade() -> None:
    op.drop_table("catalog_search")
    op.drop_table("catalog_relations")
    op.drop_table("catalog_entities")
    op.drop_table("catalog_locations")
