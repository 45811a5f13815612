"""Errors in Backstage's shape: ``{error: {name, message}, request, response: {statusCode}}``."""

from __future__ import annotations

import logging

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
    app.add_exception_handler(Exception, unexpected)
