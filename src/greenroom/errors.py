"""Errors in Backstage's shape: ``{error: {name, message}, request, response: {statusCode}}``."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from greenroom.exceptions import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)
_STATUS = {
    NotFound: (404, "NotFoundError"),
    Conflict: (409, "ConflictError"),
    InvalidInput: (400, "InputError"),
}
_NAMES = {
    400: "InputError",
    401: "AuthenticationError",
    403: "NotAllowedError",
    404: "NotFoundError",
    405: "NotAllowedError",
    409: "ConflictError",
}


def error_response(request: Request, status: int, name: str, message: str) -> JSONResponse:
    """A JSON error response as Backstage's error handler writes it."""
    return JSONResponse(
        status_code=status,
        content={
            "error": {"name": name, "message": message},
            "request": {"method": request.method, "url": str(request.url.path)},
            "response": {"statusCode": status},
        },
    )


NUL_MESSAGE = "text cannot contain NUL characters"


class RejectNul:
    """A request whose path or query holds a NUL character is a bad request.

    No stored text holds NUL (ingestion refuses an entity with one: ``engine.make_ready``), so
    such a request can match nothing; and PostgreSQL refuses NUL in any text parameter, which made
    every such request a 500 there. Refused here, once, for every route of every plugin. NUL in
    a JSON body is caught where the database refuses it (:func:`_is_nul_refusal`).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            where = _nul_in(scope)
            if where is not None:
                request = Request(scope)
                response = error_response(request, 400, "InputError", f"{where}: {NUL_MESSAGE}")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _nul_in(scope: Any) -> str | None:
    if "\x00" in scope.get("path", ""):
        return "path"
    query: bytes = scope.get("query_string", b"")
    if b"\x00" in query or b"%00" in query:
        return "query"
    return None


def _is_nul_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the database driver refusing a NUL character."""
    seen: BaseException | None = exc
    while seen is not None:
        if "cannot contain NUL" in str(seen):  # psycopg's DataError, before it is sent
            return True
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return False


def install(app: FastAPI) -> None:
    """Register the handlers that give every error Backstage's shape."""

    async def known(request: Request, exc: Exception) -> JSONResponse:
        status, name = _STATUS[type(exc)]
        return error_response(request, status, name, str(exc))

    for exc_type in _STATUS:
        app.add_exception_handler(exc_type, known)

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        name = _NAMES.get(exc.status_code, "Error")
        return error_response(request, exc.status_code, name, str(exc.detail))

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg')}")
        return error_response(request, 400, "InputError", "; ".join(parts) or "Invalid request")

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The details go to the log, not to the client.
        log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(request, 500, "Error", "An internal error occurred")

    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(RequestValidationError, invalid)

    async def data_error(request: Request, exc: Exception) -> JSONResponse:
        if _is_nul_refusal(exc):  # a NUL in a JSON body, refused by PostgreSQL's driver
            return error_response(request, 400, "InputError", f"body: {NUL_MESSAGE}")
        return await unexpected(request, exc)

    app.add_exception_handler(Exception, unexpected)
    app.add_exception_handler(sa.exc.DataError, data_error)
    app.add_middleware(RejectNul)
