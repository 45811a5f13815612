"""The catalog registers itself through the same hooks a third-party plugin uses."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import timedelta
from typing import TYPE_CHECKING

from greenroom.catalog.ingest.parsing import Parser
from greenroom.catalog.model.kinds import BUILTIN_KINDS, KindSpec
from greenroom.catalog.processors import (
    AnnotationProcessor,
    PlaceholderProcessor,
    RelationsProcessor,
    ValidationProcessor,
)
from greenroom.catalog.providers import ConfigLocationProvider, RegisteredLocationProvider
from greenroom.catalog.service import CatalogService, catalog_validator, first_load_apart
from greenroom.context import AppContext
from greenroom.contracts import BackgroundTask, EntityProvider, Processor
from greenroom.forks import Forked, ended, run_forked
from greenroom.plugins import hookimpl

if TYPE_CHECKING:  # a walk's process loads this plugin for its processors, not for the web
    from fastapi import APIRouter
    from typer import Typer

log = logging.getLogger(__name__)


def service(context: AppContext) -> CatalogService:
    """The app's catalog service, created on first use."""
    svc: CatalogService | None = context.services.get("catalog")
    if svc is None:
        svc = CatalogService(context)
        context.services["catalog"] = svc
    return svc


@hookimpl
def greenroom_entity_kinds() -> list[KindSpec]:
    """Backstage's built-in kinds and Template."""
    return list(BUILTIN_KINDS)


@hookimpl
def greenroom_catalog_processors(context: AppContext) -> list[Processor]:
    """Placeholders, validation, annotations and relations."""
    return [
        PlaceholderProcessor(),
        ValidationProcessor(catalog_validator(context)),
        AnnotationProcessor(),
        RelationsProcessor(),
    ]


@hookimpl
def greenroom_entity_providers(context: AppContext) -> list[EntityProvider]:
    """Config locations first, then registered ones, so that config claims win conflicts."""
    return [ConfigLocationProvider(context.config), RegisteredLocationProvider(context.engine)]


@hookimpl
def greenroom_routers(context: AppContext) -> list[APIRouter]:
    """The Backstage-compatible catalog REST API under ``/api/catalog``."""
    from greenroom.catalog.api import router

    return [router(context)]


@hookimpl
def greenroom_background_tasks(context: AppContext) -> list[BackgroundTask]:
    """The refresh loop, every ``catalog.processingInterval`` (off when it is ``false``)."""
    interval = context.config.catalog.processing_interval
    if interval is None:
        return []
    # How often to look for due roots: often enough to pick up a root whose replica died soon
    # after its lease expires, rarely enough to cost nothing.
    poll = min(interval.total_seconds(), context.config.catalog.lease_duration.total_seconds() / 3)

    async def refresh_loop() -> None:
        if _first_load is not None:
            await _after_first_load(_first_load, context.config.catalog.lease_duration)
        while True:
            try:
                summary = await asyncio.to_thread(service(context).run_due)
                if summary.changed or summary.indexes_built:
                    log.info("catalog pass: %s", summary.describe())
            except Exception:  # the loop must outlive a bad pass; the error is logged
                log.exception("catalog refresh pass failed")
            await asyncio.sleep(max(poll, 0.05))

    return [refresh_loop]


async def _after_first_load(first_load: Forked, lease: timedelta) -> None:
    """Wait for the first load's process to end: its roots are leased to it, and the first
    pass after it builds the indexes it left (``IngestionEngine.bulk_load``); a pass meanwhile
    would only wait for the write lock that the load holds. At most a lease's duration: a
    child that hangs stops renewing its leases, and a process it forked and left running
    holds the pipe that tells its end; the loop then goes on as for any replica's work."""
    try:
        await asyncio.wait_for(ended(first_load), lease.total_seconds())
    except TimeoutError:
        log.warning(
            "catalog: the first load's process %d has not ended after %s s; refreshing anyway",
            first_load.pid,
            lease.total_seconds(),
        )


#: The process loading a new catalog, forked at start-up (``greenroom_serve_starting``). Kept
#: here, not in the context: ``--workers`` builds a context per worker, and each worker (forked
#: after it) waits for it before its first pass.
_first_load: Forked | None = None


@hookimpl
def greenroom_serve_starting(context: AppContext) -> None:
    """A new, small catalog is loaded at once in a forked process (see
    :func:`~greenroom.catalog.service.first_load_apart`), while the server starts beside it.

    The child claims the roots' leases as any replica does, so the server's refresh loop finds
    them taken and then not due. It parses in itself (a pool of parsers would be one more
    interpreter to start). It writes into an empty catalog without its deferred indexes, as any
    first load does, but leaves building them to the server, whose refresh loop waits for the
    child to end and then runs a pass, which builds what is missing: the child ends as soon as
    its last entity is served instead of living on beside the server (with its own resident
    pages) for the build and the planner's statistics. Kept up row by row instead, the indexes
    doubled what PostgreSQL did for a start-up on 1,000 entities (0.37-0.40 against 0.19-0.21
    s of its CPU from the command until all were served, polled every 10 ms). If the child
    dies, its leases run out (``catalog.leaseDuration``), the refresh loop loads the catalog,
    and builds the indexes after.
    """
    global _first_load
    _first_load = None
    if not first_load_apart(context):
        return
    context.engine.dispose()  # no pooled connection may cross the fork

    def first_load() -> None:
        catalog = CatalogService(context)  # its own leases' owner: this process
        catalog.parser = Parser(workers=0)
        catalog.release_after = None  # this process ends with its pass
        summary = catalog.run_due(build_indexes=False)
        log.info("catalog pass (the first load, process %d): %s", os.getpid(), summary.describe())

    _first_load = run_forked("catalog first load", first_load)
    if _first_load is not None:
        log.info("catalog: loading the new catalog in process %d", _first_load.pid)


@hookimpl
def greenroom_cli(cli: Typer) -> None:
    """``greenroom catalog validate|ingest``."""
    from greenroom.catalog.cli import catalog_cli

    cli.add_typer(catalog_cli, name="catalog", help="Validate and ingest catalog files.")
