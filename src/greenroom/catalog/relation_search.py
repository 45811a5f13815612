"""Search keys ``relations.<type>`` answered from ``catalog_relations``.

Backstage writes a search row ``relations.<type> = <targetRef>`` for every relation of a served
entity, and filters, facets, full text and order read them like any other key. Those rows are
the pairs of ``catalog_relations`` again: a quarter of all search rows (921,778 of 3,534,584 at
100,000 entities), and the only ones a peer's stitch had to rewrite when another entity's write
gave it a relation. Greenroom does not write them; this module reads the relations themselves,
through ``ix_catalog_relations_type_target`` ``(lower(type), target_ref, source_ref)``, with
the answers those rows gave:

- a key is the type lower-cased, a value the target ref (stored in lower case, as every ref:
  ``ingest.engine.prepare``); a target over 200 characters has no value (a NULL search value),
  so it matches no value, no pattern and no term, is no facet, and sorts as missing, while
  ``relations.<type>`` alone (the key exists) still matches;
- an entity counts once per key and value, however many entities emitted the relation;
- only served entities match: a relation may name as its source an entity that is not stored,
  or not served.

One difference in time, not in kind: relations are written when an entity is processed and the
served JSON of their source when it is stitched. Between the two (at most until the end of the
walk that wrote them, where peers are stitched), a filter sees a relation that the entity's
``relations`` do not show yet, where search rows lagged in the same way behind it instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from greenroom.catalog.search_rows import MAX_VALUE
from greenroom.catalog.tables import entities, relations, search

PREFIX = "relations."


def relation_type(key: str) -> str | None:
    """The relation type a search key names (``relations.ownedby``: ``ownedby``), or None."""
    return key[len(PREFIX) :] if key.startswith(PREFIX) else None


def _of_type(rows: sa.FromClause, type_: str) -> sa.ColumnElement[bool]:
    """Relations of ``type_``: ``lower(type)`` as both indexes have it. Types are ASCII names
    (``ingest.engine.prepare`` refuses others), which SQLite's ``lower`` folds as Python does.
    With the source given too, ``ix_catalog_relations_source_type (source_ref, lower(type),
    target_ref)`` finds one entity's relations of the type by a seek."""
    return sa.func.lower(rows.c.type) == type_


def _has_value(rows: sa.FromClause) -> sa.ColumnElement[bool]:
    """Targets short enough to have been a search value (longer ones were stored as NULL)."""
    return sa.func.length(rows.c.target_ref) <= MAX_VALUE


def _served(rows: sa.FromClause) -> sa.ColumnElement[bool]:
    """The relation's source is a served entity (its ref looked up in the unique index)."""
    return sa.exists().where(entities.c.ref == rows.c.source_ref, entities.c.final.is_not(None))


def sources(
    type_: str, values: Sequence[str] | None, prefix: str | None, ref: sa.ColumnElement[str] | None
) -> sa.Select[Any]:
    """The sources (column ``ref``) of relations of ``type_`` to one of ``values``, or to a
    target starting with ``prefix`` (a ``LIKE`` pattern already escaped), or to any target when
    both are None; only those of the entity ``ref`` when it is given (an ``EXISTS`` of the
    entity's own relations, found by source, for a scan that stops after a page)."""
    rows = relations.alias("fr")
    conditions = [_of_type(rows, type_)]
    if ref is not None:
        conditions.append(rows.c.source_ref == ref)
    if prefix is not None:
        conditions += [rows.c.target_ref.like(prefix + "%", escape="\\"), _has_value(rows)]
    elif values is not None:
        wanted = [value for value in values if len(value) <= MAX_VALUE]
        conditions.append(rows.c.target_ref.in_(wanted) if wanted else sa.false())
    return sa.select(rows.c.source_ref.label("ref")).where(*conditions)


def text_matches(pattern: str, types: Sequence[str] | None) -> sa.Select[Any]:
    """The served sources (column ``ref``) of relations whose target matches the ``LIKE``
    pattern ``pattern``: of the given types, or of any type with None."""
    rows = relations.alias("tr")
    conditions = [rows.c.target_ref.like(pattern, escape="\\"), _has_value(rows), _served(rows)]
    if types is not None:
        conditions.append(sa.or_(*(_of_type(rows, type_) for type_ in types)))
    return sa.select(rows.c.source_ref.label("ref")).where(*conditions)


def of_type_with_value(rows: sa.FromClause, type_: str) -> list[sa.ColumnElement[bool]]:
    """The relations ``rows`` of ``type_`` whose target was a search value, by the type's
    index (an ordered page reads it in ``(target, source)`` order)."""
    return [_of_type(rows, type_), _has_value(rows)]


def smallest_target(type_: str, ref: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """The smallest target of the entity ``ref``'s relations of ``type_`` that was a search
    value: its sort value, with the smallest value of its search rows of the key."""
    rows = relations.alias("or_")
    return (
        sa.select(sa.func.min(rows.c.target_ref))
        .where(rows.c.source_ref == ref, _of_type(rows, type_), _has_value(rows))
        .correlate_except(rows)
        .scalar_subquery()
    )


def facet_rows(type_: str, key: str, refs: sa.Select[Any], own_rows: bool) -> list[sa.Select[Any]]:
    """The ``(ref, spelling)`` of each entity of ``refs`` and value of the key
    ``relations.<type_>``, for a facet: from the relations, each pair once, and, when some
    entity has a field so named (``own_rows``), from its search rows, which come first with
    their spelling (a relation with the same value is then not counted again)."""
    rows = relations.alias("fa")
    related = (
        sa.select(rows.c.source_ref, rows.c.target_ref)
        .where(_of_type(rows, type_), _has_value(rows), rows.c.source_ref.in_(refs))
        .distinct()
    )
    if not own_rows:
        return [related]
    own = sa.select(search.c.ref, sa.func.coalesce(search.c.original_value, search.c.value)).where(
        search.c.key == key, search.c.value.is_not(None), search.c.ref.in_(refs)
    )
    repeated = sa.exists().where(
        search.c.key == key, search.c.value == rows.c.target_ref, search.c.ref == rows.c.source_ref
    )
    return [own, related.where(~repeated)]


def has_own_rows(connection: sa.Connection, key: str) -> bool:
    """Whether some entity has a field called like the relation key ``key`` (an index
    lookup; nearly always not)."""
    found = sa.select(search.c.ref).where(search.c.key == key).limit(1)
    return connection.execute(found).first() is not None
