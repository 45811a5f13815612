"""Stitching: the final entity the API serves, from the processed entity and every relation.

An entity's relations come from its own processing and from other entities (the reverse half of
their pairs), so a change to one entity re-stitches every entity its old or new relations touch.
The final entity's ``etag`` is the hash of its content: when it does not change, nothing is
written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

import orjson
import sqlalchemy as sa

from greenroom.catalog.model.problems import Problem
from greenroom.catalog.search_rows import Row, relation_rows, search_rows
from greenroom.catalog.tables import entities, relations, search, stitch_queue
from greenroom.db import bulk_insert

ORPHAN_ANNOTATION = "backstage.io/orphan"
SEARCH_COLUMNS = ("ref", "key", "value", "original_value")
CHUNK = 500


_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, so that equal content hashes equally.

    orjson rather than the standard library: ingestion encodes every entity twice, and this is
    several times faster; non-string keys (``200:`` in a YAML mapping) become strings, as in JS.
    """
    return orjson.dumps(value, option=_CANONICAL).decode()


def digest(value: Any) -> str:
    """A SHA-1 of the canonical JSON of ``value``."""
    return hashlib.sha1(orjson.dumps(value, option=_CANONICAL)).hexdigest()


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    """Slices of ``items``, to keep IN lists and executemany batches bounded."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _relation_json(type_: str, target: str) -> dict[str, Any]:
    # Backstage 1.x also sent a deprecated ``target`` object; its current API does not.
    return {"type": type_, "targetRef": target}


def stitch(connection: sa.Connection, refs: Iterable[str], *, relations_only: bool = False) -> int:
    """Rebuild the final entity of each of ``refs`` that changed; returns how many changed.

    With ``relations_only`` the caller knows that only the relations of these entities can
    have changed (they are peers of entities written elsewhere), so of their search rows only
    the ``relations.*`` ones are replaced; an entity never stitched before is done in full.
    """
    todo = sorted(set(refs))
    changed = 0
    for batch in chunks(todo):
        rows = connection.execute(
            sa.select(
                entities.c.ref,
                entities.c.uid,
                entities.c.processed,
                entities.c.problems,
                entities.c.orphan,
                entities.c.etag,
            ).where(entities.c.ref.in_(batch))
        ).all()
        rels = _relations_by_source(connection, batch)
        updates: list[dict[str, Any]] = []
        full: list[str] = []
        partial: list[str] = []
        new_search: list[Row] = []
        for row in rows:
            if row.processed is None:
                continue
            final, etag = _final(row, rels.get(row.ref, set()))
            if etag == row.etag:
                continue
            updates.append({"b_ref": row.ref, "final": dumps(final), "etag": etag})
            if relations_only and row.etag is not None:
                partial.append(row.ref)
                new_search.extend(relation_rows(row.ref, final))
            else:
                full.append(row.ref)
                new_search.extend(search_rows(row.ref, final))
        if not updates:
            continue
        changed += len(updates)
        connection.execute(
            entities.update().where(entities.c.ref == sa.bindparam("b_ref")),
            updates,
        )
        if full:
            connection.execute(search.delete().where(search.c.ref.in_(full)))
        if partial:
            connection.execute(
                search.delete().where(
                    search.c.ref.in_(partial), search.c.key.startswith("relations.")
                )
            )
        bulk_insert(connection, search, SEARCH_COLUMNS, new_search)
    return changed


def mark_for_stitch(connection: sa.Connection, refs: Iterable[str]) -> None:
    """Queue ``refs`` to be stitched later (:meth:`IngestionEngine.stitch_pending`).

    A ref may not be stored (yet): a relation can name an entity of a later batch, or one that
    does not exist; stitching skips those and the mark goes with the others.
    """
    todo = [(ref,) for ref in sorted(set(refs))]
    if not todo:
        return
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    connection.exec_driver_sql(
        f"INSERT INTO {stitch_queue.name} (ref) VALUES ({mark}) ON CONFLICT DO NOTHING", todo
    )


def finish_new(connection: sa.Connection, rows: list[dict[str, Any]]) -> list[Row]:
    """Stitch entities that are about to be inserted, so that each is written once.

    ``rows`` are insert rows (``ref``, ``uid``, ``processed``, ``problems``); their relations
    must be written already. Each row gets its ``final`` and ``etag``, as :func:`stitch`
    would give it right after the insert; the search rows to insert after the entities are
    returned.
    """
    new_search: list[Row] = []
    for part in chunks(rows):
        rels = _relations_by_source(connection, [row["ref"] for row in part])
        for row in part:
            stored = SimpleNamespace(
                processed=row["processed"], uid=row["uid"], orphan=False, problems=row["problems"]
            )
            final, etag = _final(stored, rels.get(row["ref"], set()))
            row["final"], row["etag"] = dumps(final), etag
            new_search.extend(search_rows(row["ref"], final))
    return new_search


def _relations_by_source(
    connection: sa.Connection, refs: Sequence[str]
) -> dict[str, set[tuple[str, str]]]:
    """``{source ref: {(type, target ref)}}`` of every relation whose source is in ``refs``.

    Read through the driver's cursor, as tuples: the peers stitched at the end of a first load
    of 50,000 entities have 213,000 relations, and building SQLAlchemy rows for them cost more
    than the query.
    """
    rels: dict[str, set[tuple[str, str]]] = {}
    if not refs:
        return rels
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"SELECT source_ref, type, target_ref FROM {relations.name} "
        f"WHERE source_ref IN ({', '.join([mark] * len(refs))})"
    )
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, list(refs))
        rows = cursor.fetchall()  # at once: row by row costs more than the query
    finally:
        cursor.close()
    for source, type_, target in rows:
        rels.setdefault(source, set()).add((type_, target))
    return rels


def _final(row: Any, rels: set[tuple[str, str]]) -> tuple[dict[str, Any], str]:
    """The served entity of a stored row with its relations, and its etag (a content hash)."""
    final: dict[str, Any] = orjson.loads(row.processed)
    meta = final.setdefault("metadata", {})
    meta["uid"] = row.uid
    meta.pop("etag", None)
    if row.orphan:
        meta["annotations"] = {**(meta.get("annotations") or {}), ORPHAN_ANNOTATION: "true"}
    final["relations"] = [_relation_json(t, target) for t, target in sorted(rels)]
    problems = [Problem.from_json(p) for p in orjson.loads(row.problems)]
    if problems:
        final["status"] = {"items": [p.status_item() for p in problems]}
    else:
        final.pop("status", None)
    etag = digest(final)[:32]
    meta["etag"] = etag
    return final, etag
