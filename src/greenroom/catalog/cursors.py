"""Pagination cursors of ``/entities`` (``after``) and ``/entities/by-query`` (``cursor``).

A cursor is base64 of JSON, as in Backstage, so that clients treat it as opaque. It comes back
from the client, so it is validated like any input: a tampered cursor is a 400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from greenroom.exceptions import InvalidInput

MAX_ROWS = 2**31 - 1  # bounds of limit and offset: a larger one is a mistake, not a page
MAX_TEXT = 1024  # a sort value or ref in a position (search values are at most 200 characters)


class AfterCursor(BaseModel):
    """``after`` of ``GET /entities``: where the next page starts."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(ge=1, le=MAX_ROWS)
    offset: int = Field(ge=0, le=MAX_ROWS)


class QueryCursor(BaseModel):
    """``cursor`` of ``/entities/by-query`` (either method): the whole query and where the page
    starts.

    ``position`` is the sort position of the entity the page follows (``[value, ref]`` with an
    order, ``value`` null for an entity without one; ``[ref]`` without), or, with
    ``backwards``, of the entity the page precedes (see ``pages.py``). ``offset`` is the
    ``offset`` of a first request (and of cursors written before positions were).
    """

    model_config = ConfigDict(extra="forbid")

    filter: list[str] = Field(default_factory=list)
    # The predicate of ``POST /entities/by-query``, parsed again from the cursor each time.
    query: dict[str, Any] | None = None
    order: list[tuple[str, bool]] = Field(default_factory=list, max_length=1)
    term: str | None = None
    termFields: list[str] = Field(default_factory=list)
    offset: int = Field(0, ge=0, le=MAX_ROWS)
    # No stored text holds NUL, and PostgreSQL refuses it in a parameter (a 500, not a 400).
    position: (
        list[Annotated[str, Field(max_length=MAX_TEXT, pattern="^[^\x00]*$")] | None] | None
    ) = Field(None, min_length=1, max_length=2)
    backwards: bool = False
    totalItems: Literal["include", "exclude"] = "include"
    total: int | None = Field(None, ge=0)


class LocationCursor(BaseModel):
    """``cursor`` of ``POST /locations/by-query``: its predicate, its page size, and the id
    of the last location of the page (locations come in id order)."""

    model_config = ConfigDict(extra="forbid")

    limit: StrictInt = Field(ge=1, le=MAX_ROWS)
    afterId: str | None = Field(None, max_length=MAX_TEXT)
    query: dict[str, Any] | None = None


def encode(cursor: BaseModel) -> str:
    """The opaque text of a cursor."""
    raw = json.dumps(cursor.model_dump(exclude_none=True), separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


T = TypeVar("T", bound=BaseModel)


def decode(text: str, model: type[T], message: str) -> T:
    """A cursor from its text; anything malformed is a 400 with ``message``."""
    if not text:
        raise InvalidInput("Cursor cannot be empty")
    try:
        data: Any = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return model.model_validate(data)
    except (binascii.Error, ValueError, ValidationError, RecursionError) as exc:
        raise InvalidInput(f"{message}: {_short(exc)}") from exc


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'cursor'}: {e['msg']}" for e in exc.errors()
        )
    return str(exc)
