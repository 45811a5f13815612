"""Every hook of Greenroom, declared once. Built-in capabilities implement them as plugins do.

A plugin is a module (or object) with functions named like these hooks and marked with
``@greenroom.plugins.hookimpl``, registered through the ``greenroom.plugins`` entry-point group.
A hook that raises stops start-up with the plugin's name in the error: a broken plugin is
found at once, not on the first request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from fastapi import APIRouter
    from pydantic import BaseModel
    from typer import Typer

    from greenroom.catalog.model.kinds import KindSpec
    from greenroom.context import AppContext
    from greenroom.contracts import BackgroundTask, EntityProvider, Processor

hookspec = pluggy.HookspecMarker("greenroom")


@hookspec
def greenroom_entity_kinds() -> list[KindSpec]:
    """Kinds the catalog accepts, with their apiVersions and ``spec`` JSON Schema.

    Called once at start; the lists of every plugin are joined. A kind named twice is an error.
    """


@hookspec
def greenroom_catalog_processors(context: AppContext) -> list[Processor]:
    """Processors that every entity passes through during ingestion, ordered by ``priority``.

    A processor returns the entity (changed or not) and may emit relations; raising
    :class:`greenroom.contracts.ProcessingError` keeps the error on the entity and serves its last
    good version instead.
    """


@hookspec
def greenroom_entity_providers(context: AppContext) -> list[EntityProvider]:
    """Providers of root locations, read on every refresh (config locations, registered ones)."""


@hookspec
def greenroom_routers(context: AppContext) -> list[APIRouter]:
    """FastAPI routers to mount on the app; their routes appear in the OpenAPI document."""


@hookspec
def greenroom_background_tasks(context: AppContext) -> list[BackgroundTask]:
    """Coroutines to run while the server runs (for example the refresh loop).

    Each is started after start-up and cancelled at shut-down; periodic work must be idempotent,
    since several replicas may run it.
    """


@hookspec
def greenroom_serve_starting(context: AppContext) -> None:
    """Called by ``greenroom serve`` once the database is migrated and the port checked,
    before the web stack is imported and before any worker starts: the moment to fork work that
    should begin at once, beside the server's own start (the catalog's first load of a new,
    small catalog).

    An implementation that forks must close the context's pooled connections first
    (``context.engine.dispose()``) and give the child services of its own;
    :func:`greenroom.forks.run_forked` does the rest, and :func:`greenroom.forks.ended` lets
    the server (and each worker) await the child's end, for work that must follow it. It must
    start no thread in this process.
    """


@hookspec
def greenroom_cli(cli: Typer) -> None:
    """Add commands or command groups to the ``greenroom`` command line."""


@hookspec
def greenroom_config_schema() -> dict[str, type[BaseModel]]:
    """Top-level configuration sections this plugin reads, as ``{key: pydantic model}``.

    Each section is validated at start-up (an absent section as ``{}``); a problem stops
    start-up with a :class:`greenroom.config.ConfigError` naming the key.
    """
