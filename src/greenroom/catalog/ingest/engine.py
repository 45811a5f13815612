"""A pass of ingestion: walk every root, then write what changed in set-based batches.

For each root the engine loads what the database holds for it in one query, compares content
hashes, and writes only the entities whose processed content, relations or problems changed;
then it re-stitches exactly the entities those changes touch. An unchanged source costs reads,
not writes. Entities a root no longer produces become orphans (kept and annotated, or deleted,
per ``catalog.orphanStrategy``), except those whose file could not be read this time: they stay
as they were until it reads again.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from greenroom.catalog.ingest.walk import Emitted, Walker, WalkResult
from greenroom.catalog.model.problems import Problem
from greenroom.catalog.model.refs import parse_ref
from greenroom.catalog.stitch import chunks, digest, dumps, stitch
from greenroom.catalog.tables import entities, relations, search
from greenroom.contracts import RootLocation
from greenroom.db import bulk_insert

RELATION_COLUMNS = ("originating_ref", "source_ref", "type", "target_ref")


@dataclass
class PassSummary:
    """What a pass did, for the CLI's table and the logs."""

    roots: int = 0
    written: int = 0
    stitched: int = 0
    orphaned: int = 0
    deleted: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class _Existing:
    ref: str
    uid: str
    origin_key: str
    location_key: str
    parent_ref: str | None
    served: bool
    problems: str
    process_hash: str
    orphan: bool
    kind: str


class IngestionEngine:
    """Applies walks to the database; one writer at a time per process."""

    _lock = threading.Lock()

    def __init__(self, engine: sa.Engine, orphan_strategy: str = "keep") -> None:
        self.engine = engine
        self.orphan_strategy = orphan_strategy
        self._moved: set[str] = set()

    def run(self, walker: Walker, roots: Sequence[RootLocation], summary: PassSummary) -> None:
        """Walk each root and apply it; one transaction per root."""
        for root in roots:
            result = walker.walk(root)
            self.apply(result, summary)
            summary.roots += 1

    def apply(self, result: WalkResult, summary: PassSummary) -> set[str]:
        """Write one walk's outcome; returns the refs whose served entity changed."""
        with self._lock, self.engine.begin() as conn:
            existing = self._load(conn, entities.c.origin_key == result.root_key)
            others = self._load_refs(conn, [r for r in result.emitted if r not in existing])
            produced = self._resolve(result, existing, others)
            touched: set[str] = set()
            self._write(conn, result.root_key, produced, existing | others, touched, summary)
            self._orphans(conn, result, produced, existing, touched, summary)
            summary.stitched += stitch(conn, touched)
            for emitted in produced.values():
                if emitted.failed and emitted.ref in self._moved:
                    continue  # its problems were handed to the Location that read it
                if not emitted.failed:
                    kind = str(emitted.entity["kind"])
                    summary.kinds[kind] = summary.kinds.get(kind, 0) + 1
                summary.problems.extend(emitted.problems)
            return touched

    def origins(self) -> set[str]:
        """Every root location key that entities in the database come from."""
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(entities.c.origin_key).distinct()).scalars())

    def _load(self, conn: sa.Connection, where: Any) -> dict[str, _Existing]:
        rows = conn.execute(
            sa.select(
                entities.c.ref,
                entities.c.uid,
                entities.c.origin_key,
                entities.c.location_key,
                entities.c.parent_ref,
                entities.c.final.is_not(None).label("served"),
                entities.c.problems,
                entities.c.process_hash,
                entities.c.orphan,
                entities.c.kind,
            ).where(where)
        )
        return {row.ref: _Existing(*row) for row in rows}

    def _load_refs(self, conn: sa.Connection, refs: Sequence[str]) -> dict[str, _Existing]:
        found: dict[str, _Existing] = {}
        for batch in chunks(list(refs)):
            found.update(self._load(conn, entities.c.ref.in_(batch)))
        return found

    def _resolve(
        self,
        result: WalkResult,
        existing: dict[str, _Existing],
        others: dict[str, _Existing],
    ) -> dict[str, Emitted]:
        """Decide conflicts and where problems of unservable entities go."""
        produced: dict[str, Emitted] = {}
        for ref, emitted in result.emitted.items():
            other = others.get(ref)
            if other is not None and other.origin_key != result.root_key and not other.orphan:
                if emitted.reader is not None:
                    result.add_problem(
                        emitted.reader,
                        Problem(
                            f"Detected conflicting entityRef {ref} already referenced by "
                            f"{other.origin_key} and now also {result.root_key}; the first "
                            "location keeps it",
                            name="ConflictError",
                            file=emitted.location_key.partition(":")[2],
                            entity=ref,
                        ),
                    )
                continue
            produced[ref] = emitted
        self._moved = set()
        for ref, emitted in list(produced.items()):
            previous = existing.get(ref) or others.get(ref)
            if emitted.failed and (previous is None or not previous.served) and emitted.reader:
                self._moved.add(ref)
                for problem in emitted.problems:
                    result.add_problem(emitted.reader, problem)
        return produced

    def _write(
        self,
        conn: sa.Connection,
        root_key: str,
        produced: dict[str, Emitted],
        existing: dict[str, _Existing],
        touched: set[str],
        summary: PassSummary,
    ) -> None:
        now = datetime.now(UTC)
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        problem_updates: list[dict[str, Any]] = []
        replaced: list[str] = []
        new_relations: list[tuple[str, str, str, str]] = []
        for ref, emitted in produced.items():
            previous = existing.get(ref)
            problems = dumps([p.as_json() for p in emitted.problems])
            if emitted.failed:
                if previous is not None and previous.served and previous.problems != problems:
                    problem_updates.append({"b_ref": ref, "problems": problems, "updated_at": now})
                    touched.add(ref)
                continue
            rels = sorted({(r.source, r.type, r.target) for r in emitted.relations})
            process_hash = digest([emitted.entity, rels, problems, emitted.location_key])
            if (
                previous is not None
                and previous.process_hash == process_hash
                and not previous.orphan
                and previous.origin_key == root_key
            ):
                continue
            name = parse_ref(ref)
            row = {
                "kind": str(emitted.entity["kind"]),
                "namespace": name.namespace,
                "name": str(emitted.entity["metadata"]["name"]),
                "origin_key": root_key,
                "location_key": emitted.location_key,
                "parent_ref": emitted.reader,
                "processed": dumps(emitted.entity),
                "problems": problems,
                "process_hash": process_hash,
                "orphan": False,
                "updated_at": now,
            }
            if previous is None:
                inserts.append({"ref": ref, "uid": str(uuid.uuid4()), **row})
            else:
                updates.append({"b_ref": ref, **row})
                replaced.append(ref)
            touched.add(ref)
            touched.update(r[0] for r in rels)
            new_relations.extend((ref, s, t, tg) for s, t, tg in rels)
        touched.update(self._drop_relations(conn, replaced))
        for batch in chunks(inserts, 1000):
            conn.execute(entities.insert(), list(batch))
        for batch in chunks(updates, 1000):
            conn.execute(
                entities.update().where(entities.c.ref == sa.bindparam("b_ref")), list(batch)
            )
        if problem_updates:
            conn.execute(
                entities.update().where(entities.c.ref == sa.bindparam("b_ref")), problem_updates
            )
        bulk_insert(conn, relations, RELATION_COLUMNS, new_relations)
        summary.written += len(inserts) + len(updates) + len(problem_updates)

    def _drop_relations(self, conn: sa.Connection, originating: Sequence[str]) -> set[str]:
        """Delete the relations emitted by ``originating``; returns the sources they touched."""
        sources: set[str] = set()
        for batch in chunks(list(originating)):
            sources.update(
                conn.execute(
                    sa.select(relations.c.source_ref)
                    .where(relations.c.originating_ref.in_(batch))
                    .distinct()
                ).scalars()
            )
            conn.execute(relations.delete().where(relations.c.originating_ref.in_(batch)))
        return sources

    def _orphans(
        self,
        conn: sa.Connection,
        result: WalkResult,
        produced: dict[str, Emitted],
        existing: dict[str, _Existing],
        touched: set[str],
        summary: PassSummary,
    ) -> None:
        """Orphan (or delete) what this root no longer produces, keeping unreadable sources."""
        retained_parents = {ref for ref, e in produced.items() if e.failed}
        gone = {ref: row for ref, row in existing.items() if ref not in produced}
        retained: set[str] = set()
        changed = True
        while changed:
            changed = False
            for ref, row in gone.items():
                if ref in retained:
                    continue
                key = row.location_key
                if key in result.failed_keys or (row.parent_ref in retained_parents):
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
        for batch in chunks(fresh):
            conn.execute(entities.update().where(entities.c.ref.in_(batch)).values(orphan=True))
        touched.update(fresh)
        summary.orphaned += len(fresh)

    def delete(self, conn: sa.Connection, refs: Iterable[str], touched: set[str]) -> None:
        """Remove entities and what they emitted; their relation peers are re-stitched."""
        refs = list(refs)
        touched.update(self._drop_relations(conn, refs))
        for batch in chunks(refs):
            conn.execute(search.delete().where(search.c.ref.in_(batch)))
            conn.execute(entities.delete().where(entities.c.ref.in_(batch)))
        touched.difference_update(refs)
