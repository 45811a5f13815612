"""A pass of ingestion: walk a root in batches, write what changed, stitch what it touched.

For each batch the engine loads what the database holds for those entities in one query,
compares content hashes, and writes only the entities whose processed content, relations or
problems changed; then it re-stitches exactly the entities those changes touch. Walking (parsing,
processing) runs one batch ahead of the writes: in a thread of its own, or for a large root in a
process of its own (:mod:`greenroom.catalog.ingest.apart`), where it does not take turns with the
writes under the interpreter lock; memory stays bounded by a few batches whatever the size of
the catalog.

When the walk is over, the Location entities (which gather problems all along the walk) are
written, and entities the root no longer produces become orphans (kept and annotated, or
deleted, per ``catalog.orphanStrategy``), except those whose file could not be read this time:
they stay as they were until it reads again.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa

from greenroom.catalog.ingest.walk import Emitted, Lookup, Prepared, WalkResult, new_result
from greenroom.catalog.model.problems import Problem
from greenroom.catalog.model.refs import parse_ref
from greenroom.catalog.stitch import (
    SEARCH_COLUMNS,
    chunks,
    digest,
    dumps,
    finish_new,
    mark_for_stitch,
    stitch,
    unmark,
)
from greenroom.catalog.tables import (
    DEFERRED_INDEXES,
    entities,
    relations,
    search,
    stitch_queue,
)
from greenroom.catalog.text_index import TEXT_KEYS, create_text_indexes, drop_text_indexes
from greenroom.contracts import RootLocation
from greenroom.db import (
    among,
    bulk_insert,
    driver_cursor,
    index_names,
    refresh_statistics,
    sample_statistics,
    write_transaction,
)

RELATION_COLUMNS = ("originating_ref", "source_ref", "type", "target_ref")
RELATION_TYPE_CHARS = 64  # catalog_relations.type
STATISTICS_FROM = 2000  # entities written before the planner's statistics are first sampled


class WalkSource(Protocol):
    """What :meth:`IngestionEngine.ingest` walks: a :class:`Walker`, or one in another process
    (:class:`~greenroom.catalog.ingest.apart.ProcessWalker`)."""

    def walk(
        self, root: RootLocation, result: WalkResult, lookup: Lookup | None = None
    ) -> Iterator[list[Emitted]]: ...


@dataclass
class PassSummary:
    """What a pass did, for the CLI's table and the logs."""

    roots: int = 0
    written: int = 0
    unchanged: int = 0
    stitched: int = 0
    orphaned: int = 0
    deleted: int = 0
    busy: int = 0  # roots skipped because another replica holds their lease
    indexes_built: bool = False  # a deferred index was missing and this pass built it
    problems: list[Problem] = field(default_factory=list)
    # Seconds spent in the phases worth telling apart when a pass is slow (see ``describe``).
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the time spent in the block to ``phase``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    @property
    def changed(self) -> bool:
        """Whether the pass wrote, removed or found anything worth reporting."""
        return bool(self.written or self.stitched or self.orphaned or self.deleted or self.problems)

    def describe(self) -> str:
        """One line for the log and the CLI: what the pass did and where its time went."""
        text = (
            f"{self.roots} location(s) read, {self.written} written, {self.unchanged} unchanged, "
            f"{self.stitched} stitched, {self.orphaned} orphaned, {self.deleted} deleted, "
            f"{len(self.problems)} problem(s)"
        )
        if self.indexes_built:
            text += ", indexes built"
        if "pass" in self.seconds:
            phases = ", ".join(
                f"{name} {_seconds(seconds)} s"
                for name, seconds in self.seconds.items()
                if name != "pass" and seconds >= 0.05
            )
            text += f" in {_seconds(self.seconds['pass'])} s" + (f" ({phases})" if phases else "")
        return text


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value >= 0.1 else f"{value:.2f}"


@dataclass
class _Stored:
    ref: str
    uid: str
    origin_key: str
    served: bool
    problems: str
    process_hash: str
    orphan: bool


class IngestionEngine:
    """Applies walks to the database; one writer at a time per process."""

    _lock = threading.Lock()

    def __init__(self, engine: sa.Engine, orphan_strategy: str = "keep") -> None:
        self.engine = engine
        self.orphan_strategy = orphan_strategy
        # Entities written by this process, and how many there were at the last statistics
        # sample: sampled again each time the count doubles (a handful of times in any load).
        self._written = 0
        self._sampled_at = 0

    # --- a whole pass ----------------------------------------------------------------------

    @contextmanager
    def bulk_load(
        self, summary: PassSummary, busy: Callable[[], bool] = lambda: False, build: bool = True
    ) -> Iterator[bool]:
        """A pass that may be the first load of a large catalog; yields whether it is.

        Into an empty catalog, the indexes of :data:`DEFERRED_INDEXES` (and the trigram indexes
        of full text) are dropped and built once at the end, from sorted rows: inserting
        millions of search rows into a ``(key, value)`` index in random order costs several
        times more than the rest of the insert (PostgreSQL's manual gives the same advice for
        populating a database). Reads stay correct meanwhile, only filters are slower. The
        indexes are ensured after every pass, so a replica that died in the middle of a first
        load leaves nothing missing for long; but not while ``busy()`` says a first walk is under
        way (another replica's first load, even when this pass found the catalog empty too and
        had nothing to do: building them then would cost that load what deferring them saves;
        the last walk to end builds them). Refreshes under way do not hold them back.
        Indexes change no answer: no new generation. ``build=False`` leaves them to the next
        pass of another process, which waits for this one to end (the small first load that
        ``greenroom serve`` forks, see ``first_load_apart``: it then ends as soon as its last
        entity is served).
        """
        # Another replica's first walk under way decided for itself. Asked before the
        # transaction: it reads on a connection of its own.
        defer = not busy()
        with self._lock, write_transaction(self.engine, changes_data=False) as conn:
            empty = conn.execute(sa.select(search.c.ref).limit(1)).first() is None
            if empty and defer:
                for index in DEFERRED_INDEXES:  # not ``checkfirst``: reflection (see db)
                    conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index.name}")
                drop_text_indexes(conn)
        try:
            yield empty
        finally:
            if build and not busy():
                with summary.timed("indexes"):
                    summary.indexes_built = self.ensure_indexes()

    def ensure_indexes(self) -> bool:
        """Create whichever deferred index is missing (with the trigram indexes of
        :mod:`greenroom.catalog.text_index`); returns whether any was."""
        created = False
        with self._lock, write_transaction(self.engine, changes_data=False) as conn:
            present = index_names(conn, (search.name, relations.name))
            missing = [index for index in DEFERRED_INDEXES if index.name not in present]
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
            for index in missing:
                index.create(conn)
                created = True
            if any(name not in present for name in TEXT_KEYS.values()):
                # Only where pg_trgm is installed: the migration decided whether it can be.
                created |= create_text_indexes(conn, create_extension=False)
        if created:
            refresh_statistics(self.engine)
        return created

    # --- a whole root ----------------------------------------------------------------------

    def ingest(
        self,
        walker: WalkSource,
        root: RootLocation,
        summary: PassSummary,
        on_batch: Callable[[], None] | None = None,
    ) -> WalkResult:
        """Walk ``root`` and store what changed; ``on_batch`` runs after each batch (to renew
        a lease). Returns the walk's result."""
        result = new_result(root)
        produced: set[str] = set()
        for batch in _ahead(walker.walk(root, result, self.unchanged_sources)):
            self._apply(result, batch, produced, summary)
            if on_batch is not None:
                on_batch()
        self.finish(result, produced, summary)
        return result

    def finish(self, result: WalkResult, produced: set[str], summary: PassSummary) -> None:
        """Write the Location entities, orphan what the root no longer produces, and stitch
        the peers that earlier batches touched."""
        self._apply(result, list(result.locations.values()), produced, summary)
        summary.unchanged += len(set(result.seen) - produced)
        produced.update(result.seen)
        with self._lock, write_transaction(self.engine, durable=False) as conn:
            orphaned: set[str] = set()
            self._orphans(conn, result, produced, orphaned, summary)
            summary.stitched += stitch(conn, orphaned)  # their annotations change: in full
        self.stitch_pending(summary)

    def stitch_pending(self, summary: PassSummary) -> None:
        """Stitch every entity marked as waiting (by any replica, even one that died since)."""
        with summary.timed("stitching peers"):
            self._stitch_pending(summary)

    def _stitch_pending(self, summary: PassSummary) -> None:
        # In the order of the entities' ids, which is the order they were written in: each
        # group's rows, and their search rows, then sit together on disk (in ref order every
        # group of 500 touched pages all over both).
        queued = (
            sa.select(stitch_queue.c.ref)
            .outerjoin(entities, entities.c.ref == stitch_queue.c.ref)
            .order_by(entities.c.id)
            .limit(5000)
        )
        while True:
            with self._lock, write_transaction(self.engine, durable=False) as conn:
                refs = list(conn.execute(queued).scalars())
                if not refs:
                    return
                summary.stitched += stitch(conn, refs, relations_only=True)
                unmark(conn, refs)

    def unchanged_sources(self, origin_key: str, hashes: list[str]) -> dict[str, str]:
        """``{source hash: ref}`` of stored, clean entities of ``origin_key`` with those hashes.

        Only entities with no problems qualify, so that a document whose placeholder could not be
        read is tried again on every pass; Locations never do, since reading them leads on.
        """
        if not hashes:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(entities.c.source_hash, entities.c.ref).where(
                    entities.c.origin_key == origin_key,
                    entities.c.source_hash.in_(hashes),
                    entities.c.problems == "[]",
                    entities.c.orphan.is_(False),
                    sa.func.lower(entities.c.kind) != "location",
                )
            ).all()
        return {row.source_hash: row.ref for row in rows}

    # --- a batch ---------------------------------------------------------------------------

    def _apply(
        self,
        result: WalkResult,
        batch: list[Emitted],
        produced: set[str],
        summary: PassSummary,
    ) -> None:
        """Write one batch and stitch its own entities at once. Peers its relations touched
        (a group owning components of many batches) are queued in ``catalog_stitch_queue`` in
        the same transaction, to be stitched once at the end of the root rather than once per
        batch; the mark is in the database, so a replica that dies leaves it to the next one."""
        if not batch:
            return
        for emitted in batch:
            make_ready(emitted)
        with self._lock, write_transaction(self.engine, durable=False) as conn:
            stored = self._load(conn, [e.ref for e in batch])
            accepted = self._resolve(result, batch, stored)
            touched: set[str] = set()
            self._write(conn, result.root_key, accepted, stored, touched, summary)
            own = {e.ref for e in accepted} & touched
            summary.stitched += stitch(conn, own)
            mark_for_stitch(conn, touched - own)
        self._written += len(accepted)
        if self._written >= max(STATISTICS_FROM, 2 * self._sampled_at):
            sample_statistics(self.engine)
            self._sampled_at = self._written
        for emitted in accepted:
            produced.add(emitted.ref)
            if not (emitted.failed and emitted.reader and self._unserved(emitted, stored)):
                summary.problems.extend(emitted.problems)

    def _load(self, conn: sa.Connection, refs: Sequence[str]) -> dict[str, _Stored]:
        """What is stored of ``refs``. Read through the driver: SQLAlchemy's handling of these
        statements cost more than the statements themselves (one per 500 refs of each batch)."""
        found: dict[str, _Stored] = {}
        for part in chunks(list(refs)):
            where, params = among(conn, "ref", part)
            with driver_cursor(conn) as cursor:
                cursor.execute(
                    "SELECT ref, uid, origin_key, final IS NOT NULL, problems, process_hash, "
                    f"orphan FROM {entities.name} WHERE {where}",
                    params,
                )
                rows = cursor.fetchall()
            for ref, uid, origin, served, problems, process_hash, orphan in rows:
                found[ref] = _Stored(
                    ref, uid, origin, bool(served), problems, process_hash, bool(orphan)
                )
        return found

    @staticmethod
    def _unserved(emitted: Emitted, stored: dict[str, _Stored]) -> bool:
        previous = stored.get(emitted.ref)
        return previous is None or not previous.served

    def _resolve(
        self, result: WalkResult, batch: list[Emitted], stored: dict[str, _Stored]
    ) -> list[Emitted]:
        """Decide conflicts with other roots, and where problems of unservable entities go."""
        accepted = []
        for emitted in batch:
            other = stored.get(emitted.ref)
            if other is not None and other.origin_key != result.root_key and not other.orphan:
                if emitted.reader is not None:
                    result.add_problem(
                        emitted.reader,
                        Problem(
                            f"Detected conflicting entityRef {emitted.ref} already referenced by "
                            f"{other.origin_key} and now also {result.root_key}; the first "
                            "location keeps it",
                            name="ConflictError",
                            file=emitted.location_key.partition(":")[2],
                            entity=emitted.ref,
                        ),
                    )
                continue
            if emitted.failed and emitted.reader and self._unserved(emitted, stored):
                for problem in emitted.problems:
                    result.add_problem(emitted.reader, problem)
            accepted.append(emitted)
        return accepted

    def _write(
        self,
        conn: sa.Connection,
        root_key: str,
        accepted: list[Emitted],
        stored: dict[str, _Stored],
        touched: set[str],
        summary: PassSummary,
    ) -> None:
        now = datetime.now(UTC)
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        problem_updates: list[dict[str, Any]] = []
        replaced: list[str] = []
        new_relations: list[tuple[str, str, str, str]] = []
        for emitted in accepted:
            ref = emitted.ref
            previous = stored.get(ref)
            if emitted.failed:
                problems = dumps([p.as_json() for p in emitted.problems])
                if previous is not None and previous.served and previous.problems != problems:
                    problem_updates.append({"b_ref": ref, "problems": problems, "updated_at": now})
                    touched.add(ref)
                continue
            ready = emitted.prepared
            assert ready is not None  # make_ready ran at the start of the batch
            rels, problems, process_hash = ready.relations, ready.problems, ready.process_hash
            if (
                previous is not None
                and previous.process_hash == process_hash
                and previous.problems == problems  # an error kept on it has cleared
                and not previous.orphan
                and previous.origin_key == root_key
            ):
                continue
            row = {
                "kind": ready.kind,
                "namespace": parse_ref(ref).namespace,
                "name": ready.name,
                "origin_key": root_key,
                "location_key": emitted.location_key,
                "parent_ref": emitted.reader,
                "processed": ready.processed,
                "problems": problems,
                "process_hash": process_hash,
                "source_hash": emitted.source_hash,
                "orphan": False,
                "updated_at": now,
            }
            if previous is None:
                inserts.append({"ref": ref, **row})
            else:
                updates.append({"b_ref": ref, **row})
                replaced.append(ref)
            touched.add(ref)
            touched.update(r[0] for r in rels)
            new_relations.extend((ref, s, t, tg) for s, t, tg in rels)
        touched.update(self._drop_relations(conn, replaced))
        bulk_insert(conn, relations, RELATION_COLUMNS, new_relations)
        _give_ids(conn, inserts)
        if inserts:
            # New entities are stitched before they are inserted: one write each, not an
            # insert and then an update with the stitched entity.
            new_search = finish_new(conn, inserts)
            new_refs = [row["ref"] for row in inserts]
            touched.difference_update(new_refs)
            # Marks that earlier batches left for these (a relation naming an entity further
            # down the file) are satisfied: they were just stitched with every relation.
            unmark(conn, new_refs)
            conn.execute(entities.insert(), inserts)
            bulk_insert(conn, search, SEARCH_COLUMNS, new_search)
        if updates:
            conn.execute(entities.update().where(entities.c.ref == sa.bindparam("b_ref")), updates)
        if problem_updates:
            conn.execute(
                entities.update().where(entities.c.ref == sa.bindparam("b_ref")), problem_updates
            )
        summary.written += len(inserts) + len(updates) + len(problem_updates)

    def _drop_relations(self, conn: sa.Connection, originating: Sequence[str]) -> set[str]:
        """Delete the relations emitted by ``originating``; returns the sources they touched."""
        sources: set[str] = set()
        for part in chunks(list(originating)):
            sources.update(
                conn.execute(
                    sa.select(relations.c.source_ref)
                    .where(relations.c.originating_ref.in_(part))
                    .distinct()
                ).scalars()
            )
            conn.execute(relations.delete().where(relations.c.originating_ref.in_(part)))
        return sources

    # --- the end of a root -----------------------------------------------------------------

    def _orphans(
        self,
        conn: sa.Connection,
        result: WalkResult,
        produced: set[str],
        touched: set[str],
        summary: PassSummary,
    ) -> None:
        """Orphan (or delete) what this root no longer produces, keeping unreadable sources.

        An entity is kept as it is when its file could not be read this time, or when the
        Location that read it failed (it led nowhere this time), transitively; everything is
        kept when the root's own target could not be read (for a root pointed at a new target
        by ``PUT /locations/{id}``, its entities came from the old one).
        """
        if result.root_key in result.failed_keys:
            return
        rows = conn.execute(
            sa.select(
                entities.c.ref, entities.c.location_key, entities.c.parent_ref, entities.c.orphan
            ).where(entities.c.origin_key == result.root_key)
        ).all()
        gone = {row.ref: row for row in rows if row.ref not in produced}
        retained_parents = set(result.failed_refs)
        retained: set[str] = set()
        changed = True
        while changed:
            changed = False
            for ref, row in gone.items():
                if ref in retained:
                    continue
                if result.keeps(row.location_key) or row.parent_ref in retained_parents:
                    retained.add(ref)
                    retained_parents.add(ref)
                    changed = True
        lost = [ref for ref in gone if ref not in retained]
        if not lost:
            return
        if self.orphan_strategy == "delete":
            self.delete(conn, lost, touched)
            summary.deleted += len(lost)
            return
        fresh = [ref for ref in lost if not gone[ref].orphan]
        for part in chunks(fresh):
            conn.execute(entities.update().where(entities.c.ref.in_(part)).values(orphan=True))
        touched.update(fresh)
        summary.orphaned += len(fresh)

    def remove_origin(self, origin_key: str, summary: PassSummary) -> None:
        """Orphan (or delete) everything a root that is gone produced."""
        result = WalkResult(origin_key, "")
        self.finish(result, set(), summary)

    def origins(self) -> set[str]:
        """Every root location key that entities in the database come from."""
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(entities.c.origin_key).distinct()).scalars())

    def delete(self, conn: sa.Connection, refs: Iterable[str], touched: set[str]) -> None:
        """Remove entities and what they emitted; their relation peers are re-stitched."""
        refs = list(refs)
        touched.update(self._drop_relations(conn, refs))
        for part in chunks(refs):
            ids = sa.select(entities.c.id).where(entities.c.ref.in_(part))
            conn.execute(search.delete().where(search.c.entity_id.in_(ids)))
            conn.execute(entities.delete().where(entities.c.ref.in_(part)))
        touched.difference_update(refs)


def make_ready(emitted: Emitted) -> None:
    """Prepare ``emitted`` for writing (:func:`prepare`) unless it failed or is prepared; an
    entity that cannot be stored (nested deeper than the JSON encoder goes, about 250 levels;
    a NUL character, which YAML's ``"\\0"`` escape or a placeholder's file can carry and which
    PostgreSQL refuses) fails with a problem instead of failing the whole pass."""
    if emitted.failed or emitted.prepared is not None:
        return
    try:
        emitted.prepared = prepare(emitted)
    except (TypeError, ValueError, RecursionError) as exc:
        emitted.failed = True
        emitted.problems.append(
            Problem(
                f"Entity {emitted.ref} cannot be stored: {exc}",
                file=emitted.location_key.partition(":")[2],
                entity=emitted.ref,
            )
        )


def prepare(emitted: Emitted) -> Prepared:
    """What :meth:`IngestionEngine._write` needs of an entity that did not fail: its JSON, its
    relations and problems, and the hash that says whether anything of it changed."""
    problems = dumps([p.as_json() for p in emitted.problems])
    # Refs are canonical in lower case (a plugin's processor may spell them otherwise): the
    # stitch finds an entity's relations by its ref, and filters compare targets as stored.
    rels = sorted({(r.source.lower(), r.type, r.target.lower()) for r in emitted.relations})
    for relation in rels:
        if any("\x00" in text for text in relation):  # a plugin's processor emitted it
            shown = " ".join(relation).replace("\x00", "\\0")
            raise ValueError(f"its relation {shown} contains a NUL character")
        type_ = relation[1]
        if not (0 < len(type_) <= RELATION_TYPE_CHARS and type_.isascii()):
            # Filters fold a type's case in SQL (relation_search.py), ASCII's alone on SQLite;
            # PostgreSQL refuses a longer one, which would fail the whole batch.
            raise ValueError(
                f"its relation type {type_!r} is not an ASCII name of 1 to "
                f"{RELATION_TYPE_CHARS} characters"
            )
    entity = emitted.entity
    processed = dumps(entity)
    if "\\u0000" in processed:  # the JSON escape of NUL (or text that looks like it)
        where = _nul_at(entity)
        if where is not None:
            # PostgreSQL refuses NUL in text: its search rows would fail the whole batch.
            shown = (where or "a key").replace("\x00", "\\0")  # not the character itself
            raise ValueError(f"{shown} contains a NUL character")
    return Prepared(
        kind=str(entity["kind"]),
        name=str(entity["metadata"]["name"]),
        processed=processed,
        relations=rels,
        problems=problems,
        process_hash=digest([entity, rels, problems, emitted.location_key, emitted.reader]),
    )


def _nul_at(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) holding a NUL character, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return inner
            found = _nul_at(item, inner)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_at(item, f"{path}.{index}")
            if found is not None:
                return found
    return None


def _give_ids(conn: sa.Connection, inserts: list[dict[str, Any]]) -> None:
    """A uid (random, as Backstage's) and an id for each new entity row. Ids follow the
    largest stored one, in the order of the rows: safe under the write lock, which every
    writer holds (:func:`greenroom.db.write_transaction`); the id of an entity deleted last
    may be given again, which nothing minds, since its rows go with it."""
    if not inserts:
        return
    top = conn.execute(sa.select(sa.func.max(entities.c.id))).scalar() or 0
    for number, (row, uid) in enumerate(zip(inserts, _uuid4s(len(inserts)), strict=True)):
        row["uid"], row["id"] = uid, top + 1 + number


def _uuid4s(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs from one read of the system's randomness; one read
    per UUID costs more than the insert of the entity on some virtual machines."""
    raw = os.urandom(16 * count)
    return [str(uuid.UUID(bytes=raw[i * 16 : (i + 1) * 16], version=4)) for i in range(count)]


_DONE = object()


def _ahead(batches: Iterator[list[Emitted]], depth: int = 2) -> Iterator[list[Emitted]]:
    """Run ``batches`` in a thread, ``depth`` batches ahead of the consumer.

    A walk in this process and the writes take turns under the interpreter lock (10,000
    entities: walk alone 1.6 s, writes alone 2.8 s, together 4.2 s), so the thread buys little
    beyond the parser's process; a walk apart (:mod:`greenroom.catalog.ingest.apart`) only
    waits here, in the pipe. An exception in the walk is raised here.
    """
    channel: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                channel.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=produce, name="greenroom-walk", daemon=True)
    thread.start()
    try:
        while True:
            item = channel.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
