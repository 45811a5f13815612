"""The ASGI app: wires configuration, database and plugins together, and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from greenroom import __version__, errors
from greenroom.context import AppContext
from greenroom.plugins import flatten

log = logging.getLogger(__name__)


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
    async def healthcheck() -> dict[str, str]:  # async: no worker thread for a constant
        return {"status": "ok"}

    @app.get("/", tags=["system"], summary="What this server offers")
    async def index() -> dict[str, str]:
        # The portal's pages come with the UI capability; until then, point people at the API.
        return {
            "name": "Greenroom",
            "version": __version__,
            "catalog": "/api/catalog/entities",
            "openapi": "/openapi.json",
        }

    return app
