"""Which of the indexes a first load builds at its end are absent from a database."""

from __future__ import annotations

import sqlalchemy as sa

from greenroom.catalog.tables import DEFERRED_INDEXES
from greenroom.catalog.text_index import TEXT_KEYS
from greenroom.db import index_names


def missing_deferred(engine: sa.Engine) -> set[str]:
    """The deferred indexes (on PostgreSQL with the trigram indexes of full text) absent."""
    with engine.connect() as conn:
        names = index_names(conn, ("catalog_search", "catalog_relations"))
        expected = {str(index.name) for index in DEFERRED_INDEXES}
        if conn.dialect.name == "postgresql":
            expected |= set(TEXT_KEYS.values())
    return expected - names
