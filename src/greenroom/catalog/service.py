"""The catalog's logic behind the API and the CLI: passes, refreshes and locations."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from greenroom.catalog import predicates
from greenroom.catalog.ingest.apart import (
    MIN_BYTES,
    ProcessWalker,
    in_memory,
    root_bytes,
    worth_a_process,
)
from greenroom.catalog.ingest.engine import IngestionEngine, PassSummary, WalkSource
from greenroom.catalog.ingest.parsing import Parser
from greenroom.catalog.ingest.reading import AllowRule, Reader, location_key
from greenroom.catalog.ingest.rules import RulesEnforcer
from greenroom.catalog.ingest.walk import Emitted, Walker, WalkResult, generated_location_entity
from greenroom.catalog.leases import Leases, replica_id
from greenroom.catalog.model.checks import check_entity
from greenroom.catalog.model.kinds import KindSpec
from greenroom.catalog.model.validation import Validator
from greenroom.catalog.stitch import stitch
from greenroom.catalog.tables import entities, locations
from greenroom.context import AppContext
from greenroom.contracts import EntityProvider, Processor, RootLocation
from greenroom.db import refresh_statistics, write_transaction
from greenroom.exceptions import Conflict, InvalidInput, NotFound
from greenroom.memory import release_memory
from greenroom.plugins import flatten

# Rows written by one root after which the planner's statistics are refreshed.
STATISTICS_AFTER = 5000
RELEASE_AFTER = 500  # entities written by a pass after which freed memory goes back


def catalog_validator(context: AppContext) -> Validator:
    """The validator of every kind the installed plugins declare (built once per app)."""
    validator = context.services.get("catalog.validator")
    if validator is None:
        kinds: list[KindSpec] = flatten(context.plugins.hook.greenroom_entity_kinds())
        names = [k.kind.lower() for k in kinds]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(
                f"entity kinds declared twice by plugins: {', '.join(sorted(duplicates))}"
            )
        validator = Validator(kinds)
        context.services["catalog.validator"] = validator
    return validator


class CatalogService:
    """Ingestion passes, single-entity refreshes and location management."""

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self.config = context.config
        self.engine = context.engine
        self.validator = catalog_validator(context)
        self.processors: list[Processor] = flatten(
            context.plugins.hook.greenroom_catalog_processors(context=context)
        )
        self.providers: list[EntityProvider] = flatten(
            context.plugins.hook.greenroom_entity_providers(context=context)
        )
        self.rules = RulesEnforcer(self.config.catalog.rules)
        self.ingestion = IngestionEngine(self.engine, self.config.catalog.orphan_strategy)
        self.parser = Parser()  # parses large files in another process
        # Freed memory goes back to the system after a large pass; not in a process that ends
        # with its pass (the forked first load), where the collection only delays its end.
        self.release_after: int | None = RELEASE_AFTER
        self.leases = Leases(self.engine, replica_id(), self.config.catalog.lease_duration)

    def reader(self) -> Reader:
        """A reader with this config's allow-list and size limit."""
        allow = [
            AllowRule(a.host, tuple(a.paths) if a.paths is not None else None)
            for a in self.config.backend.reading.allow
        ]
        return Reader(allow, max_bytes=self.config.catalog.max_file_bytes)

    def roots(self) -> list[RootLocation]:
        """Every root location of every provider."""
        return [root for provider in self.providers for root in provider.roots()]

    def refresh(
        self,
        roots: list[RootLocation] | None = None,
        progress: Callable[[RootLocation], None] | None = None,
    ) -> PassSummary:
        """One full pass over ``roots`` (default: all of them)."""
        summary = PassSummary()
        full = roots is None
        todo = self.roots() if roots is None else roots
        with summary.timed("pass"), self._pass(summary) as (walker, bulk):
            for root in todo:
                key = location_key(root.type, root.target)
                if self.leases.claim(key):
                    self._walk_leased(walker, root, key, summary, statistics=not bulk)
                else:
                    summary.busy += 1  # another replica is on it; it is marked due again
                if progress is not None:
                    progress(root)
            if full:
                self._sweep(summary)
        return summary

    def run_due(self, *, build_indexes: bool = True) -> PassSummary:
        """Refresh every root that is due and not leased by another replica (the loop's work);
        several replicas running this share the roots between them. ``build_indexes=False``:
        a first load leaves the indexes it deferred to the next pass of another process
        (``IngestionEngine.bulk_load``)."""
        summary = PassSummary()
        current = self.roots()
        by_key = {location_key(r.type, r.target): r for r in current}
        self.leases.sync(by_key)
        walked: set[str] = set()
        with summary.timed("pass"), self._pass(summary, build_indexes) as (walker, bulk):
            while (key := self.leases.claim_due()) is not None:
                root = by_key.get(key)
                # Registered after this loop began: found on the next turn. Or walked already
                # with no ``processingInterval``: released, it is due again at once, and this
                # loop would never end (with an interval, only a root marked due during its
                # walk comes back, to be walked again now).
                again = key in walked and self.config.catalog.processing_interval is None
                if root is None or again:
                    self.leases.release(key, None)
                    break
                walked.add(key)
                self._walk_leased(walker, root, key, summary, statistics=not bulk)
            self._sweep(summary)
            if not self.leases.any_held():
                # What a replica that died left marked; a live walker stitches its own marks
                # at the end of its root (doing it now would stitch its hubs twice).
                self.ingestion.stitch_pending(summary)
        return summary

    @contextmanager
    def _pass(
        self, summary: PassSummary, build_indexes: bool = True
    ) -> Iterator[tuple[Walker, bool]]:
        """What every pass shares: a walker, and whether this is the first load of the catalog
        (which defers indexes).

        When the walks are over, the parser's worker stops and, after a large pass, the memory
        freed goes back to the system: before the deferred indexes of a first load are built,
        not after, since by then every entity is served and the process is as small as it will
        get (SQLite sorts the index entries in this process: what that frees goes back too).
        """
        bulk = False
        try:
            with (
                self.ingestion.bulk_load(
                    summary, busy=self.leases.first_walk_held, build=build_indexes
                ) as bulk,
                self.reader() as reader,
            ):
                if bulk:  # an empty catalog: every root's next walk is a first load again
                    self.leases.forget_walks()
                try:
                    yield (
                        Walker(
                            reader, self.validator, self.rules, self.processors, parser=self.parser
                        ),
                        bulk,
                    )
                finally:
                    self._shrink(summary)
        finally:
            if bulk:
                self._shrink(summary)

    def _shrink(self, summary: PassSummary) -> None:
        """Stop the parser's worker; after a large pass, give freed memory back."""
        self.parser.close()
        if self.release_after is not None and summary.written >= self.release_after:
            release_memory()

    def _walk_leased(
        self,
        walker: Walker,
        root: RootLocation,
        key: str,
        summary: PassSummary,
        *,
        statistics: bool = True,
    ) -> None:
        """Walk a root whose lease this replica holds, renewing it, and release it after.
        ``statistics``: refresh the planner's after a large change (a bulk load does that
        once its indexes are built)."""
        interval = self.config.catalog.processing_interval
        written = summary.written
        try:
            source: WalkSource = walker
            if worth_a_process(self.context, root):
                source = ProcessWalker(self.config, fallback=walker)
            self.ingestion.ingest(source, root, summary, on_batch=lambda: self.leases.renew(key))
            summary.roots += 1
        finally:
            self.leases.release(key, interval, walked=True)
        if statistics and summary.written - written >= STATISTICS_AFTER:
            refresh_statistics(self.engine)

    def _sweep(self, summary: PassSummary) -> None:
        """A root that is no longer configured or registered produces nothing any more. The
        roots are read again: a location registered during the pass must not be swept."""
        keep = {location_key(r.type, r.target) for r in self.roots()}
        for origin in self.ingestion.origins() - keep:
            self.ingestion.remove_origin(origin, summary)

    def counts(self) -> dict[str, int]:
        """Served entities per kind."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(entities.c.kind, sa.func.count())
                .where(entities.c.final.is_not(None))
                .group_by(entities.c.kind)
            ).all()
        return {row[0]: row[1] for row in rows}

    def _origin_of(self, ref: str) -> str | None:
        """The root location key an entity comes from."""
        with self.engine.connect() as conn:
            origin = conn.execute(
                sa.select(entities.c.origin_key).where(entities.c.ref == ref.lower())
            ).scalar()
        return None if origin is None else str(origin)

    def refresh_entity(self, ref: str) -> None:
        """Re-read the root location that produced ``ref`` (``POST /refresh``)."""
        origin = self._origin_of(ref)
        if origin is None:
            raise NotFound(f"Entity {ref.lower()} not found")
        roots = [r for r in self.roots() if location_key(r.type, r.target) == origin]
        self.refresh(roots)

    def dry_walk(self, root: RootLocation) -> tuple[WalkResult, list[Emitted]]:
        """Read and process ``root`` without storing anything (dry runs, analysis)."""
        with self.reader() as reader:
            return Walker(reader, self.validator, self.rules, self.processors).walk_all(root)

    # --- locations -----------------------------------------------------------------------

    def _check_location(self, type_: str, target: str, *, registering: bool) -> None:
        allowed = self.config.catalog.allowed_location_types
        if registering and type_ not in allowed:
            raise InvalidInput(
                f"Registered locations must be of an allowed type {json.dumps(allowed)}"
            )
        if type_ not in ("url", "file"):
            raise InvalidInput(f"Unknown location type '{type_}'; expected url or file")
        if type_ == "url":
            with self.reader() as reader:
                try:
                    reader.check_url(target)
                except Exception as exc:
                    raise InvalidInput(str(exc)) from exc
        elif not os.path.isabs(target):
            raise InvalidInput(f"A file location needs an absolute path, got {target}")

    @staticmethod
    def _location_json(id_: str, type_: str, target: str) -> dict[str, Any]:
        name = generated_location_entity(RootLocation(type_, target))["metadata"]["name"]
        return {"id": id_, "type": type_, "target": target, "entityRef": f"location:default/{name}"}

    def add_location(
        self, type_: str, target: str, *, dry_run: bool = False, refresh_existing: bool = False
    ) -> dict[str, Any]:
        """Register a location and ingest it now (or, with ``dry_run``, show what it would add).

        An existing location is a conflict, unless ``refresh_existing`` (Backstage's
        ``onConflict=refresh``) asks to read it again instead.
        """
        self._check_location(type_, target, registering=True)
        existing = self._location_row(
            sa.and_(locations.c.type == type_, locations.c.target == target)
        )
        if dry_run:
            _, emitted = self.dry_walk(RootLocation(type_, target))
            problems = [p for e in emitted for p in e.problems]
            if problems:
                raise InvalidInput(", ".join(p.text() for p in problems))
            return {
                "exists": existing is not None,
                "location": self._location_json(f"{type_}:{target}", type_, target),
                "entities": [e.entity for e in emitted],
            }
        if existing is not None:
            if not refresh_existing:
                raise Conflict(f"Location {type_}:{target} already exists")
            self.refresh([RootLocation(type_, target)])
            return {"location": existing, "entities": [], "exists": True}
        id_ = str(uuid.uuid4())
        row = {
            "id": id_,
            "type": type_,
            "target": target,
            "created_at": datetime.now(UTC),
        }
        with write_transaction(self.engine) as conn:
            conn.execute(locations.insert().values(**row))
        # Unlike Backstage, ingest at once: the caller can read the entities on the next call.
        self.refresh([RootLocation(type_, target)])
        return {"location": self._location_json(id_, type_, target), "entities": []}

    def _location_rows(self, where: Any = sa.true()) -> list[dict[str, Any]]:
        """Registered locations matching ``where``, oldest first, as the API shows them."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(locations.c.id, locations.c.type, locations.c.target)
                .where(where)
                .order_by(locations.c.created_at, locations.c.id)
            ).all()
        return [self._location_json(r.id, r.type, r.target) for r in rows]

    def _location_row(self, where: Any) -> dict[str, Any] | None:
        found = self._location_rows(where)
        return found[0] if found else None

    def list_locations(self) -> list[dict[str, Any]]:
        """Registered locations, oldest first (config locations are not listed, as in Backstage)."""
        return self._location_rows()

    def get_location(self, id_: str) -> dict[str, Any]:
        """One registered location by id."""
        row = self._location_row(locations.c.id == id_)
        if row is None:
            raise NotFound(f"Found no location with ID {id_}")
        return row

    def query_locations(
        self, query: dict[str, Any] | None, limit: int, after_id: str | None
    ) -> tuple[list[dict[str, Any]], int]:
        """Registered locations matching a predicate (``POST /locations/by-query``), in id
        order from after ``after_id``, at most ``limit``; with how many match in all."""
        test = None if query is None else predicates.location_test(query)
        matching = sorted(
            (loc for loc in self._location_rows() if test is None or test(loc)),
            key=lambda loc: str(loc["id"]),
        )
        page = [loc for loc in matching if after_id is None or str(loc["id"]) > after_id]
        return page[:limit], len(matching)

    def update_location(self, id_: str, type_: str, target: str) -> dict[str, Any]:
        """Point a registered location at another target (``PUT /locations/{id}``) and read it
        now.

        What the old target produced passes to the new one in the same transaction, as
        Backstage's Location entity keeps its children: the new target's walk keeps what it
        produces again (with its uid), orphans the rest (or deletes it, under
        ``orphanStrategy: delete``), and keeps everything when it cannot be read. A walk of
        the old target still under way elsewhere finds those entities owned by another root
        (a conflict, not a write); what it adds goes at the next sweep, its root being gone.
        """
        self._check_location(type_, target, registering=True)
        new = location_key(type_, target)
        with write_transaction(self.engine) as conn:
            row = conn.execute(
                sa.select(locations.c.type, locations.c.target).where(locations.c.id == id_)
            ).first()
            if row is None:
                raise NotFound(f"Found no location with ID {id_}")
            taken = conn.execute(
                sa.select(locations.c.id).where(
                    locations.c.type == type_, locations.c.target == target, locations.c.id != id_
                )
            ).first()
            if taken is not None:
                raise Conflict(f"Location {type_}:{target} already exists")
            conn.execute(
                locations.update().where(locations.c.id == id_).values(type=type_, target=target)
            )
            old = location_key(row.type, row.target)
            if old != new:
                conn.execute(
                    entities.update().where(entities.c.origin_key == old).values(origin_key=new)
                )
        self.refresh([RootLocation(type_, target)])
        return self._location_json(id_, type_, target)

    def delete_location(self, id_: str) -> None:
        """Unregister a location and remove everything it produced."""
        row = self.get_location(id_)
        key = location_key(row["type"], row["target"])
        # As in Backstage, the location's generated entity and everything under it go at once,
        # in the same transaction as the location itself.
        touched: set[str] = set()
        with write_transaction(self.engine) as conn:
            conn.execute(locations.delete().where(locations.c.id == id_))
            refs = (
                conn.execute(sa.select(entities.c.ref).where(entities.c.origin_key == key))
                .scalars()
                .all()
            )
            self.ingestion.delete(conn, refs, touched)
            stitch(conn, touched)

    def location_by_entity(self, ref: str) -> dict[str, Any]:
        """The registered location an entity originates from (404 for config locations)."""
        origin = self._origin_of(ref)
        if origin is None:
            raise NotFound(f"found no entity for ref {ref}")
        type_, _, target = origin.partition(":")
        row = self._location_row(sa.and_(locations.c.type == type_, locations.c.target == target))
        if row is None:
            raise NotFound(f"Found no location with type {type_} and target {target}")
        return row

    def validate(self, entity: Any) -> list[str]:
        """Validation messages for an entity sent by a client (``POST /validate-entity``)."""
        return [e.message for e in check_entity(self.validator, entity)]

    def delete_entity(self, uid: str) -> None:
        """Remove an entity now (``DELETE /entities/by-uid``); a location that still produces
        it brings it back on its next refresh, as in Backstage."""
        with self.engine.connect() as conn:
            ref = conn.execute(sa.select(entities.c.ref).where(entities.c.uid == uid)).scalar()
        if ref is None:
            return  # Backstage answers 204 for an unknown uid too
        touched: set[str] = set()
        with write_transaction(self.engine) as conn:
            self.ingestion.delete(conn, [ref], touched)
            stitch(conn, touched)

    def analyze_location(self, type_: str, target: str) -> dict[str, Any]:
        """The entity files at a location and whether it is registered (``/analyze-location``)."""
        self._check_location(type_, target, registering=True)
        result, emitted = self.dry_walk(RootLocation(type_, target))
        problems = [p.text() for e in emitted for p in e.problems]
        found = [e for e in emitted if e.ref != result.root_ref and not e.failed]
        if not found and problems:
            raise InvalidInput("; ".join(problems))
        registered = (
            self._location_row(sa.and_(locations.c.type == type_, locations.c.target == target))
            is not None
        )
        return {
            "existingEntityFiles": [
                {
                    "location": dict(
                        zip(("type", "target"), e.location_key.split(":", 1), strict=True)
                    ),
                    "isRegistered": registered,
                    "entity": e.entity,
                }
                for e in found
            ],
            "generateEntities": [],
        }


def first_load_apart(context: AppContext) -> bool:
    """Whether ``greenroom serve`` loads the catalog in a process forked at start-up
    (``greenroom_serve_starting`` in ``plugin.py``): a new catalog (no entity yet) of file
    roots that together are below the walk-apart size, on a database another process shares,
    with the refresh loop on, where processes can fork.

    The server then imports its web stack and starts on one core while the load runs on the
    other: 1,000 entities are listed 0.3-0.4 s sooner (1.4-1.6 s against 1.6-1.9 s from the
    command, five pairs). Larger loads, and URL roots (their size is not known before they are
    read), are loaded by the refresh loop as before: a large root's walk is on the other core
    already, and a child alive for the whole of a long load would keep a second copy of the
    server's pages resident.
    """
    if context.config.catalog.processing_interval is None or not hasattr(os, "fork"):
        return False
    if in_memory(context.engine.url):
        return False
    with context.engine.connect() as connection:
        if connection.execute(sa.select(entities.c.id).limit(1)).first() is not None:
            return False
    roots = CatalogService(context).roots()  # a throwaway: the child builds its own
    if not roots or any(root.type != "file" for root in roots):
        return False
    return sum(root_bytes(root, MIN_BYTES) for root in roots) < MIN_BYTES
