"""Stitching: the final entity the API serves, from the processed entity and every relation.

An entity's relations come from its own processing and from other entities (the reverse half of
their pairs), so a change to one entity re-stitches every entity its old or new relations touch.
The final entity's ``etag`` is the hash of its content: when it does not change, nothing is
written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import orjson
import sqlalchemy as sa

from greenroom.catalog.model.problems import Problem
from greenroom.catalog.search_rows import Row, search_rows
from greenroom.catalog.tables import entities, relations, search, stitch_queue
from greenroom.db import WROTE, among, bulk_insert, driver_cursor, param_mark

ORPHAN_ANNOTATION = "backstage.io/orphan"
SEARCH_COLUMNS = ("ref", "key", "value", "original_value", "entity_id")
#: What a full stitch reads of a stored entity (:func:`_final` needs all but ``etag``, which
#: tells whether the result changed).
STITCHED_FROM = (
    entities.c.id,
    entities.c.ref,
    entities.c.uid,
    entities.c.processed,
    entities.c.problems,
    entities.c.orphan,
    entities.c.etag,
)
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
    have changed (they are peers of entities written elsewhere): see :func:`_restitch`, which
    takes them in the order given.
    """
    if relations_only:
        return _restitch(connection, list(dict.fromkeys(refs)))
    todo = sorted(set(refs))
    changed = 0
    for batch in chunks(todo):
        rows = connection.execute(sa.select(*STITCHED_FROM).where(entities.c.ref.in_(batch))).all()
        rels = _relations_by_source(connection, batch)
        updates: list[tuple[str, str, int]] = []
        ids: list[int] = []
        new_search: list[Row] = []
        for row in rows:
            if row.processed is None:
                continue
            final, etag = _final(row, rels.get(row.ref, set()))
            if etag == row.etag:
                continue
            updates.append((dumps(final), etag, row.id))
            ids.append(row.id)
            new_search.extend(search_rows(row.ref, final, row.id))
        if updates:
            changed += len(updates)
            _update_finals(connection, updates)
            connection.execute(search.delete().where(search.c.entity_id.in_(ids)))
            bulk_insert(connection, search, SEARCH_COLUMNS, new_search)
    return changed


def _restitch(connection: sa.Connection, todo: Sequence[str]) -> int:
    """Give entities whose relations alone may have changed their current relations.

    The stored final entity is the processed one stitched with the relations of its last
    stitch (every write of processed content, problems or the orphan mark stitches in full in
    the same transaction), so only its ``relations`` and ``etag`` are replaced. Its search rows
    stay as they are: they hold no relation (``relation_search.py``). An entity never stitched
    is stitched in full.
    """
    changed = 0
    unstitched: list[str] = []
    for batch in chunks(todo):
        where, params = among(connection, "ref", batch)
        with driver_cursor(connection) as cursor:
            sql = f"SELECT ref, id, final, etag FROM {entities.name} WHERE {where}"
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        rels = _relations_by_source(connection, batch)
        updates: list[tuple[str, str, int]] = []
        for ref, entity_id, stored, old_etag in rows:
            if stored is None:
                unstitched.append(ref)
                continue
            final = orjson.loads(stored)
            etag = _set_relations(final, rels.get(ref, set()))
            if etag != old_etag:
                updates.append((dumps(final), etag, entity_id))
        if updates:
            changed += len(updates)
            _update_finals(connection, updates)
    return changed + (stitch(connection, unstitched) if unstitched else 0)


def _update_finals(connection: sa.Connection, updates: list[tuple[str, str, int]]) -> None:
    """Store ``(final, etag, id)`` rows: as plain tuples by id, since SQLAlchemy's handling of
    one parameter dictionary per entity cost as much as the update (31,000 peers at 50,000)."""
    mark = param_mark(connection)
    connection.exec_driver_sql(
        f"UPDATE {entities.name} SET final = {mark}, etag = {mark} WHERE id = {mark}", updates
    )


def mark_for_stitch(connection: sa.Connection, refs: Iterable[str]) -> None:
    """Queue ``refs`` to be stitched later (:meth:`IngestionEngine.stitch_pending`).

    A ref may not be stored (yet): a relation can name an entity of a later batch, or one that
    does not exist; stitching skips those and the mark goes with the others.
    """
    todo = sorted(set(refs))
    if not todo:
        return
    with _queue_only(connection):
        _mark(connection, todo)


def _mark(connection: sa.Connection, todo: list[str]) -> None:
    if connection.dialect.name == "postgresql":
        # One statement for the batch's thousands of marks, instead of one each in a pipeline.
        connection.exec_driver_sql(
            f"INSERT INTO {stitch_queue.name} (ref) SELECT unnest(%s::text[]) "
            "ON CONFLICT DO NOTHING",
            (todo,),
        )
    else:
        connection.exec_driver_sql(
            f"INSERT INTO {stitch_queue.name} (ref) VALUES (?) ON CONFLICT DO NOTHING",
            [(ref,) for ref in todo],
        )


def unmark(connection: sa.Connection, refs: Sequence[str]) -> None:
    """Take ``refs`` off the queue of :func:`mark_for_stitch` (they were just stitched)."""
    with _queue_only(connection):
        for part in chunks(refs):
            where, params = among(connection, "ref", part)
            connection.exec_driver_sql(
                f"DELETE FROM {stitch_queue.name} WHERE {where}", tuple(params)
            )


@contextmanager
def _queue_only(connection: sa.Connection) -> Iterator[None]:
    """Statements on the stitch queue change no answer of the API, so they do not count as
    the transaction's writes (:data:`greenroom.db.WROTE`): a stitch of peers that changed none
    of them leaves the generation, and the caches keyed by it, as they were."""
    wrote = connection.info.get(WROTE, False)
    try:
        yield
    finally:
        connection.info[WROTE] = wrote


def finish_new(connection: sa.Connection, rows: list[dict[str, Any]]) -> list[Row]:
    """Stitch entities that are about to be inserted, so that each is written once.

    ``rows`` are insert rows (``id``, ``ref``, ``uid``, ``processed``, ``problems``); their
    relations must be written already. Each row gets its ``final`` and ``etag``, as
    :func:`stitch` would give it right after the insert; the search rows to insert after the
    entities are returned.
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
            new_search.extend(search_rows(row["ref"], final, row["id"]))
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
    where, params = among(connection, "source_ref", refs)
    sql = f"SELECT source_ref, type, target_ref FROM {relations.name} WHERE {where}"
    with driver_cursor(connection) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()  # at once: row by row costs more than the query
    for source, type_, target in rows:
        rels.setdefault(source, set()).add((type_, target))
    return rels


def _final(row: Any, rels: set[tuple[str, str]]) -> tuple[dict[str, Any], str]:
    """The served entity of a stored row with its relations, and its etag (a content hash)."""
    final: dict[str, Any] = orjson.loads(row.processed)
    meta = final.setdefault("metadata", {})
    meta["uid"] = row.uid
    if row.orphan:
        meta["annotations"] = {**(meta.get("annotations") or {}), ORPHAN_ANNOTATION: "true"}
    problems = [Problem.from_json(p) for p in orjson.loads(row.problems)]
    if problems:
        final["status"] = {"items": [p.status_item() for p in problems]}
    else:
        final.pop("status", None)
    return final, _set_relations(final, rels)


def _set_relations(final: dict[str, Any], rels: set[tuple[str, str]]) -> str:
    """Put ``rels`` into ``final`` and give it the etag of its new content; returns the etag."""
    meta = final["metadata"]
    meta.pop("etag", None)
    final["relations"] = [_relation_json(t, target) for t, target in sorted(rels)]
    etag = digest(final)[:32]
    meta["etag"] = etag
    return etag
