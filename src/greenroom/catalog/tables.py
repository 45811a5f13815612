"""The catalog's tables, declared once (SQLAlchemy Core); migrations create them.

- ``catalog_locations``: locations registered through the API (config ones live in config).
- ``catalog_entities``: one row per entity: the processed entity, its problems, and the final
  (stitched) entity that the API serves; ``final`` is NULL while an entity cannot be served.
- ``catalog_relations``: relations, each attributed to the entity whose processing emitted it.
- ``catalog_search``: the final entity flattened into ``key = value`` rows for filters and facets
  (served entities only; written and deleted with the entity's stitch). Its relations are not
  there: ``relations.*`` keys are read from ``catalog_relations`` (``relation_search.py``).
- ``catalog_stitch_queue``: entities whose relations changed through another entity's write,
  waiting to be stitched at the end of the root (a table of its own: a mark is a tiny row).
- ``catalog_roots``: when each root location is next due, and which replica holds its lease.
"""

from __future__ import annotations

import sqlalchemy as sa

from greenroom.catalog.text_index import create_text_indexes
from greenroom.db import metadata

REF = sa.String(512)

locations = sa.Table(
    "catalog_locations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("type", sa.String(255), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("type", "target", name="uq_catalog_locations_type_target"),
)

#: SQLite's rowid is a column declared ``INTEGER`` exactly.
ENTITY_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

entities = sa.Table(
    "catalog_entities",
    metadata,
    # An integer key, given by the writer in the order entities are written (migration 0013):
    # on SQLite the rowid itself, so every index carries it and the unique index on ref maps
    # a ref to its id without reading the row.
    sa.Column("id", ENTITY_ID, primary_key=True, autoincrement=False),
    sa.Column("ref", REF, nullable=False, unique=True),
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
    sa.Column("source_hash", sa.String(40), nullable=False, server_default=""),
    sa.Column("final", sa.Text, nullable=True),
    sa.Column("etag", sa.String(40), nullable=True),
    sa.Column("orphan", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_catalog_entities_origin", "origin_key"),
    sa.Index("ix_catalog_entities_source", "origin_key", "source_hash"),
    sa.Index("ix_catalog_entities_kind_name", "kind", "namespace", "name"),
    # Served entities only (migration 0008): filters and counts by kind read the index alone.
    sa.Index(
        "ix_catalog_entities_served_kind",
        sa.func.lower(sa.column("kind")),
        "ref",
        sqlite_where=sa.text("final IS NOT NULL"),
        postgresql_where=sa.text("final IS NOT NULL"),
    ),
)

relations = sa.Table(
    "catalog_relations",
    metadata,
    sa.Column("originating_ref", REF, nullable=False),
    sa.Column("source_ref", REF, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("target_ref", REF, nullable=False),
    sa.Index("ix_catalog_relations_originating", "originating_ref"),
    sa.Index("ix_catalog_relations_source", "source_ref"),
    # One entity's relations of a type, by a seek (migration 0016): its smallest target, the
    # sort value an ordered page checks row by row, and a relation filter checked entity by
    # entity. Not instead of the index above: built at the end of a first load (with it, the
    # load's stitch would maintain a wider index row by row: 3 s more at 100,000 entities).
    sa.Index(
        "ix_catalog_relations_source_type",
        "source_ref",
        sa.func.lower(sa.column("type")),
        "target_ref",
    ),
    # Filters, facets and full text on ``relations.<type>`` keys (migration 0016,
    # ``relation_search.py``): the relations of a type, by target, with their sources.
    sa.Index(
        "ix_catalog_relations_type_target",
        sa.func.lower(sa.column("type")),
        "target_ref",
        "source_ref",
    ),
)

search = sa.Table(
    "catalog_search",
    metadata,
    # No foreign key (migration 0009): rows are written and deleted with their entity's stitch.
    sa.Column("ref", REF, nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("value", sa.String(255), nullable=True),
    # NULL where the spelling is the value's own (search_rows); NULL value: NULL here too.
    sa.Column("original_value", sa.String(255), nullable=True),
    # The entity's id (migration 0014): an entity's rows are found by it, not by its ref, so
    # that the rows of entities written in order append to that index instead of landing at
    # random leaves (a first load of 50,000 entities, SQLite: 9% less time).
    sa.Column("entity_id", ENTITY_ID, nullable=False),
    # original_value then entity_id last: facets count from the index alone (migration 0011),
    # and an ordered page checks each row's entity by its id without reading the row.
    sa.Index("ix_catalog_search_key_value", "key", "value", "ref", "original_value", "entity_id"),
    sa.Index("ix_catalog_search_entity_key", "entity_id", "key", "value"),
)

stitch_queue = sa.Table(
    "catalog_stitch_queue",
    metadata,
    sa.Column("ref", REF, primary_key=True),
)

#: Indexes that a first ingestion builds once at its end instead of row by row: inserting
#: millions of rows into an index in random order costs several times more than sorting them
#: once (see :meth:`greenroom.catalog.ingest.engine.IngestionEngine.bulk_load`).
#: ``ix_catalog_relations_originating`` only serves replacing what an entity emitted, which a
#: first load does not do; ``ix_catalog_relations_type_target`` and
#: ``ix_catalog_relations_source_type`` only serve reads.
DEFERRED_INDEXES: tuple[sa.Index, ...] = tuple(
    index
    for index in (*search.indexes, *relations.indexes)
    if index.name
    in (
        "ix_catalog_search_key_value",
        "ix_catalog_relations_originating",
        "ix_catalog_relations_type_target",
        "ix_catalog_relations_source_type",
    )
)

roots = sa.Table(
    "catalog_roots",
    metadata,
    sa.Column("root_key", sa.String(2048), primary_key=True),
    sa.Column("next_refresh_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    # When a walk of the root last ended; NULL until its first (migration 0012): a first walk
    # under way holds back the deferred indexes, a refresh does not.
    sa.Column("walked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_catalog_roots_due", "next_refresh_at"),
)


# What the migrations add beyond tables and indexes, so that a new database created from this
# metadata in one step (``db.upgrade``) is the database the migrations build; a test compares
# the two on both databases. PostgreSQL only: SQLite has no counterpart of any of it.
#: Migration 0010: the number of distinct refs per column, as a fraction of the rows.
N_DISTINCT = {
    "catalog_search": {"ref": -0.03, "entity_id": -0.03},
    "catalog_relations": {"originating_ref": -0.1, "source_ref": -0.1, "target_ref": -0.1},
}


#: Migration 0015: the entity JSON columns, compressed with lz4 where the server has it.
LZ4_COLUMNS = {"catalog_entities": ("processed", "final")}


def lz4_available(connection: sa.Connection) -> bool:
    """Whether PostgreSQL can compress values with lz4 (version 14 on, built ``--with-lz4``)."""
    return bool(
        connection.exec_driver_sql(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        ).scalar()
    )


@sa.event.listens_for(entities, "after_create")
@sa.event.listens_for(search, "after_create")
@sa.event.listens_for(relations, "after_create")
def _after_create(table: sa.Table, connection: sa.Connection, **_: object) -> None:
    if connection.dialect.name != "postgresql":
        return
    columns = LZ4_COLUMNS.get(table.name, ())
    if columns and lz4_available(connection):
        alter = ", ".join(f"ALTER COLUMN {column} SET COMPRESSION lz4" for column in columns)
        connection.exec_driver_sql(f"ALTER TABLE {table.name} {alter}")
    for column, fraction in N_DISTINCT.get(table.name, {}).items():
        connection.exec_driver_sql(
            f"ALTER TABLE {table.name} ALTER COLUMN {column} SET (n_distinct = {fraction})"
        )
    if table is search:
        # Migration 0004: key and value are correlated; the planner estimates filters better.
        connection.exec_driver_sql(
            "CREATE STATISTICS IF NOT EXISTS catalog_search_key_value_stats "
            "(mcv, dependencies) ON key, value FROM catalog_search"
        )
        create_text_indexes(connection)  # migration 0006: full text's trigram indexes
