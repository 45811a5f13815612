"""Walk a large root in a process of its own, so that walking and writing use two cores.

The walk (reading, parsing, placeholders, validation, relations) and the writes (rows for the
database driver, stitching) are Python, and two threads of one process take turns under its
interpreter lock. Measured on 2 cores, 10,000 entities: walking alone 1.6 s, writing alone 2.8 s,
the two in threads 4.2 s; 50,000: 7.6 s, 17.7 s and 26.6 s. The lock serialised them. Here the
walk runs in a child process (``spawn``: the server has threads) that builds the same walker from
the configuration and the installed plugins, and sends each batch through a pipe, with what the
writer needs already computed (:class:`~greenroom.catalog.ingest.walk.Prepared`: the entity's
JSON and content hash instead of its objects, a tenth of the cost to pass). The pipe holds about
one batch, so the child stays a batch or two ahead, and memory stays bounded; what the walk
allocates goes with the child instead of staying in the server's heap.

Only for roots worth a process: the first load of a file root of at least :data:`MIN_BYTES`
with the files its Locations name one level down (a process costs half a second to start; a
refresh skips unchanged documents before parsing them, and the walk is cheap), in a context whose
plugins another process can load again (:attr:`~greenroom.context.AppContext.rebuildable`), on
a database another process can open (not SQLite in memory). A child that fails before its first
batch is replaced by a walk in this process; one that fails later fails the pass, like any error
of a walk (the next pass starts again, and skips what was written).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import stat
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import sqlalchemy as sa

from greenroom.catalog.ingest.parsing import Parser, parse_documents
from greenroom.catalog.ingest.reading import (
    Reader,
    ReadError,
    location_key,
    resolve_relative,
    split_key,
)
from greenroom.catalog.ingest.walk import (
    Emitted,
    Lookup,
    Walker,
    WalkResult,
    location_targets,
    new_result,
)
from greenroom.catalog.tables import entities
from greenroom.config import Config
from greenroom.context import AppContext
from greenroom.contracts import RootLocation

log = logging.getLogger(__name__)

MIN_BYTES = 4 * 1024 * 1024  # about 4,000 entities of the shared benchmark's catalog


class WalkProcessError(RuntimeError):
    """The walk's process failed; the message holds its traceback or exit code."""


def in_memory(url: sa.URL) -> bool:
    """Whether ``url`` is a SQLite database in this process's memory, which no other process
    (spawned or forked) shares."""
    return url.get_backend_name() == "sqlite" and (
        url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
    )


def worth_a_process(context: AppContext, root: RootLocation) -> bool:
    """Whether ``root`` is walked apart: a large file root, plugins another process can load."""
    if not context.rebuildable or root.type != "file":
        return False
    if in_memory(context.engine.url):
        return False  # another process would open an empty database of its own
    if _has_entities(context, root):
        return False  # a refresh: mostly unchanged documents, skipped before they are parsed
    return root_bytes(root, MIN_BYTES) >= MIN_BYTES


def root_bytes(root: RootLocation, enough: int) -> int:
    """About how many bytes a file root's first walk reads: its files, and (while below
    ``enough``) the files its Locations name one level down; 0 when it cannot be sized."""
    try:
        files = Reader.expand_file_target(root.target)
        size = sum(_regular_size(path) for path in files)
        if size < enough:
            size += sum(_named_bytes(path) for path in files)
    except Exception:
        return 0
    return size


def _regular_size(path: str) -> int:
    """The size of a regular file; anything else (missing, a FIFO, ``/dev/zero``) counts for
    nothing."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def _has_entities(context: AppContext, root: RootLocation) -> bool:
    """Whether ``root`` produced entities before (``ix_catalog_entities_origin``), other than
    the Location entity every pass writes for it (a first pass that found no file yet)."""
    with context.engine.connect() as connection:
        found = connection.execute(
            sa.select(entities.c.ref)
            .where(
                entities.c.origin_key == location_key(root.type, root.target),
                entities.c.ref != new_result(root).root_ref,
            )
            .limit(1)
        ).first()
    return found is not None


def _named_bytes(path: str, limit: int = 64 * 1024) -> int:
    """The size of the files that the Location entities of a small file name, one level down
    (the usual layout: a catalog-info.yaml listing the files). Only an estimate for choosing
    where to walk: files outside the root's folder, and whatever cannot be read or parsed, count
    for nothing; the walk itself decides what is read."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        return 0
    folder = os.path.dirname(path)
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read(limit + 1)  # a file that grew since
    if "location" not in text.lower():
        return 0  # a file of entities, not a list of files: parsing it would cost as much
    total = 0
    for document in parse_documents(text):
        data = document.data
        if not isinstance(data, dict) or str(data.get("kind", "")).lower() != "location":
            continue
        spec = data.get("spec")
        if not isinstance(spec, dict) or spec.get("type", "file") != "file":
            continue
        for target in location_targets(spec):
            if not isinstance(target, str) or not target:
                continue
            try:
                key = resolve_relative(location_key("file", path), target, confine_to=folder)
            except ReadError:
                continue
            for named in Reader.expand_file_target(split_key(key)[1]):
                total += _regular_size(named)
    return total


class ProcessWalker:
    """Walks a root in a child process; has :meth:`Walker.walk`'s signature, so the engine
    does not know the difference. ``fallback`` walks in this process when the child cannot
    start."""

    def __init__(self, config: Config, fallback: Walker) -> None:
        self.config = config
        self.fallback = fallback

    def walk(
        self, root: RootLocation, result: WalkResult, lookup: Lookup | None = None
    ) -> Iterator[list[Emitted]]:
        """Yield the child's batches; fill ``result`` when it ends."""
        with Parser.child():
            yield from self._walk(root, result, lookup)

    def _walk(
        self, root: RootLocation, result: WalkResult, lookup: Lookup | None
    ) -> Iterator[list[Emitted]]:
        mp = multiprocessing.get_context("spawn")
        receiver, sender = mp.Pipe(duplex=False)
        child = mp.Process(
            target=_walk_child, args=(sender, self.config, root), name="greenroom-walk"
        )
        try:
            child.start()
        except Exception:
            log.warning("the walk's process could not start; walking here", exc_info=True)
            receiver.close()
            sender.close()
            yield from self.fallback.walk(root, result, lookup)
            return
        sender.close()  # the child holds the only sending end: its exit ends the pipe
        started = finished = False
        try:
            while True:
                try:
                    what, payload = receiver.recv()
                except EOFError:
                    child.join()
                    message = f"the walk's process ended with exit code {child.exitcode}"
                    if started:
                        raise WalkProcessError(message) from None
                    log.warning("%s; walking %s in this process", message, root.target)
                    yield from self.fallback.walk(root, result, lookup)
                    return
                if what == "batch":
                    started = True
                    yield payload
                elif what == "done":
                    result.merge(payload)
                    finished = True
                    return
                else:
                    if started:
                        raise WalkProcessError(payload)
                    log.warning("the walk's process failed to start; walking here:\n%s", payload)
                    yield from self.fallback.walk(root, result, lookup)
                    return
        finally:
            receiver.close()
            if finished:
                child.join(timeout=10)  # closing its database connections
            if child.is_alive():
                child.terminate()
            child.join()


def _walk_child(sender: Connection, config: Config, root: RootLocation) -> None:
    """The child: build the walker as the service does, walk, send batches and the result."""
    try:
        from greenroom.memory import kept_for_good

        with kept_for_good():  # imports, plugins: no migration (``migrate=False``)
            from greenroom.catalog.ingest.engine import IngestionEngine, make_ready
            from greenroom.catalog.service import CatalogService
            from greenroom.context import create_context

            # The server said what it had to say about this configuration when it started.
            logging.getLogger("greenroom.context").setLevel(logging.ERROR)
            context = create_context(config, migrate=False)
    except BaseException:
        sender.send(("error", traceback.format_exc()))
        sender.close()
        return
    try:
        service = CatalogService(context)
        lookup = IngestionEngine(context.engine).unchanged_sources
        # Parsing stays in this process: it is the other core's work already.
        parser = Parser(workers=0)
        with service.reader() as reader:
            walker = Walker(
                reader, service.validator, service.rules, service.processors, parser=parser
            )
            result = new_result(root)
            for batch in walker.walk(root, result, lookup):
                sender.send(("batch", [_slim(emitted, make_ready) for emitted in batch]))
            for location in result.locations.values():
                if location.failed:  # not written: only its problems matter
                    location.entity = {}
            sender.send(("done", result))
    except BaseException:
        sender.send(("error", traceback.format_exc()))
    finally:
        sender.close()
        context.engine.dispose()


def _slim(emitted: Emitted, make_ready: Any) -> Emitted:
    """The entity as the writer needs it: prepared, without its objects. A failed one needs
    only its problems (and its objects may be too deep to pass: that is often why it failed)."""
    make_ready(emitted)
    emitted.entity = {}
    emitted.relations = []
    return emitted
