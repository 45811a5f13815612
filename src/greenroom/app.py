"""The ASGI app: wires configuration, database and plugins together, and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pluggy
from fastapi import FastAPI
from pydantic import ValidationError

from greenroom import __version__, db, errors
from greenroom.config import CONFIG_FILES_ENV, Config, ConfigError, load_config, unknown_keys
from greenroom.context import AppContext
from greenroom.plugins import flatten, plugin_manager

log = logging.getLogger(__name__)


def create_context(
    config: Config, *, plugins: Iterable[Any] = (), entry_points: bool = True, migrate: bool = True
) -> AppContext:
    """Config, database (migrated) and plugins: what the app and the CLI share."""
    plugins_ = plugin_manager(plugins, entry_points=entry_points)
    check_plugin_config(config, plugins_)
    for key in unknown_keys(config):
        log.warning("configuration key %s is not used by Greenroom", key)
    engine = db.create_engine(config.database_url)
    if migrate:
        db.upgrade(engine)
    return AppContext(config=config, engine=engine, plugins=plugins_)


def check_plugin_config(config: Config, plugins: pluggy.PluginManager) -> None:
    """Validate the top-level sections that plugins declare (``greenroom_config_schema``), so
    that a mistake in a plugin's settings stops start-up with the key named."""
    sections = config.model_extra or {}
    for schema in plugins.hook.greenroom_config_schema():
        for key, model in (schema or {}).items():
            try:
                model.model_validate(sections.get(key) or {})
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join([key, *map(str, e['loc'])])}: {e['msg']}" for e in exc.errors()
                )
                raise ConfigError(f"invalid configuration: {problems}") from exc


def create_app(context: AppContext, *, background: bool = True) -> FastAPI:
    """The app for ``context``; ``background=False`` leaves the refresh loop off (tests)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = []
        if background:
            for task in flatten(context.plugins.hook.greenroom_background_tasks(context=context)):
                tasks.append(asyncio.create_task(task()))
        try:
            yield
        finally:
            for running in tasks:
                running.cancel()
            for running in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await running

    app = FastAPI(title="Greenroom", version=__version__, lifespan=lifespan)
    app.state.context = context
    errors.install(app)
    for router in flatten(context.plugins.hook.greenroom_routers(context=context)):
        app.include_router(router)

    @app.get("/healthcheck", tags=["system"], summary="Liveness")
    def healthcheck() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", tags=["system"], summary="What this server offers")
    def index() -> dict[str, str]:
        # The portal's pages come with the UI capability; until then, point people at the API.
        return {
            "name": "Greenroom",
            "version": __version__,
            "catalog": "/api/catalog/entities",
            "openapi": "/openapi.json",
        }

    return app


def app_from_environment() -> FastAPI:
    """The app of one worker of ``greenroom serve --workers N``: the parent process names the
    config files in ``GREENROOM_CONFIG_FILES`` and has already migrated the database."""
    files = json.loads(os.environ.get(CONFIG_FILES_ENV, "[]"))
    return create_app(create_context(load_config(files), migrate=False))
