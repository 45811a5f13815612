"""Tell PostgreSQL's planner how many rows each entity has in catalog_search and relations.

``ANALYZE`` estimates the number of distinct values of a column from a sample of pages. The
rows of one entity are written together, so a page holds the rows of a few entities, and the
sample sees each of them many times: at 250,000 entities it counted 7,229 distinct refs in
catalog_search (there are 250,000), expected 1,200 rows per ref instead of 35, and planned
``DELETE ... WHERE ref IN (500 refs)`` of every stitch as a scan of all 8.6 million rows (over
a second each; the stitch at the end of a first load went at about 100 entities a second). A
negative ``n_distinct`` is a fraction of the rows, so it stays right as the catalog grows: an
entity has 20-60 search rows (-0.03) and about ten relations on each side (-0.1). The estimate
only has to be of the right order for the planner to use the ref indexes.

SQLite needs nothing: its planner prefers the index for ``IN`` lists on an indexed column.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

DISTINCT = {
    "catalog_search": {"ref": -0.03},
    "catalog_relations": {"originating_ref": -0.1, "source_ref": -0.1, "target_ref": -0.1},
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in DISTINCT.items():
        for column, fraction in columns.items():
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET (n_distinct = {fraction})")
        op.execute(f"ANALYZE {table}")  # the setting applies from the next ANALYZE


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in DISTINCT.items():
        for column in columns:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} RESET (n_distinct)")
        op.execute(f"ANALYZE {table}")
