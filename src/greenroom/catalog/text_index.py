"""The trigram indexes behind full-text search (``fullTextFilterTerm``), declared in one place.

Full text is a case-insensitive substring match, ``value LIKE '%term%'`` on the
``catalog_search`` rows of the searched keys. A B-tree cannot serve a pattern that starts with
``%``, so without help the query reads every row of those keys. On PostgreSQL a GIN index with
``pg_trgm``'s ``gin_trgm_ops`` serves such a ``LIKE`` directly (and rechecks each candidate, so
answers are exact). There is one partial index per key of :data:`TEXT_KEYS`
(``WHERE key = 'metadata.name'``), so that a search of a key reads that key's entries only and
the index is maintained for a few rows per entity rather than for all ~35.

Keys outside :data:`TEXT_KEYS`, terms without three letters or digits in a row, and databases
without the indexes (SQLite, or PostgreSQL where ``pg_trgm`` cannot be created) run the same
query, answered from the ``(key, value)`` index instead: slower, never different. The query is
written in :func:`greenroom.catalog.queries.full_text_refs`.

The bulk-load mode of ingestion drops the large ``catalog_search`` indexes during a first
ingestion and recreates them afterwards: :func:`drop_text_indexes` and
:func:`create_text_indexes` are the calls for these ones.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

log = logging.getLogger(__name__)

# Lower-case, as keys are stored. Backstage's catalog table searches metadata.name,
# metadata.title and spec.profile.displayName. metadata.description is left out on purpose:
# long texts make the biggest index and the slowest to maintain during ingestion; searching it
# works, through the (key, value) index.
TEXT_KEYS: dict[str, str] = {
    "metadata.name": "ix_catalog_search_text_name",
    "metadata.title": "ix_catalog_search_text_title",
    "spec.profile.displayname": "ix_catalog_search_text_displayname",
}


def _trgm_schema(connection: sa.Connection, *, create: bool = True) -> str | None:
    """The schema holding ``pg_trgm``, creating the extension if needed (and ``create``);
    ``None`` if it is not there and cannot be created (not installed, or no privilege)."""
    find = sa.text(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_trgm'"
    )
    schema = connection.execute(find).scalar()
    if schema is not None or not create:
        return None if schema is None else str(schema)
    try:
        with connection.begin_nested():
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as exc:
        log.warning(
            "pg_trgm is not available (%s): full-text search works without its index, more slowly",
            str(exc.orig).strip().splitlines()[0] if exc.orig else exc,
        )
        return None
    schema = connection.execute(find).scalar()
    return None if schema is None else str(schema)


def create_statements(schema: str) -> list[str]:
    """The ``CREATE INDEX`` statements, with ``gin_trgm_ops`` from ``schema``."""
    opclass = f'"{schema}".gin_trgm_ops'
    return [
        f"CREATE INDEX IF NOT EXISTS {name} ON catalog_search "
        f"USING gin (value {opclass}) WHERE key = '{key}'"
        for key, name in TEXT_KEYS.items()
    ]


def create_text_indexes(connection: sa.Connection, *, create_extension: bool = True) -> bool:
    """Create the trigram indexes (PostgreSQL only; idempotent). ``False`` when there are
    none: SQLite, or ``pg_trgm`` is not there (and could not, or was not to, be created)."""
    if connection.dialect.name != "postgresql":
        return False
    schema = _trgm_schema(connection, create=create_extension)
    if schema is None:
        return False
    for statement in create_statements(schema):
        connection.exec_driver_sql(statement)
    return True


def drop_text_indexes(connection: sa.Connection) -> None:
    """Drop the trigram indexes, if there are any (the extension stays)."""
    if connection.dialect.name != "postgresql":
        return
    for name in TEXT_KEYS.values():
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
