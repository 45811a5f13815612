"""Backstage's search rows of a served entity, as the definition that answers are checked
against: Greenroom's own rows (``search_rows``) and one ``relations.<type> = <targetRef>`` row
per relation, which Backstage writes and Greenroom reads from ``catalog_relations`` instead
(``relation_search.py``)."""

from __future__ import annotations

from typing import Any

from greenroom.catalog.model.refs import format_ref
from greenroom.catalog.search_rows import MAX_KEY, MAX_VALUE, search_rows


def ref_of(entity: dict[str, Any]) -> str:
    meta = entity["metadata"]
    return format_ref(entity["kind"], meta.get("namespace"), meta["name"])


def backstage_rows(entity: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """``(key, value, spelling)`` of each row, each ``(key, value)`` once, the entity's own
    fields first (a field may be called ``relations.x`` too); ``spelling`` is the value as
    written, which facets count."""
    rows = [
        (key, value, value if original is None else original)
        for _, key, value, original, _ in search_rows(ref_of(entity), entity, 0)
    ]
    seen = {(key, value) for key, value, _ in rows}
    for relation in entity.get("relations") or []:
        key = f"relations.{relation['type']}".lower()
        if len(key) > MAX_KEY:
            continue
        spelling: str | None = relation["targetRef"]
        value = spelling.lower() if spelling is not None else None
        if value is not None and len(value) > MAX_VALUE:
            value = spelling = None
        if (key, value) not in seen:
            seen.add((key, value))
            rows.append((key, value, spelling))
    return rows


def values_by_key(entity: dict[str, Any]) -> dict[str, list[str]]:
    """The entity's search values (not NULL) by key."""
    values: dict[str, list[str]] = {}
    for key, value, _ in backstage_rows(entity):
        if value is not None:
            values.setdefault(key, []).append(value)
    return values
