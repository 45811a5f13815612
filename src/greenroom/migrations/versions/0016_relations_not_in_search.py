"""Filters, facets, full text and order on ``relations.<type>`` keys read ``catalog_relations``
(``catalog/relation_search.py``): the search rows of relations are deleted, and relations get
the index ``(lower(type), target_ref, source_ref)`` that those reads need.

The ``relations.*`` rows were a quarter of ``catalog_search`` and repeated the pairs of
``catalog_relations``; they were also the only search rows a peer's stitch rewrote. Without
them, a first load of 100,000 entities writes 26% fewer search rows (``docs/benchmarks.md``).

Refs in relations are made lower case where a plugin's processor wrote them otherwise (the
ingestion now does so itself), since filters compare targets as stored. Only ASCII capitals are
found by the database's ``lower``; such refs are rare (built-in relations are lower case), and
the next processing of their entity writes them in lower case anyway.

Replicas must be upgraded together: a replica on the code before this one still writes and
reads relation search rows, and its filters on ``relations.*`` find only the entities it wrote.
Downgrading writes the rows again from the relations of served entities.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

REF = sa.String(512)
MAX_VALUE = 200  # ``search_rows.MAX_VALUE``: longer values were stored as NULL
BATCH = 500

relations = sa.Table(
    "catalog_relations",
    sa.MetaData(),
    sa.Column("originating_ref", REF, nullable=False),
    sa.Column("source_ref", REF, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("target_ref", REF, nullable=False),
)
by_type_target = sa.Index(
    "ix_catalog_relations_type_target",
    sa.func.lower(relations.c.type),
    relations.c.target_ref,
    relations.c.source_ref,
)
# A search row of a relation of its entity: the same key and value (NULL for a target over
# ``MAX_VALUE`` characters). A row of the entity's own field that a kind let be called
# ``relations.x`` stays (it is written again with the entity's next stitch anyway).
RELATION_ROW = (
    "EXISTS (SELECT 1 FROM catalog_relations r WHERE r.source_ref = {s}.ref "
    "AND 'relations.' || lower(r.type) = {s}.key AND (r.target_ref = {s}.value "
    f"OR ({{s}}.value IS NULL AND length(r.target_ref) > {MAX_VALUE})))"
)


def _lower_refs(bind: sa.Connection) -> None:
    capitals = bind.execute(
        sa.select(relations).where(
            sa.or_(
                relations.c.source_ref != sa.func.lower(relations.c.source_ref),
                relations.c.target_ref != sa.func.lower(relations.c.target_ref),
            )
        )
    ).all()
    for start in range(0, len(capitals), BATCH):
        part = capitals[start : start + BATCH]
        for row in part:
            bind.execute(
                relations.delete().where(
                    *(column == value for column, value in zip(relations.c, row, strict=True))
                )
            )
        bind.execute(
            relations.insert(),
            [
                {
                    **row._asdict(),
                    "source_ref": row.source_ref.lower(),
                    "target_ref": row.target_ref.lower(),
                }
                for row in part
            ],
        )


def upgrade() -> None:
    bind = op.get_bind()
    _lower_refs(bind)
    # A pattern rather than a range of keys: PostgreSQL compares text by the database's
    # collation, in which ``.`` and ``/`` may weigh nothing.
    row = RELATION_ROW.format(s="catalog_search")
    op.execute(f"DELETE FROM catalog_search WHERE key LIKE 'relations.%' AND {row}")
    # Not ``checkfirst``: SQLAlchemy's reflection skips expression indexes on SQLite.
    op.execute(sa.schema.CreateIndex(by_type_target, if_not_exists=True))
    if bind.dialect.name == "postgresql":
        op.execute("ANALYZE catalog_relations")
        op.execute("ANALYZE catalog_search")


def downgrade() -> None:
    bind = op.get_bind()
    op.execute("DROP INDEX IF EXISTS ix_catalog_relations_type_target")
    value = f"CASE WHEN length(r.target_ref) <= {MAX_VALUE} THEN r.target_ref END"
    op.execute(
        "INSERT INTO catalog_search (ref, key, value, original_value, entity_id) "
        f"SELECT DISTINCT r.source_ref, 'relations.' || lower(r.type), {value}, NULL, e.id "
        "FROM catalog_relations r JOIN catalog_entities e ON e.ref = r.source_ref "
        "WHERE e.final IS NOT NULL AND NOT EXISTS (SELECT 1 FROM catalog_search s "
        "WHERE s.entity_id = e.id AND s.key = 'relations.' || lower(r.type) "
        f"AND (s.value = {value} OR (s.value IS NULL AND {value} IS NULL)))"
    )
    if bind.dialect.name == "postgresql":
        op.execute("ANALYZE catalog_search")
