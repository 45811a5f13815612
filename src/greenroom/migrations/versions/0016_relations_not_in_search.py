"""Filters, facets, full text and order on ``relations.<type>`` keys read ``catalog_relations``
(``catalog/relation_search.py``): the search rows of relations are deleted, and relations get
the indexes ``(lower(type), target_ref, source_ref)`` and ``(source_ref, lower(type),
target_ref)`` that those reads need (one entity's relations of a type are then a seek).

The ``relations.*`` rows were a quarter of ``catalog_search`` and repeated the pairs of
``catalog_relations``; they were also the only search rows a peer's stitch rewrote. Without
them, a first load of 100,000 entities writes 26% fewer search rows (``docs/benchmarks.md``).

Every ``relations.*`` search row goes, then the rows of an entity's own field so named (a kind
may allow a top-level ``relations.x`` or ``Relations``) are written again from its served JSON.
Refs in relations are made lower case where a plugin's processor wrote them otherwise (the
ingestion now does so itself, as Backstage's ``stringifyEntityRef``), since filters compare
targets as stored, and the entities whose relations that changed are queued to be stitched at
the end of the next walk. Both read every row in Python (Unicode's case, not only ASCII's): a
few seconds at 100,000 entities.

Replicas must be upgraded together: a replica on the code before this one still writes and
reads relation search rows, and its filters on ``relations.*`` find only the entities it wrote.
Downgrading writes the rows again from the served JSON of each entity, as the code before this
one did; refs it lower-cased stay so.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

from greenroom.catalog.search_rows import search_rows

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

REF = sa.String(512)
MAX_KEY = MAX_VALUE = 200  # ``search_rows``: longer keys had no row, longer values NULL
TYPE_CHARS = 64  # ``ingest.engine.RELATION_TYPE_CHARS``
BATCH = 1000
PREFIX = "relations."
SEARCH_COLUMNS = ("ref", "key", "value", "original_value", "entity_id")

relations = sa.Table(
    "catalog_relations",
    sa.MetaData(),
    sa.Column("originating_ref", REF, nullable=False),
    sa.Column("source_ref", REF, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("target_ref", REF, nullable=False),
)
by_source = sa.Index(
    "ix_catalog_relations_source_type",
    relations.c.source_ref,
    sa.func.lower(relations.c.type),
    relations.c.target_ref,
)
by_type_target = sa.Index(
    "ix_catalog_relations_type_target",
    sa.func.lower(relations.c.type),
    relations.c.target_ref,
    relations.c.source_ref,
)
entities = sa.table(
    "catalog_entities",
    sa.column("id"),
    sa.column("ref"),
    sa.column("final", sa.Text),
    sa.column("source_hash"),
)
search = sa.table("catalog_search", *(sa.column(name) for name in SEARCH_COLUMNS))
queue = sa.table("catalog_stitch_queue", sa.column("ref"))
RELATION_ROWS = "DELETE FROM catalog_search WHERE key LIKE 'relations.%'"


def _served(bind: sa.Connection) -> Iterator[tuple[int, str, str]]:
    """``(id, ref, final)`` of every served entity, a batch at a time (no cursor held open
    across the writes in between)."""
    last = None
    while True:
        query = sa.select(entities.c.id, entities.c.ref, entities.c.final).where(
            entities.c.final.is_not(None)
        )
        if last is not None:
            query = query.where(entities.c.id > last)
        rows = bind.execute(query.order_by(entities.c.id).limit(BATCH)).all()
        if not rows:
            return
        yield from ((int(r.id), str(r.ref), str(r.final)) for r in rows)
        last = rows[-1].id


def _insert(bind: sa.Connection, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        bind.execute(search.insert(), rows[start : start + BATCH])


def _lower_refs(bind: sa.Connection) -> None:
    """Relations' refs in lower case (Python's), their sources queued to be stitched; the
    entities that emitted a type the ingestion now refuses, to be processed again."""
    every = bind.execute(sa.select(relations).execution_options(yield_per=BATCH * 10))
    capitals = []
    odd_types: set[str] = set()
    for row in every:
        if row.source_ref != row.source_ref.lower() or row.target_ref != row.target_ref.lower():
            capitals.append(row)
        if not (0 < len(row.type) <= TYPE_CHARS and row.type.isascii()):
            odd_types.add(row.originating_ref)
    # A type the ingestion now refuses (SQL could not fold its case as Python does): the entity
    # that emitted it is processed again at the next walk, which reports the problem.
    odd = sorted(odd_types)
    for start in range(0, len(odd), BATCH):
        bind.execute(
            entities.update()
            .where(entities.c.ref.in_(odd[start : start + BATCH]))
            .values(source_hash="")
        )
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
    sources = sorted({row.source_ref.lower() for row in capitals})
    for start in range(0, len(sources), BATCH):
        part = sources[start : start + BATCH]
        known = set(bind.execute(sa.select(queue.c.ref).where(queue.c.ref.in_(part))).scalars())
        new = [{"ref": ref} for ref in part if ref not in known]
        if new:
            bind.execute(queue.insert(), new)


def _own_relation_keys(ref: str, entity_id: int, text: str) -> list[dict[str, Any]]:
    """The search rows ``relations.*`` of the entity's own fields (not of its relations)."""
    low = text.lower()
    # Canonical JSON: the relations array is ``"relations":[`` once; anything else is rare.
    if low.count('"relations"') <= 1 and '"relations.' not in low:
        return []
    final = orjson.loads(text)
    final.pop("relations", None)
    return [
        dict(zip(SEARCH_COLUMNS, row, strict=True))
        for row in search_rows(ref, final, entity_id)
        if row[1].startswith(PREFIX)
    ]


def upgrade() -> None:
    bind = op.get_bind()
    _lower_refs(bind)
    op.execute(RELATION_ROWS)
    own: list[dict[str, Any]] = []
    for entity_id, ref, text in _served(bind):
        own += _own_relation_keys(ref, entity_id, text)
    _insert(bind, own)
    # Not ``checkfirst``: SQLAlchemy's reflection skips expression indexes on SQLite.
    op.execute(sa.schema.CreateIndex(by_type_target, if_not_exists=True))
    op.execute(sa.schema.CreateIndex(by_source, if_not_exists=True))
    if bind.dialect.name == "postgresql":
        op.execute("ANALYZE catalog_relations")
        op.execute("ANALYZE catalog_search")


def _relation_rows(
    ref: str, entity_id: int, text: str, had: set[tuple[str, str | None]]
) -> list[dict[str, Any]]:
    """The rows the code before this migration wrote for the entity's relations: after its
    own fields' (``had``), each ``(key, value)`` once."""
    rows = []
    for relation in orjson.loads(text).get("relations") or []:
        key = f"{PREFIX}{relation['type']}".lower()
        original: str | None = relation["targetRef"]
        value = None if original is None else original.lower()
        if len(key) > MAX_KEY:
            continue
        if value is not None and len(value) > MAX_VALUE:
            value = original = None
        elif original == value:
            original = None
        if (key, value) in had:
            continue
        had.add((key, value))
        rows.append(
            {
                "ref": ref,
                "key": key,
                "value": value,
                "original_value": original,
                "entity_id": entity_id,
            }
        )
    return rows


def downgrade() -> None:
    bind = op.get_bind()
    op.execute("DROP INDEX IF EXISTS ix_catalog_relations_type_target")
    op.execute("DROP INDEX IF EXISTS ix_catalog_relations_source_type")
    kept: dict[int, set[tuple[str, str | None]]] = {}
    for entity_id, key, value in bind.execute(
        sa.select(search.c.entity_id, search.c.key, search.c.value).where(
            search.c.key.like(PREFIX + "%")
        )
    ):
        kept.setdefault(int(entity_id), set()).add((str(key), value))
    rows: list[dict[str, Any]] = []
    for entity_id, ref, text in _served(bind):
        rows += _relation_rows(ref, entity_id, text, kept.get(entity_id, set()))
        if len(rows) >= BATCH:
            _insert(bind, rows)
            rows = []
    _insert(bind, rows)
    if bind.dialect.name == "postgresql":
        op.execute("ANALYZE catalog_search")
