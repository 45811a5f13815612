"""Reading the served catalog: Backstage's filter grammar, field selection, order, facets.

Filters (see ``docs/api.md``): each ``filter`` parameter is a comma-separated list of
``key=value`` (or bare ``key``: the key exists) conditions that must all hold; conditions on the
same key inside one parameter are alternatives; several ``filter`` parameters are alternatives.
Keys and values match case-insensitively against ``catalog_search``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from greenroom.catalog.stitch import chunks
from greenroom.catalog.tables import entities, search
from greenroom.exceptions import InvalidInput

EXISTS = object()
SERVED = entities.c.final.is_not(None)


@dataclass
class FilterSet:
    """One ``filter`` parameter: every key must match one of its values (or exist)."""

    keys: dict[str, list[str] | None] = field(default_factory=dict)


def parse_filters(params: Sequence[str]) -> list[FilterSet]:
    """Parse repeated ``filter`` parameters; a malformed one is a 400."""
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
    return sets


def filter_clause(sets: Sequence[FilterSet]) -> sa.ColumnElement[bool]:
    """The WHERE clause on ``catalog_entities`` for parsed filters (served entities only)."""
    served = SERVED
    if not sets:
        return served
    alternatives = []
    for fset in sets:
        conditions = []
        for key, values in fset.keys.items():
            sub = sa.select(search.c.ref).where(search.c.key == key)
            if values is not None:
                sub = sub.where(search.c.value.in_(values))
            conditions.append(entities.c.ref.in_(sub))
        alternatives.append(sa.and_(*conditions))
    return sa.and_(served, sa.or_(*alternatives))


def full_text_clause(term: str | None, fields: Sequence[str]) -> sa.ColumnElement[bool] | None:
    """A case-insensitive substring match of ``term`` on the given keys (any of them)."""
    if not term or not term.strip():
        return None
    like = (
        "%"
        + term.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        + "%"
    )
    sub = sa.select(search.c.ref).where(search.c.value.like(like, escape="\\"))
    keys = [f.lower() for f in fields if f]
    if keys:
        sub = sub.where(search.c.key.in_(keys))
    return entities.c.ref.in_(sub)


def order_value(key: str) -> sa.ScalarSelect[Any]:
    """The value of ``key`` of each entity, to sort by (the smallest when it repeats)."""
    return (
        sa.select(sa.func.min(search.c.value))
        .where(search.c.ref == entities.c.ref, search.c.key == key.lower())
        .scalar_subquery()
    )


def _resolve_path(entity: dict[str, Any], path: str) -> list[str] | None:
    """The keys leading to ``path`` in ``entity``; dots inside keys are found by joining parts
    that do not exist on their own (``metadata.annotations.backstage.io/orphan``)."""
    parts = path.split(".")
    keys: list[str] = []
    node: Any = entity
    i = 0
    while i < len(parts):
        if not isinstance(node, dict):
            return None
        key = parts[i]
        while key not in node and i + 1 < len(parts):
            i += 1
            key = f"{key}.{parts[i]}"
        if key not in node:
            return None
        keys.append(key)
        node = node[key]
        i += 1
    return keys


def select_fields(entity: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """Keep only the dotted ``fields`` of an entity, as Backstage's ``fields`` parameter does."""
    if not fields:
        return entity
    out: dict[str, Any] = {}
    for path in fields:
        keys = _resolve_path(entity, path)
        if keys is None:
            continue
        source: Any = entity
        target = out
        for key in keys[:-1]:
            source = source[key]
            target = target.setdefault(key, {})
        target[keys[-1]] = source[keys[-1]]
    return out


def parse_fields(params: Iterable[str]) -> list[str]:
    """``fields=a,b&fields=c`` into ``[a, b, c]`` (unique, in order); arrays cannot be picked."""
    out: list[str] = []
    for param in params:
        for item in param.split(","):
            item = item.strip()
            if "[" in item:
                raise InvalidInput(f'Invalid field "{item}", array type fields are not supported')
            if item and item not in out:
                out.append(item)
    return out


def entity_json(raw: str, fields: Sequence[str]) -> bytes:
    """The served JSON of an entity, narrowed to ``fields``.

    Without ``fields`` the stored text is sent as it is: parsing and re-encoding every entity
    of a list would cost more than the query that found them.
    """
    if not fields:
        return raw.encode()
    return orjson.dumps(select_fields(orjson.loads(raw), fields))


def json_array(items: Iterable[bytes]) -> bytes:
    """A JSON array of already-encoded items."""
    return b"[" + b",".join(items) + b"]"


def load_final(rows: Iterable[Any], fields: Sequence[str]) -> bytes:
    """A JSON array of the served entities of ``rows``, narrowed to ``fields``."""
    return json_array(entity_json(row.final, fields) for row in rows)


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
    query = (
        sa.select(
            search.c.key,
            search.c.original_value,
            # An entity has at most one row per key and value (rows are deduplicated when
            # written), so counting rows counts entities, without a DISTINCT.
            sa.func.count().label("count"),
        )
        .where(search.c.key.in_(list(lowered)), search.c.original_value.is_not(None))
        .group_by(search.c.key, search.c.original_value)
    )
    if where is not SERVED:
        # Search rows exist only for served entities, so without a filter there is nothing to
        # join: the facet is read from the (key, value) index alone.
        query = query.where(search.c.ref.in_(sa.select(entities.c.ref).where(where)))
    rows = conn.execute(query).all()
    for row in rows:
        result[lowered[row.key]].append({"value": row.original_value, "count": row.count})
    for items in result.values():
        items.sort(key=lambda item: item["value"])
    return result
