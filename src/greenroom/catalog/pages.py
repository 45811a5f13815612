"""Pages of ``/entities/by-query`` that start where the previous page ended (keyset pages).

A cursor used to hold an offset: a page read and sorted every entity before it, and an order on
a search key computed that key for every matching entity before the first row came out (50,000
entities, ``orderField=metadata.name`` on the 32,480 components: 580 ms for the first page, a
second for the last; without an order, 157 ms for the last page of the whole catalog). Now a
cursor holds the position of the last entity of its page (of the first, going back), as
Backstage's does, and the next page is read from there:

- without an order, in ``ref`` order, from the served-kind index or the unique index on ``ref``;
- ordered by a key, first the entities with a value for it, straight from the
  ``(key, value, ref)`` index in the page's order, each checked against the filters as it is
  read (a filter that keeps few entities makes that scan longer: it is still bounded by the
  entities holding the key); then those without a value (nulls last), in ``ref`` order;
- with a full-text term, from the matching refs alone, as before;
- ordered by a ``relations.*`` key (``relation_search.py``), the same from the relations of
  the type in ``(target, source)`` order, merged with the search rows of an entity's own field
  so named (nearly always none).

The order: the entity's smallest value of the key, ascending or descending, then entities
without one; ties, and entities without a value, by ``ref`` in the direction of the order
(Backstage breaks ties by entity id in that direction too). Descending is then the exact
reverse of ascending among entities with a value, read from the same index backwards: with
ties by ``ref`` ascending (as offsets had them), ``spec.lifecycle,desc`` sorted the 23,000
components of a tie on every page (390 ms). An offset (Backstage's ``offset`` on a first
request) is still honoured, by skipping rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from greenroom.catalog import relation_search
from greenroom.catalog.predicates import Node
from greenroom.catalog.queries import (
    SERVED,
    filter_clause,
    filter_conditions,
    order_value,
    ref_name,
)
from greenroom.catalog.tables import entities, relations, search

Order = tuple[str, bool]  # search key, descending
#: Search keys that every served entity has a value for: ordered by one of them, no entity
#: comes in the part without a value, which need not be looked for.
ALWAYS_PRESENT = frozenset({"kind", "metadata.name", "metadata.namespace", "metadata.uid"})


@dataclass(frozen=True)
class Position:
    """Where a page ends (or, going back, starts): the sort value of an entity there
    (``None`` when ordered by a key it has no value for) and its ref."""

    value: str | None
    ref: str


@dataclass(frozen=True)
class Row:
    """An entity of a page: its ref, its sort value, its served JSON."""

    ref: str
    value: str | None
    final: str


def read(
    conn: sa.Connection,
    where: Node | None,
    order: Order | None,
    matches: sa.Subquery | None,
    *,
    position: Position | None,
    backwards: bool,
    offset: int,
    limit: int,
    total: bool,
) -> tuple[list[Row], int | None]:
    """A page of a by-query, in the order of the page, from the entities of a full-text term
    (``matches``) or from all; with the number of matches when ``total`` asked for it and the
    page's query could count them (a window over the matches of a term that found any)."""
    if matches is None and order is not None and _own_relation_key(conn, order[0]):
        # An entity has a field called like a relation key (a kind may allow one): its values
        # merge with the relations' in no index's order; every entity's is computed instead.
        matches = sa.select(entities.c.ref).where(SERVED).subquery("matches")
        total = False  # counted apart, as for other pages without a term
    if matches is None:
        page = read_page(
            conn, where, order, position=position, backwards=backwards, offset=offset, limit=limit
        )
        return page, None
    query = text_page(
        matches,
        where,
        order,
        position=position,
        backwards=backwards,
        offset=offset,
        limit=limit,
        total=total,
    )
    result = conn.execute(query).all()
    rows = [Row(row.ref, row.value, row.final) for row in result]
    if backwards:
        rows.reverse()
    return rows, (result[0].total if total and result else None)


def _own_relation_key(conn: sa.Connection, key: str) -> bool:
    """Whether ``key`` is a ``relations.*`` key that some entity's own field gives search
    rows too (nearly never: one index lookup)."""
    key = key.lower()
    return relation_search.relation_type(key) is not None and relation_search.has_own_rows(
        conn, key
    )


def read_page(
    conn: sa.Connection,
    where: Node | None,
    order: Order | None,
    *,
    position: Position | None = None,
    backwards: bool = False,
    offset: int = 0,
    limit: int,
) -> list[Row]:
    """Up to ``limit`` entities after ``position`` (before it, with ``backwards``), in the
    order of the page; ``offset`` entities are skipped first (forward only)."""
    phases: list[sa.Select[Any] | None]
    if order is None:
        phases = [_by_ref(where, position.ref if position else None, backwards)]
    else:
        phases = [
            _with_value(where, order, position, backwards),
            _without_value(where, order, position, backwards),
        ]
        if backwards:
            phases.reverse()
    rows: list[Row] = []
    skip = offset
    for query in phases:
        if query is None or len(rows) >= limit:
            continue
        got = conn.execute(query.offset(skip).limit(limit - len(rows))).all()
        if skip and not got:
            # Every row of this part was skipped: the rest of the offset goes to the next.
            counted = sa.select(sa.func.count()).select_from(query.order_by(None).subquery())
            skip -= conn.execute(counted).scalar_one()
        else:
            skip = 0
        rows.extend(Row(row.ref, row.value, row.final) for row in got)
    if backwards:
        rows.reverse()
    return rows


def _by_ref(where: Node | None, after: str | None, down: bool) -> sa.Select[Any]:
    """Filtered entities in ``ref`` order (descending with ``down``), from beyond ``after``."""
    ref = entities.c.ref
    query = sa.select(ref, sa.null().label("value"), entities.c.final).where(filter_clause(where))
    if after is not None:
        query = query.where(ref < after if down else ref > after)
    return query.order_by(ref.desc() if down else ref.asc())


def _with_value(
    where: Node | None, order: Order, position: Position | None, backwards: bool
) -> sa.Select[Any] | None:
    """Entities with a value for the order's key, read in order from ``(key, value, ref)``.

    An entity has a row per value of a key (tags, a list's items); it is taken at its
    smallest, so that it comes once, where the order puts it. Filters are checked row by row
    with ``EXISTS`` on ``(entity_id, key, value)`` (an ``IN`` list of every entity matching them
    would be built again for each page: 30 ms for 23,000 production components). The filter
    index ends with the entity's id, so neither needs the row itself.
    """
    key, down = order[0].lower(), order[1] != backwards
    if relation_search.relation_type(key) is not None:
        return _with_relation_value(where, key, down, position, backwards)
    rows, other = search.alias("s"), search.alias("s_min")
    smallest = (
        sa.select(sa.func.min(other.c.value))
        .where(other.c.entity_id == rows.c.entity_id, other.c.key == key)
        .scalar_subquery()
    )
    # ``<=`` the smallest is ``=`` (no value is below it), but PostgreSQL's planner guesses a
    # third of the rows pass it rather than one in two hundred: with ``=`` it expected the
    # ordered scan to read the whole key for a page and sorted every filtered entity instead
    # (590 ms against 10 for production components by name, 50,000 entities).
    conditions: list[Any] = [rows.c.key == key, rows.c.value.is_not(None), rows.c.value <= smallest]
    filters = filter_conditions(where, rows.c.ref, from_ref=True, correlated=rows.c.entity_id)
    if filters is not None:
        conditions.append(filters)
    if _past_values(position, backwards):
        return None
    if position is not None and position.value is not None:
        # (key, value, ref) as a row: a range of the index, where it starts or ends.
        here = [rows.c.key, rows.c.value, rows.c.ref]
        conditions.append(_beyond(here, [key, position.value, position.ref], down))
    return (
        sa.select(rows.c.ref, rows.c.value, entities.c.final)
        .join(entities, entities.c.id == rows.c.entity_id)
        .where(SERVED, *conditions)
        .order_by(
            rows.c.value.desc() if down else rows.c.value.asc(),
            rows.c.ref.desc() if down else rows.c.ref.asc(),
        )
    )


def _past_values(position: Position | None, backwards: bool) -> bool:
    """Whether a page going forward starts past every entity with a value for the key."""
    return position is not None and position.value is None and not backwards


def _beyond(here: list[Any], there: list[str], down: bool) -> sa.ColumnElement[bool]:
    """Index entries ``here`` (columns, as a row) after ``there`` in the page's direction."""
    row, bound = sa.tuple_(*here), sa.tuple_(*(sa.literal(value) for value in there))
    return row < bound if down else row > bound


def _with_relation_value(
    where: Node | None, key: str, down: bool, position: Position | None, backwards: bool
) -> sa.Select[Any] | None:
    """:func:`_with_value` for a ``relations.<type>`` key, whose ``(value, ref)`` pairs are
    the relations of the type, ``(target, source)``, read in that order from
    ``ix_catalog_relations_type_target``. Each pair once (``GROUP BY`` in the index's order:
    an entity can have a relation twice, emitted by two entities), at the entity's smallest
    target. Only for a key that no entity has a field of (see :func:`read`)."""
    type_ = relation_search.relation_type(key)
    assert type_ is not None
    rows = relations.alias("r")
    conditions: list[Any] = [
        *relation_search.of_type_with_value(rows, type_),
        rows.c.target_ref <= relation_search.smallest_target(type_, rows.c.source_ref),
    ]
    filters = filter_conditions(where, rows.c.source_ref, from_ref=True, correlated=entities.c.id)
    if filters is not None:
        conditions.append(filters)
    if _past_values(position, backwards):
        return None
    if position is not None and position.value is not None:
        here = [rows.c.target_ref, rows.c.source_ref]
        conditions.append(_beyond(here, [position.value, position.ref], down))
    return (
        sa.select(
            rows.c.source_ref.label("ref"),
            rows.c.target_ref.label("value"),
            sa.func.min(entities.c.final).label("final"),  # the one entity's
        )
        .join(entities, entities.c.ref == rows.c.source_ref)
        .where(SERVED, *conditions)
        .group_by(rows.c.target_ref, rows.c.source_ref)
        .order_by(
            rows.c.target_ref.desc() if down else rows.c.target_ref.asc(),
            rows.c.source_ref.desc() if down else rows.c.source_ref.asc(),
        )
    )


def _without_value(
    where: Node | None, order: Order, position: Position | None, backwards: bool
) -> sa.Select[Any] | None:
    """Entities without a value for the order's key (they come last), in ``ref`` order.

    This part reads every filtered entity to find those without the key, once per traversal
    (the page where the values run out); keys that every served entity has skip it.
    """
    key, down = order[0].lower(), order[1] != backwards
    if key in ALWAYS_PRESENT:
        return None
    if position is not None and position.value is not None and backwards:
        return None  # every entity without a value comes after
    has_value: sa.ColumnElement[bool] = sa.exists().where(
        search.c.entity_id == entities.c.id, search.c.key == key, search.c.value.is_not(None)
    )
    if relation_search.relation_type(key) is not None:
        has_value = order_value(key, entities.c.id, ref=entities.c.ref).is_not(None)
    after = position.ref if position is not None and position.value is None else None
    return _by_ref(where, after, down).where(~has_value)


def text_page(
    matches: sa.Subquery,
    where: Node | None,
    order: Order | None,
    *,
    position: Position | None = None,
    backwards: bool = False,
    offset: int = 0,
    limit: int,
    total: bool,
) -> sa.Select[Any]:
    """One page of a full-text query: ``ref``, ``value``, ``final`` (and ``total``, the number
    of matches, with ``total``; only meaningful without a position).

    Everything up to the page is computed on the refs of ``matches`` alone (filters on
    ``kind`` and order by ``metadata.name`` from the ref itself); only the page's entities are
    then read. ``catalog_search`` rows exist only for served entities (they are written with
    ``final``, which is never cleared), so the matches need no check against
    ``catalog_entities``.
    """
    ref = matches.c.ref
    # Ordered by a key other than the name, each match's value is looked up by its id.
    known = entities.alias("known") if order and order[0].lower() != "metadata.name" else None
    sort: sa.ColumnElement[Any] = sa.null()
    if order:
        sort = order_value(order[0], known.c.id, ref=ref) if known is not None else ref_name(ref)
    value = sort.label("value")  # ordered by its name: computed once per match
    columns: list[Any] = [ref, value]
    if total:
        columns.append(sa.func.count().over().label("total"))
    inner = sa.select(*columns).select_from(matches)
    if known is not None:
        inner = inner.join(known, known.c.ref == ref)
    conditions = filter_conditions(where, ref, from_ref=True)
    if conditions is not None:
        inner = inner.where(conditions)
    if position is not None:
        inner = inner.where(_text_beyond(sort, ref, order, position, backwards))
    page = (
        inner.order_by(*_text_order(value, ref, order, backwards))
        .offset(offset)
        .limit(limit)
        .subquery("page")
    )
    outer: list[Any] = [page.c.ref, page.c.value, entities.c.final]
    if total:
        outer.append(page.c.total)
    return (
        sa.select(*outer)
        .join_from(page, entities, entities.c.ref == page.c.ref)
        .where(SERVED)
        .order_by(*_text_order(page.c.value, page.c.ref, order, backwards))
    )


def _text_order(value: Any, ref: Any, order: Order | None, backwards: bool) -> list[Any]:
    """The page's order on computed sort values (nulls last; reversed going back)."""
    if order is None:
        return [ref.desc() if backwards else ref.asc()]
    down = order[1] != backwards
    by_value = value.desc() if down else value.asc()
    return [
        by_value.nulls_first() if backwards else by_value.nulls_last(),
        ref.desc() if down else ref.asc(),
    ]


def _text_beyond(
    value: Any, ref: Any, order: Order | None, position: Position, backwards: bool
) -> sa.ColumnElement[bool]:
    """Rows after ``position`` in the page's order, on computed sort values (nulls last)."""
    if order is None:
        earlier: sa.ColumnElement[bool] = ref < position.ref if backwards else ref > position.ref
        return earlier
    down = order[1] != backwards
    if position.value is None:
        among_nulls = sa.and_(value.is_(None), ref < position.ref if down else ref > position.ref)
        return sa.or_(value.is_not(None), among_nulls) if backwards else among_nulls
    here, there = sa.tuple_(value, ref), sa.tuple_(position.value, position.ref)
    after = here < there if down else here > there
    return after if backwards else sa.or_(after, value.is_(None))
