"""Tell PostgreSQL's planner how many rows each entity has in catalog_search and relations.

``ANALYZE`` estimates a column's distinct values from a sample of rows, taken a row or so per
page. An entity's rows are written together, so pages repeat refs and the sample sees some of
them twice or more; when the estimate comes out below a tenth of the rows, PostgreSQL stores it
as a count, which stays put as the table grows. In a first load of 250,000 entities (statistics
sampled each time the entities written double, the last at 128,000; autovacuum was off on the
benchmark's server) catalog_search held 7,229 distinct refs by that count, for 250,000 real
ones: the planner expected 1,200 rows per ref instead of 35 and planned each stitch's ``DELETE
... WHERE ref IN (500 refs)`` as a scan of 8.6 million rows (over a second each; the stitch at
the end of that load went at about 100 entities a second). A negative ``n_distinct`` is a
fraction of the rows, so it stays right as the catalog grows: an entity has 20-60 search rows
(-0.03) and about ten relations on each side (-0.1). The estimate only has to be of the right
order for the planner to use the ref indexes. ``target_ref`` has no index and no query filters
on it today; it gets the same setting so that one that does starts from a sound estimate.

SQLite needs nothing here: its statistics do not estimate distinct values from a sample.

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
