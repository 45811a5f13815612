"""Reading the served catalog: Backstage's filter grammar, order, facets (``fields`` is
``narrowing.py``).

Filters (see ``docs/api.md``): each ``filter`` parameter is a comma-separated list of
``key=value`` (or bare ``key``: the key exists) conditions that must all hold; conditions on the
same key inside one parameter are alternatives; several ``filter`` parameters are alternatives.
Keys and values match case-insensitively against ``catalog_search``.

Some conditions are answered from the entity's ``ref`` instead of ``catalog_search``, because
the ref (``kind:namespace/name``, lower-cased by the same ``str.lower`` as search values)
already holds the value: ``kind=x`` is "the ref starts with ``x:``" and ordering by
``metadata.name`` is ordering by the part after ``/``. Kinds, namespaces and names cannot hold
``:`` or ``/`` and are at most 63 characters (well under the 200 beyond which search values are
dropped), so the answers are those of the search rows, without a lookup per entity.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from greenroom.catalog import predicates, relation_search
from greenroom.catalog.narrowing import entity_json
from greenroom.catalog.predicates import Match, Node
from greenroom.catalog.stitch import chunks
from greenroom.catalog.tables import REF, entities, search
from greenroom.catalog.text_index import TEXT_KEYS
from greenroom.db import driver_cursor, param_mark
from greenroom.exceptions import InvalidInput

EXISTS = object()
SERVED = entities.c.final.is_not(None)
# Three word characters in a row, from which pg_trgm takes a trigram (it keeps letters and digits).
TRIGRAM_WORD = re.compile(r"[^\W_]{3}")


@dataclass
class FilterSet:
    """One ``filter`` parameter: every key must match one of its values (or exist)."""

    keys: dict[str, list[str] | None] = field(default_factory=dict)


def parse_filters(params: Sequence[str]) -> Node | None:
    """Parse repeated ``filter`` parameters into a predicate tree (``None``: no filter); a
    malformed one is a 400."""
    sets: list[FilterSet] = []
    for param in params:
        fset = FilterSet()
        for statement in param.split(","):
            statement = statement.strip()
            if not statement:
                continue
            key, eq, value = statement.partition("=")
            key = key.strip().lower()
            if not key:
                raise InvalidInput(
                    f"Invalid filter, '{statement}' is not a valid statement "
                    "(expected a string on the form a=b or a= or a)"
                )
            if not eq:
                if key not in fset.keys:
                    fset.keys[key] = None
                continue
            values = fset.keys.get(key)
            if values is None:
                values = fset.keys[key] = []
            values.append(value.strip().lower())
        if fset.keys:
            sets.append(fset)
    return predicates.from_filters([fset.keys for fset in sets])


class _RefPart(FunctionElement[str]):
    """A part of a ref, cut in SQL (``{ref}`` in the templates is the ref's expression)."""

    type = sa.String()
    inherit_cache = True
    sqlite = ""
    postgresql = ""


@compiles(_RefPart)
def _ref_part_sqlite(element: _RefPart, compiler: SQLCompiler, **kw: Any) -> str:
    return element.sqlite.format(ref=compiler.process(element.clauses, **kw))


@compiles(_RefPart, "postgresql")
def _ref_part_postgresql(element: _RefPart, compiler: SQLCompiler, **kw: Any) -> str:
    return element.postgresql.format(ref=compiler.process(element.clauses, **kw))


class ref_name(_RefPart):
    """The name part of a ref (after ``/``): the ``metadata.name`` search value."""

    inherit_cache = True
    sqlite = "substr({ref}, instr({ref}, '/') + 1)"
    postgresql = "substr({ref}, strpos({ref}, '/') + 1)"


class ref_kind(_RefPart):
    """The kind part of a ref with its colon (``component:``): kinds hold no ``:``."""

    inherit_cache = True
    sqlite = "substr({ref}, 1, instr({ref}, ':'))"
    postgresql = "substr({ref}, 1, strpos({ref}, ':'))"


def filter_conditions(
    where: Node | None,
    ref: sa.ColumnElement[str],
    *,
    from_ref: bool = False,
    kind: sa.ColumnElement[str] | None = None,
    correlated: sa.ColumnElement[int] | None = None,
) -> sa.ColumnElement[bool] | None:
    """A predicate tree (filters, or a ``query``) as conditions on the entity refs in ``ref``;
    ``None`` when there is none.

    With ``from_ref``, conditions on ``kind`` are read from the ref (see the module's docs):
    the best plan when another condition (a full-text term) picks few entities, each then
    checked without a lookup in ``catalog_search``. With ``kind`` (the entities' column),
    they are ``lower(kind) IN (...)``, served by ``ix_catalog_entities_served_kind``: the search
    value of ``kind`` is the kind lower-cased, and kinds are ASCII (validated), so SQL's
    ``lower`` gives the same. The most common filter of all then reads neither
    ``catalog_search`` nor the rows of other kinds, and a page in ref order stops at its end.
    With ``correlated`` (the entities' ids beside ``ref``), other conditions are ``EXISTS`` of
    the entity's own row (a lookup in ``(entity_id, key, value)`` per entity) rather than
    ``ref IN`` every matching entity: for a scan that stops after a page, not one that reads
    every entity anyway.
    """
    if where is None:
        return None
    return _condition(where, _Target(ref, from_ref, kind, correlated))


@dataclass(frozen=True)
class _Target:
    """What :func:`filter_conditions` puts its conditions on."""

    ref: sa.ColumnElement[str]
    from_ref: bool
    kind: sa.ColumnElement[str] | None
    correlated: sa.ColumnElement[int] | None


def _condition(node: Node, on: _Target) -> sa.ColumnElement[bool]:
    if isinstance(node, predicates.All):
        return sa.and_(sa.true(), *(_condition(part, on) for part in node.parts))
    if isinstance(node, predicates.AnyOf):
        return sa.or_(sa.false(), *(_condition(part, on) for part in node.parts))
    if isinstance(node, predicates.Not):
        return sa.not_(_condition(node.part, on))
    return _match(node, on)


def _match(node: Match, on: _Target) -> sa.ColumnElement[bool]:
    key, values = node.key, node.values
    if key == "kind" and node.prefix is None:
        if on.from_ref and values is not None:
            if len(values) > 1:  # one IN, not a chain of ORs as deep as the list is long
                return ref_kind(on.ref).in_([f"{v}:" for v in values])
            return sa.or_(
                sa.false(), *(sa.func.substr(on.ref, 1, len(v) + 1) == f"{v}:" for v in values)
            )
        if on.kind is not None:
            return on.kind.is_not(None) if values is None else sa.func.lower(on.kind).in_(values)
    rows = search.alias("f") if on.correlated is not None else search
    conditions = [rows.c.key == key]
    prefix = None if node.prefix is None else like_escaped(node.prefix)
    if prefix is not None:
        conditions.append(rows.c.value.like(prefix + "%", escape="\\"))
    elif values is not None:
        conditions.append(rows.c.value.in_(values))
    # ``relations.<type>``: the relations themselves, and search rows of a field so named.
    type_ = relation_search.relation_type(key)
    if on.correlated is not None:
        found: sa.ColumnElement[bool] = sa.exists().where(
            rows.c.entity_id == on.correlated, *conditions
        )
        if type_ is not None:
            found = sa.or_(sa.exists(relation_search.sources(type_, values, prefix, on.ref)), found)
        return found
    refs: sa.Select[Any] | sa.CompoundSelect[Any] = sa.select(search.c.ref).where(*conditions)
    if type_ is not None:
        refs = sa.union(relation_search.sources(type_, values, prefix, None), refs)
    return on.ref.in_(refs)


def filter_clause(where: Node | None) -> sa.ColumnElement[bool]:
    """The WHERE clause on ``catalog_entities`` for parsed filters (served entities only)."""
    conditions = filter_conditions(where, entities.c.ref, kind=entities.c.kind)
    return SERVED if conditions is None else sa.and_(SERVED, conditions)


def searched_text(term: str) -> str:
    """What a full-text term looks for: trimmed and lower-cased, as search values are stored."""
    return term.strip().lower()


def searched_keys(fields: Sequence[str]) -> list[str]:
    """The search keys of ``fullTextFilterFields``: lower-cased, each once, in order."""
    return list(dict.fromkeys(f.lower() for f in fields if f))


def like_pattern(term: str) -> str:
    """``%term%`` for ``LIKE ... ESCAPE '\\'``, lower-cased, with ``%``, ``_``, ``\\`` literal."""
    return f"%{like_escaped(searched_text(term))}%"


def like_escaped(text: str) -> str:
    """``text`` with ``%``, ``_`` and ``\\`` taken literally by ``LIKE ... ESCAPE '\\'``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def count_matching(where: sa.ColumnElement[bool]) -> sa.Select[int]:
    """The number of entities of ``where`` (a :func:`filter_clause`), read from an index.

    Without a filter the clause is ``final IS NOT NULL`` alone, for which SQLite reads the whole
    table (70 ms at 50,000 entities) rather than the served-kind index, which holds exactly
    those entities; a condition that every kind meets points it there (3 ms).
    """
    if where is SERVED:
        where = sa.and_(SERVED, sa.func.lower(entities.c.kind) >= "")
    return sa.select(sa.func.count()).select_from(entities).where(where)


def full_text_refs(term: str | None, fields: Sequence[str]) -> sa.Subquery | None:
    """The refs (column ``ref``, each once) of the entities where one of the keys ``fields``
    (any key when empty) holds ``term``, case-insensitively; ``None`` without a term.

    One ``SELECT`` per key, joined by ``UNION``: each can then use the trigram index of its
    key (``text_index.py``), whose ``WHERE key = '...'`` the planner must see as a literal to
    match it; other keys read the ``(key, value)`` index. The answer is the same either way.

    A term without three letters or digits in a row gives ``pg_trgm`` no trigram to look up:
    its index then returns every entry of the key for a recheck (a two-letter term took 280 ms
    at 50,000 entities, against 15 ms through the ``(key, value)`` index). Such a term is
    matched against ``value || ''``, the same text, which the trigram indexes do not cover.
    """
    if not term or not term.strip():
        return None
    value = search.c.value if TRIGRAM_WORD.search(term) else search.c.value.concat("")
    pattern = like_pattern(term)
    like = value.like(pattern, escape="\\")
    keys = searched_keys(fields)
    if not keys:  # every key, relations.* included (``relation_search.py``)
        every = [sa.select(search.c.ref).where(like), relation_search.text_matches(pattern, None)]
        return sa.union(*every).subquery("matches")
    types = [t for t in map(relation_search.relation_type, keys) if t is not None]
    parts: list[sa.Select[Any]] = []
    if types:
        parts.append(relation_search.text_matches(pattern, types))
    for key in keys:
        # Only the keys of the indexed set, which are constants, are written into the SQL.
        key_value = sa.literal(key, literal_execute=True) if key in TEXT_KEYS else key
        parts.append(sa.select(search.c.ref).where(search.c.key == key_value, like))
    if len(parts) == 1:
        return parts[0].distinct().subquery("matches")
    return sa.union(*parts).subquery("matches")


def listed_refs(refs: Sequence[str], dialect: str) -> sa.Subquery:
    """``refs`` as a subquery like :func:`full_text_refs`'s (column ``ref``), for matches
    found outside the database (``text_memory.py``): one JSON parameter, whatever their
    number (SQLite allows 32,766 parameters; a common term matches more entities)."""
    if dialect == "postgresql":
        sql = "SELECT jsonb_array_elements_text(CAST(:refs AS jsonb)) AS ref"
    else:
        sql = "SELECT value AS ref FROM json_each(:refs)"
    return (
        sa.text(sql)
        .bindparams(refs=orjson.dumps(list(refs)).decode())
        .columns(ref=REF)
        .subquery("matches")
    )


def plan_for_text_indexes(connection: sa.Connection) -> None:
    """Let PostgreSQL's planner see the trigram indexes for what they cost, for the rest of the
    transaction of a full-text query.

    With ``random_page_cost`` at its default of 4 (a spinning disk's seeks) the planner prices
    the table reads behind a trigram index above reading every entry of the key from the
    ``(key, value, ref)`` index: at 50,000 entities it chose the latter for common words (15 ms
    against 4 ms). At 2 it picks the trigram index where it helps; 1.1, common for SSDs, sent
    two-letter terms to a far worse plan (140 ms).
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL random_page_cost = 2")


def plan_for_ordered_pages(connection: sa.Connection) -> None:
    """Have PostgreSQL read an ordered page in index order, for the rest of the transaction
    (``pages.py``).

    Its planner guesses the share of rows that pass the page's conditions (the ref's kind
    prefix, the smallest-value check, a filter's ``EXISTS``) far below what it is, expects the
    ordered scan to read the whole key for one page, and sorts every filtered entity instead:
    590 ms for a page of the 23,000 production components by name at 50,000 entities,
    against 10-30 ms in index order. ``enable_sort = off`` prices that sort out;
    ``force_custom_plan`` keeps prepared statements from falling back to a generic plan with
    the same mistake after a few pages (130-500 ms); ``jit = off`` saves the 8-15 ms its
    compilation cost each of these short queries, which the planner priced as long ones.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "SELECT set_config('enable_sort', 'off', true),"
            " set_config('plan_cache_mode', 'force_custom_plan', true),"
            " set_config('jit', 'off', true)"
        )


def order_value(
    key: str,
    entity_id: sa.ColumnElement[int] = entities.c.id,
    *,
    ref: sa.ColumnElement[str] | None = None,
) -> sa.ColumnElement[Any]:
    """The value of ``key`` of the entity ``entity_id``, to sort by (the smallest when it
    repeats).

    Given the entity's ``ref``, ``metadata.name`` is read from it (see the module's docs);
    ``relations.*`` keys are read from the entity's relations by it (``entities.ref`` when not
    given).
    """
    if ref is not None and key.lower() == "metadata.name":
        return ref_name(ref)
    own = (
        sa.select(sa.func.min(search.c.value))
        .where(search.c.entity_id == entity_id, search.c.key == key.lower())
        .scalar_subquery()
    )
    type_ = relation_search.relation_type(key.lower())
    if type_ is None:
        return own
    related = relation_search.smallest_target(type_, entities.c.ref if ref is None else ref)
    # The smaller of the two, each computed once: ``least`` is PostgreSQL's alone, and SQLite's
    # two-argument ``min`` is NULL when either is. Both databases let the arms of a subquery
    # in FROM refer to the row outside (SQLAlchemy must be told: correlate_except).
    both = sa.union_all(
        sa.select(own.correlate_except(search).label("value")),
        sa.select(related.label("value")),
    ).subquery("both_values")
    return sa.select(sa.func.min(both.c.value)).scalar_subquery()


def json_array(items: Iterable[bytes]) -> bytes:
    """A JSON array of already-encoded items."""
    return b"[" + b",".join(items) + b"]"


STREAM_ROWS = 500  # entities read and sent at a time by stream_final


def stream_final(
    engine: sa.Engine, query: sa.Select[Any], fields: Sequence[str]
) -> Iterator[bytes]:
    """The JSON array of the ``final`` column of ``query``, in pieces of :data:`STREAM_ROWS`
    entities; memory stays bounded whatever the size of the answer (a server-side cursor on
    PostgreSQL, SQLite's stepping on SQLite). The connection is held until the last piece."""
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=STREAM_ROWS).execute(query)
        yield b"["
        first = True
        for part in result.partitions():
            piece = b",".join(entity_json(row.final, fields) for row in part)
            yield piece if first else b"," + piece
            first = False
        yield b"]"


def load_final(rows: Iterable[Any], fields: Sequence[str]) -> bytes:
    """A JSON array of the served entities of ``rows``, narrowed to ``fields``."""
    return json_array(entity_json(row.final, fields) for row in rows)


def served_final(connection: sa.Connection, column: str, value: str) -> str | None:
    """The stored JSON of the served entity whose ``column`` (``ref`` or ``uid``, each unique)
    is ``value``; ``None`` when there is none.

    By-name and by-uid are the API's most frequent calls and cost one index read. Through
    SQLAlchemy's statement execution (building the clause, its cache key, the result object)
    they spent more time in it than in the driver and the database together, so the one
    statement goes to the driver's cursor as text (prepared by the driver after a few runs).
    """
    if column not in ("ref", "uid"):
        raise ValueError(f"not a unique column of {entities.name}: {column}")
    mark = param_mark(connection)
    with driver_cursor(connection) as cursor:
        cursor.execute(
            f"SELECT final FROM {entities.name} WHERE {column} = {mark} AND final IS NOT NULL",
            (value,),
        )
        row = cursor.fetchone()
    return None if row is None else str(row[0])


def served_by_refs(connection: sa.Connection, refs: Sequence[str]) -> dict[str, str]:
    """Stored JSON by ref of the served entities among ``refs`` (lower-case): by-refs without a
    filter, through the driver's cursor as :func:`served_final` (on PostgreSQL one statement
    text whatever the number of refs, ``= ANY``, so that the driver prepares it once)."""
    found: dict[str, str] = {}
    if not refs:
        return found
    postgresql = connection.dialect.name == "postgresql"
    with driver_cursor(connection) as cursor:
        for batch in chunks(list(dict.fromkeys(refs))):
            params: list[Any] = [list(batch)] if postgresql else list(batch)
            condition = "ref = ANY(%s)" if postgresql else f"ref IN ({', '.join('?' * len(batch))})"
            cursor.execute(
                f"SELECT ref, final FROM {entities.name} WHERE {condition} AND final IS NOT NULL",
                params,
            )
            found.update((str(ref), str(final)) for ref, final in cursor.fetchall())
    return found


def by_refs(
    conn: sa.Connection, refs: Sequence[str], where: sa.ColumnElement[bool]
) -> dict[str, str]:
    """Final JSON by ref for the given refs (lower-case), honouring ``where``."""
    found: dict[str, str] = {}
    for batch in chunks(list(refs)):
        for row in conn.execute(
            sa.select(entities.c.ref, entities.c.final).where(entities.c.ref.in_(batch), where)
        ):
            found[row.ref] = row.final
    return found


def facets(
    conn: sa.Connection, keys: Sequence[str], where: sa.ColumnElement[bool]
) -> dict[str, list[dict[str, Any]]]:
    """``{facet: [{value, count}]}`` over the entities matching ``where``."""
    result: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
    if not keys:
        return result
    lowered = {key.lower(): key for key in keys}
    # Served entities without a filter: from the served-kind index (see count_matching).
    refs = sa.select(entities.c.ref).where(
        sa.and_(where, sa.func.lower(entities.c.kind) >= "") if where is SERVED else where
    )
    for key in list(lowered):
        type_ = relation_search.relation_type(key)
        if type_ is not None:  # with the relations themselves (``relation_search.py``)
            own_rows = relation_search.has_own_rows(conn, key)
            parts = relation_search.facet_rows(type_, key, refs, own_rows)
            pairs = sa.union_all(*parts).subquery() if own_rows else parts[0].subquery()
            spelling = pairs.c[1]
            counted = sa.select(spelling, sa.func.count()).group_by(spelling)
            result[lowered.pop(key)] = [
                {"value": value, "count": count} for value, count in conn.execute(counted)
            ]
    # Backstage counts each spelling apart. The original spelling is stored only where it
    # differs from the lower-cased value (``search_rows``; a row written before migration 0011
    # by a replica not yet upgraded may still repeat it, and counts with its spelling), and
    # the filter index ends with it: the count reads that index alone (13 ms for 42,000 rows at
    # 50,000 entities, against 70 ms reading each row's original spelling from the table).
    spelling = sa.func.coalesce(search.c.original_value, search.c.value).label("spelling")
    query = (
        sa.select(
            search.c.key,
            spelling,
            # An entity has at most one row per key and value (rows are deduplicated when
            # written), so counting rows counts entities, without a DISTINCT.
            sa.func.count().label("count"),
        )
        .where(search.c.key.in_(list(lowered)), search.c.value.is_not(None))
        .group_by(search.c.key, spelling)
    )
    if where is not SERVED:
        # Search rows exist only for served entities, so without a filter there is nothing to
        # join: the facet is read from the index alone.
        query = query.where(search.c.ref.in_(sa.select(entities.c.ref).where(where)))
    for row in conn.execute(query) if lowered else ():
        result[lowered[row.key]].append({"value": row.spelling, "count": row.count})
    for items in result.values():
        items.sort(key=lambda item: item["value"])
    return result
