"""Faster reads: the write generation (for cached facets) and trigram indexes for full text.

- ``greenroom_generation``: one row, increased by every write transaction
  (``greenroom.db.write_transaction``); facets are cached per process under it.
- On PostgreSQL, ``pg_trgm`` and a partial GIN index per full-text key on ``catalog_search``
  (``greenroom.catalog.text_index``). Where the extension cannot be created, the migration goes
  on without them: full text then reads the ``(key, value)`` index, with the same answers.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from greenroom.catalog.text_index import create_text_indexes, drop_text_indexes

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "greenroom_generation",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO greenroom_generation (id, generation) VALUES (1, 0)")
    create_text_indexes(op.get_bind())


def downgrade() -> None:
    drop_text_indexes(op.get_bind())
    op.drop_table("greenroom_generation")
