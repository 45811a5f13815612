"""Facets counted from the filter index: ``original_value`` only where it differs, and indexed.

Facets group ``catalog_search`` rows by their original spelling (Backstage counts ``Service``
and ``service`` apart). The spelling lived only in the table, so counting ``spec.type`` at
50,000 entities read 42,000 table rows, one page each at worst: 70 ms with a warm cache, up to
500 ms cold, the first facet request of every process. Nearly every value is already written
in lower case, so its original spelling was a second copy of the value. Now it is stored only
where it differs (NULL otherwise: a row with a NULL value also has a NULL original), and the
filter index ``(key, value, ref)`` ends with it: the count reads that index alone (13 ms),
the index grows only by the few spellings that differ, and the table loses a copy of nearly
every value (3% of a database freshly loaded with 50,000 entities, 6% after VACUUM).

The index keeps ``(key, value, ref)`` in front, so filter subqueries and ordered pages read
it as before. Migrating rewrites most search rows (seconds at 50,000 entities). Replicas
should run one version: one still on 0010's code writes rows that repeat the value (counted
correctly by the new facets, which group by the spelling shown) but its own facets skip the
rows written without one, until it is upgraded.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

INDEX = "ix_catalog_search_key_value"


def upgrade() -> None:
    # The index first (it may be missing: a first load drops it and builds it at its end, see
    # 0007), so that the rewrite of nearly every row does not also update it.
    op.drop_index(INDEX, "catalog_search", if_exists=True)
    op.execute("UPDATE catalog_search SET original_value = NULL WHERE original_value = value")
    op.create_index(INDEX, "catalog_search", ["key", "value", "ref", "original_value"])
    if op.get_bind().dialect.name == "postgresql":
        # Fresh statistics for the planner. The rewrite leaves dead row versions: facets read
        # the index alone only once VACUUM (autovacuum, or `greenroom db upgrade` followed by
        # `VACUUM ANALYZE catalog_search`) has marked the pages visible again.
        op.execute("ANALYZE catalog_search")


def downgrade() -> None:
    op.drop_index(INDEX, "catalog_search", if_exists=True)
    op.create_index(INDEX, "catalog_search", ["key", "value", "ref"])
    op.execute(
        "UPDATE catalog_search SET original_value = value "
        "WHERE original_value IS NULL AND value IS NOT NULL"
    )
