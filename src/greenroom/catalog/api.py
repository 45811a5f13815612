"""Backstage's catalog REST API under ``/api/catalog``: same paths, parameters and shapes.

Routes stay short: parsing lives in :mod:`greenroom.catalog.queries`, logic in
:mod:`greenroom.catalog.service`. Errors are raised as the service's exceptions and rendered in
Backstage's error shape by the app (see :mod:`greenroom.errors`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlencode

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from greenroom.catalog import cursors, narrowing, pages, predicates, queries
from greenroom.catalog.answers import GenerationCache
from greenroom.catalog.model.refs import RefError, format_ref, parse_ref
from greenroom.catalog.tables import entities
from greenroom.catalog.text_memory import TextMatcher
from greenroom.context import AppContext
from greenroom.db import read_generation, reader
from greenroom.exceptions import InvalidInput, NotFound

ListParam = Annotated[list[str], Query()]
T = TypeVar("T")

# Lookups of at most this many refs, without a filter, run on the event loop (see ``inline``).
INLINE_REFS = 100


async def inline(small: bool, call: Callable[..., T], *args: Any) -> T:
    """Run ``call`` on the event loop when ``small``, else in a worker thread.

    FastAPI runs a plain ``def`` route in a worker thread; for a lookup that costs one index
    read (by name, by uid, a few refs) the hop costs more than the work: the loop's thread and
    the worker take turns for the interpreter lock (a waiting thread gets it after up to the
    5 ms switch interval), so at eight concurrent clients by-name spent most of its time
    waiting (one process, 50,000 entities: 600 requests/s at a p50 of 12 ms; inline, 870-1,000
    at 7-8 ms). A lookup that can be slow (a filter, many refs) still gets a thread, so that it
    does not hold up the requests behind it.
    """
    if small:
        return call(*args)
    return await run_in_threadpool(call, *args)


def idle_connection(pool: sa.pool.Pool) -> bool:
    """Whether a pooled connection is waiting to be used, so that a lookup on the event loop
    neither waits for one nor opens one there. A loop that waited would stop the process: the
    streamed listings holding the connections need the loop to finish and give them back
    (with a busy pool, by-name timed out after the pool's timeout and took health checks with
    it). A race with a worker thread for the last idle connection costs at most that wait."""
    if isinstance(pool, sa.pool.StaticPool):  # one shared connection (in-memory SQLite)
        return True
    return isinstance(pool, sa.pool.QueuePool) and pool.checkedin() > 0


class RawJSON(Response):
    """A response whose body is JSON encoded already (stored entities are sent as stored)."""

    media_type = "application/json"


class LocationInput(BaseModel):
    """``POST /locations`` body; unknown keys are refused, as in Backstage."""

    model_config = ConfigDict(extra="forbid")

    type: str = "url"
    target: str
    presence: str | None = None


class LocationQueryInput(BaseModel):
    """``POST /locations/by-query`` body (see :func:`greenroom.catalog.predicates
    .location_test`); with a ``cursor``, the rest is not read, as in Backstage."""

    cursor: str | None = None
    limit: Any = None
    query: Any = None


class RefreshInput(BaseModel):
    """``POST /refresh`` body."""

    entityRef: str
    authorizationToken: str | None = None


class ByRefsInput(BaseModel):
    """``POST /entities/by-refs`` body."""

    entityRefs: list[str]
    fields: list[str] | None = None


class OrderByInput(BaseModel):
    """An item of ``orderBy`` in ``POST /entities/by-query``."""

    field: str
    order: str


class FullTextInput(BaseModel):
    """``fullTextFilter`` of ``POST /entities/by-query``."""

    term: str | None = None
    fields: list[str] | None = None


class QueryInput(BaseModel):
    """``POST /entities/by-query`` body: ``GET``'s parameters, with a predicate ``query`` in
    place of ``filter`` (see :mod:`greenroom.catalog.predicates`). With a ``cursor`` only
    ``fields`` and ``limit`` are read, as in Backstage."""

    cursor: str | None = None
    limit: int | None = Field(None, ge=0, le=cursors.MAX_ROWS)
    offset: int | None = Field(None, ge=0, le=cursors.MAX_ROWS)
    orderBy: list[OrderByInput] | None = None
    fullTextFilter: FullTextInput | None = None
    fields: list[str] | None = None
    totalItems: str = "include"
    query: Any = None


class FacetsInput(BaseModel):
    """``POST /entity-facets`` body."""

    facets: list[str] = Field(default_factory=list)
    query: Any = None


class AnalyzeInput(BaseModel):
    """``POST /analyze-location`` body."""

    location: LocationInput
    catalogFilename: str | None = None


class ValidateInput(BaseModel):
    """``POST /validate-entity`` body."""

    entity: Any = None
    location: str = Field(default="")


def _initial_query(
    filters: list[str],
    order_fields: list[str],
    term: str | None,
    term_fields: list[str],
    offset: int | None,
    total_items: str,
    query: dict[str, Any] | None = None,
) -> cursors.QueryCursor:
    """The state of a by-query request without a cursor, with Backstage's defaults."""
    if total_items not in ("include", "exclude"):
        raise InvalidInput(
            f'Invalid totalItems parameter "{total_items}", expected one of: include, exclude'
        )
    order: list[tuple[str, bool]] = []
    for item in [field for field in order_fields if field][:1]:  # Backstage: the first only
        key, _, direction = item.partition(",")
        if (direction or "asc") not in ("asc", "desc"):
            raise InvalidInput("Invalid order field order, must be asc or desc")
        order.append((key, direction == "desc"))
    fields = narrowing.parse_fields(term_fields)
    if term and not fields:
        fields = [order[0][0] if order else "metadata.uid"]
    return cursors.QueryCursor(
        filter=filters,
        query=query,
        order=order,
        term=term,
        termFields=fields,
        offset=offset or 0,
        totalItems="include" if total_items == "include" else "exclude",
    )


def _check_query(body: QueryInput | FacetsInput) -> None:
    """A 400 for a ``query`` that is not a well-formed predicate; ``null`` is not one (absent
    is: every entity), as Backstage's schema says."""
    if "query" not in body.model_fields_set:
        return
    if not isinstance(body.query, dict):
        raise InvalidInput("Query must be an object")
    predicates.parse(body.query)


def _where(state: cursors.QueryCursor) -> predicates.Node | None:
    """The conditions of a query: its ``filter`` parameters and its predicate, both holding
    (Backstage applies both when a cursor carries both)."""
    parts = [
        node
        for node in (
            queries.parse_filters(state.filter),
            None if state.query is None else predicates.parse(state.query),
        )
        if node is not None
    ]
    return parts[0] if len(parts) == 1 else predicates.All(tuple(parts)) if parts else None


def _position(state: cursors.QueryCursor) -> pages.Position | None:
    """The position a cursor reads from, checked against its order (it came from a client)."""
    if state.position is None:
        return None
    *value, ref = state.position
    if ref is None or len(value) != len(state.order[:1]):
        raise InvalidInput("Malformed cursor: position does not fit its order")
    return pages.Position(value[0] if value else None, ref)


def _cursor_position(row: pages.Row, order: pages.Order | None) -> list[str | None]:
    """The position of ``row`` as a cursor holds it."""
    return [row.value, row.ref] if order else [row.ref]


def _order(params: list[str]) -> list[tuple[str, bool]]:
    """``order=asc:metadata.name`` parameters into ``(field, descending)`` pairs."""
    out = []
    for item in params:
        direction, sep, key = item.partition(":")
        if not sep or direction not in ("asc", "desc") or not key:
            raise InvalidInput(
                f'Invalid order parameter "{item}", expected "<asc or desc>:<field name>"'
            )
        out.append((key, direction == "desc"))
    return out


def _order_by(order: list[tuple[str, bool]]) -> list[Any]:
    clauses: list[Any] = []
    for key, desc in order:
        value = queries.order_value(key)
        clauses.append(value.desc().nulls_last() if desc else value.asc().nulls_last())
    clauses.append(entities.c.ref.asc())
    return clauses


def router(context: AppContext) -> APIRouter:
    """The catalog routes bound to one app's database and service."""
    from greenroom.catalog.plugin import service

    # Built now rather than on the first request, so that a plugin whose kinds, processors or
    # providers are broken stops start-up instead of failing requests later.
    service(context)
    api = APIRouter(prefix="/api/catalog", tags=["catalog"])
    engine = context.engine
    reads = reader(engine)  # single statements; whole listings keep `engine`
    facet_cache = GenerationCache()
    text_matcher = TextMatcher(enabled=context.config.catalog.full_text_in_memory)

    @contextmanager
    def query_connection(
        term: str | None, fields: list[str], ordered: bool
    ) -> Iterator[tuple[sa.Connection, sa.Subquery | None]]:
        """A connection for a by-query, and the entities matching its full-text term (``None``
        without one): from this process's copy of the searched keys where it can answer
        (``text_memory.py``), on an autocommit connection like other single reads; else the
        database's, in a transaction, which its planner setting needs (``SET LOCAL``), as
        PostgreSQL's ordered pages do."""
        if not term or not term.strip():
            if ordered and engine.dialect.name == "postgresql":
                with engine.connect() as conn:
                    queries.plan_for_ordered_pages(conn)
                    yield conn, None
                return
            with reads.connect() as conn:
                yield conn, None
            return
        with reads.connect() as conn:
            refs = text_matcher.refs(conn, term, fields)
            if refs is not None:
                yield conn, queries.listed_refs(refs, conn.dialect.name)
                return
        with engine.connect() as conn:
            queries.plan_for_text_indexes(conn)
            yield conn, queries.full_text_refs(term, fields)

    def served(column: str, value: str, missing: str) -> Response:
        """The served entity whose ``column`` is ``value``, as stored, or 404 with ``missing``."""
        with reads.connect() as conn:
            raw = queries.served_final(conn, column, value)
        if raw is None:
            raise NotFound(missing)
        return RawJSON(raw.encode())

    @api.get("/entities", summary="List entities")
    def list_entities(
        request: Request,
        filter: ListParam = [],
        fields: ListParam = [],
        order: ListParam = [],
        limit: int | None = Query(None, ge=0, le=cursors.MAX_ROWS),
        offset: int | None = Query(None, ge=0, le=cursors.MAX_ROWS),
        after: str | None = None,
    ) -> Response:
        where = queries.filter_clause(queries.parse_filters(filter))
        field_list = narrowing.parse_fields(fields)
        if after is not None:
            page = cursors.decode(
                after, cursors.AfterCursor, "Malformed after cursor, could not be parsed"
            )
            limit, offset = page.limit, page.offset
        if limit is not None and limit <= 0:
            raise InvalidInput("Invalid limit, must be greater than zero")
        start = offset or 0
        query = sa.select(entities.c.final).where(where).order_by(*_order_by(_order(order)))
        if limit is None:
            # The whole catalog (or a kind of it) can be a hundred megabytes: sent as it is
            # read, a few hundred entities at a time, rather than built in memory first.
            if start:
                query = query.offset(start)
            return StreamingResponse(
                queries.stream_final(engine, query, field_list), media_type="application/json"
            )
        query = query.limit(limit + 1)
        if start:
            query = query.offset(start)
        with reads.connect() as conn:
            rows = conn.execute(query).all()
        if limit is not None and len(rows) > limit:
            rows = rows[:limit]
            params = [
                (k, v)
                for k, v in request.query_params.multi_items()
                if k not in ("offset", "after")
            ]
            next_page = cursors.AfterCursor(limit=limit, offset=start + limit)
            params.append(("after", cursors.encode(next_page)))
            headers = {"link": f'</entities?{urlencode(params)}>; rel="next"'}
        else:
            headers = {}
        return RawJSON(queries.load_final(rows, field_list), headers=headers)

    @api.get("/entities/by-query", summary="Query entities with cursor pagination")
    def query_entities(
        filter: ListParam = [],
        fields: ListParam = [],
        limit: int | None = Query(None, ge=0, le=cursors.MAX_ROWS),
        offset: int | None = Query(None, ge=0, le=cursors.MAX_ROWS),
        orderField: ListParam = [],
        cursor: str | None = None,
        fullTextFilterTerm: str | None = None,
        fullTextFilterFields: ListParam = [],
        totalItems: str = "include",
    ) -> Response:
        if cursor is not None:
            state = cursors.decode(cursor, cursors.QueryCursor, "Malformed cursor")
        else:
            state = _initial_query(
                filter, orderField, fullTextFilterTerm, fullTextFilterFields, offset, totalItems
            )
        return answer_query(state, limit, narrowing.parse_fields(fields))

    @api.post("/entities/by-query", summary="Query entities with a filter predicate")
    def query_entities_by_predicate(body: QueryInput | None = None) -> Response:
        body = body or QueryInput()
        if "cursor" in body.model_fields_set:  # null too: "Cursor cannot be empty"
            state = cursors.decode(body.cursor or "", cursors.QueryCursor, "Malformed cursor")
        else:
            _check_query(body)  # a malformed predicate is a 400 before any read
            if any(item.order not in ("asc", "desc") for item in body.orderBy or []):
                raise InvalidInput("Invalid order field order, must be asc or desc")
            order = [(item.field, item.order) for item in (body.orderBy or [])[:1]]
            text = body.fullTextFilter
            term = None if text is None else (text.term or "")
            state = _initial_query(
                [],
                [],
                term,
                [] if text is None else (text.fields or []),
                body.offset,
                body.totalItems,
                body.query,
            )
            state.order = [(field, direction == "desc") for field, direction in order]
            if term and not (text and text.fields) and order:
                state.termFields = [order[0][0]]  # Backstage: the sort field's, else the uid's
        return answer_query(state, body.limit, narrowing.parse_fields(body.fields or []))

    def answer_query(state: cursors.QueryCursor, limit: int | None, fields: list[str]) -> Response:
        """A page of a by-query (``GET`` or ``POST``) from its state: the first request's or a
        cursor's."""
        page = 200 if limit is None else limit
        condition = _where(state)
        order = state.order[0] if state.order else None
        position = _position(state)
        count = state.total is None and state.totalItems == "include"
        with query_connection(state.term, state.termFields, order is not None) as (
            conn,
            matches,
        ):
            # With a term, the total comes in the same pass as the page (a window over the
            # matches); without one, a window would make the database read every match even
            # when an index gives the page in order: the total is a query of its own.
            rows, counted = pages.read(
                conn,
                condition,
                order,
                matches,
                position=position,
                backwards=state.backwards,
                offset=state.offset,
                limit=page + 1,
                total=count,
            )
            where = queries.filter_clause(condition)
            if matches is not None:
                where = sa.and_(where, entities.c.ref.in_(sa.select(matches.c.ref)))
            if state.total is None:
                state.total = 0
                if count and counted is not None:
                    state.total = counted
                elif count and (matches is None or state.offset > 0):
                    # Without a term, or past the end (the window saw no row).
                    state.total = conn.execute(queries.count_matching(where)).scalar_one()
        total = state.total
        page_info: dict[str, str] = {}
        # One row more than the page was read: there is more in the direction of reading.
        more = len(rows) > page
        if more:
            rows = rows[1:] if state.backwards else rows[:page]
        following = state.model_copy(update={"offset": 0, "backwards": False})
        if rows and page > 0 and (more or state.backwards):  # a page of 0 would lead to itself
            page_info["nextCursor"] = cursors.encode(
                following.model_copy(update={"position": _cursor_position(rows[-1], order)})
            )
        started_inside = position is not None or state.offset > 0
        if rows and (more if state.backwards else started_inside):
            page_info["prevCursor"] = cursors.encode(
                following.model_copy(
                    update={"position": _cursor_position(rows[0], order), "backwards": True}
                )
            )
        items = queries.load_final(rows, fields)
        return RawJSON(
            b'{"items":'
            + items
            + b',"totalItems":'
            + str(int(total)).encode()
            + b',"pageInfo":'
            + orjson.dumps(page_info)
            + b"}"
        )

    @api.post("/entities/by-refs", summary="Get entities by their references")
    async def entities_by_refs(
        body: ByRefsInput,
        filter: ListParam = [],
    ) -> Response:
        small = len(body.entityRefs) <= INLINE_REFS and not filter
        return await inline(small and idle_connection(engine.pool), by_refs, body, filter)

    def by_refs(body: ByRefsInput, filter: list[str]) -> Response:
        wanted: list[str] = []
        for ref in body.entityRefs:
            try:
                wanted.append(str(parse_ref(ref)))
            except RefError:
                wanted.append("")  # not a reference: no entity, so null, as in Backstage
        with reads.connect() as conn:
            if filter:
                where = queries.filter_clause(queries.parse_filters(filter))
                found = queries.by_refs(conn, wanted, where)
            else:
                found = queries.served_by_refs(conn, wanted)
        fields = narrowing.parse_fields(body.fields or [])
        items = queries.json_array(
            narrowing.entity_json(found[ref], fields) if ref in found else b"null" for ref in wanted
        )
        return RawJSON(b'{"items":' + items + b"}")

    @api.get("/entities/by-name/{kind}/{namespace}/{name}", summary="Get an entity by name")
    async def entity_by_name(kind: str, namespace: str, name: str) -> Response:
        return await inline(
            idle_connection(engine.pool),
            served,
            "ref",
            format_ref(kind, namespace, name),
            f"No entity named '{name}' found, with kind '{kind}' in namespace '{namespace}'",
        )

    @api.get("/entities/by-name/{kind}/{namespace}/{name}/ancestry", summary="Entity ancestry")
    def ancestry(kind: str, namespace: str, name: str) -> dict[str, Any]:
        root = format_ref(kind, namespace, name)
        items = []
        seen: set[str] = set()
        stack = [root]
        with reads.connect() as conn:
            while stack:
                ref = stack.pop()
                if ref in seen:
                    continue
                seen.add(ref)
                row = conn.execute(
                    sa.select(entities.c.final, entities.c.parent_ref).where(
                        entities.c.ref == ref, entities.c.final.is_not(None)
                    )
                ).first()
                if row is None:
                    if ref == root:
                        raise NotFound(f"No such entity {root}")
                    continue
                parents = [row.parent_ref] if row.parent_ref else []
                items.append({"entity": json.loads(row.final), "parentEntityRefs": parents})
                stack.extend(reversed(parents))
        return {"rootEntityRef": root, "items": items}

    @api.get("/entities/by-uid/{uid}", summary="Get an entity by uid")
    async def entity_by_uid(uid: str) -> Response:
        return await inline(
            idle_connection(engine.pool), served, "uid", uid, f"No entity with uid {uid}"
        )

    @api.delete("/entities/by-uid/{uid}", status_code=204, summary="Delete an entity by uid")
    def delete_by_uid(uid: str) -> Response:
        service(context).delete_entity(uid)
        return Response(status_code=204)

    @api.get("/entity-facets", summary="Counts of the values of entity fields")
    async def entity_facets(
        facet: ListParam = [],
        filter: ListParam = [],
    ) -> Response:
        if not facet:
            raise InvalidInput("Missing facet parameter")
        return await facets_answer(facet, ("filter", tuple(facet), tuple(filter)), filter, None)

    @api.post("/entity-facets", summary="Counts of the values of entity fields, by predicate")
    async def entity_facets_by_predicate(body: FacetsInput) -> Response:
        facets = [name for name in body.facets if name]
        if not facets:
            raise InvalidInput("Missing or empty facets parameter")
        _check_query(body)  # a malformed predicate is a 400, even when an answer is cached
        query = json.dumps(body.query, sort_keys=True)  # any integer, unlike orjson
        return await facets_answer(facets, ("query", tuple(facets), query), [], body.query)

    async def facets_answer(
        facet: list[str], key: Hashable, filter: list[str], query: Any
    ) -> Response:
        """Facet counts, by ``filter`` parameters or a predicate ``query``: an answer counted
        since the last write is sent from the event loop; counting (linear in the catalog)
        gets a thread."""
        cached = await inline(idle_connection(engine.pool), cached_facets, key)
        if cached is not None:
            return RawJSON(cached)
        return await inline(False, count_facets, facet, key, filter, query)

    def cached_facets(key: Hashable) -> bytes | None:
        with reads.connect() as conn:
            return facet_cache.peek(read_generation(conn), key)

    def count_facets(facet: list[str], key: Hashable, filter: list[str], query: Any) -> Response:
        state = cursors.QueryCursor(filter=filter, query=query)
        where = queries.filter_clause(_where(state))
        with reads.connect() as conn:
            generation = read_generation(conn)

        def count() -> bytes:
            # Its own connection: requests waiting for this count hold none meanwhile.
            with reads.connect() as conn:
                return orjson.dumps({"facets": queries.facets(conn, facet, where)})

        # Counting is linear in the catalog; the answer changes only with a write, and was
        # counted after the generation was read, so it reflects at least that one.
        return RawJSON(facet_cache.get_or_compute(generation, key, count))

    @api.post("/refresh", summary="Refresh an entity now")
    def refresh(body: RefreshInput) -> Response:
        try:
            ref = str(parse_ref(body.entityRef))
        except RefError as exc:
            raise InvalidInput(str(exc)) from exc
        service(context).refresh_entity(ref)
        return Response(status_code=200)

    @api.post("/validate-entity", summary="Validate an entity")
    def validate_entity(body: ValidateInput) -> Response:
        if not body.location.startswith("url:"):
            errors = [
                f"Invalid location ref {body.location}, only 'url:<target>' is supported, "
                "e.g. url:https://host/path"
            ]
        else:
            errors = service(context).validate(body.entity)
        if errors:
            content = {"errors": [{"name": "InputError", "message": m} for m in errors]}
            return JSONResponse(status_code=400, content=content)
        return Response(status_code=200)

    @api.post("/analyze-location", summary="Find the entity files at a location")
    def analyze_location(body: AnalyzeInput) -> dict[str, Any]:
        return service(context).analyze_location(body.location.type, body.location.target)

    @api.get("/locations", summary="List registered locations")
    def list_locations() -> list[dict[str, Any]]:
        return [{"data": loc} for loc in service(context).list_locations()]

    @api.post("/locations", status_code=201, summary="Register a location")
    def add_location(
        body: LocationInput,
        dryRun: bool = False,
        onConflict: Literal["refresh", "reject"] = "reject",
    ) -> dict[str, Any]:
        return service(context).add_location(
            body.type, body.target, dry_run=dryRun, refresh_existing=onConflict == "refresh"
        )

    @api.post("/locations/by-query", summary="Registered locations matching a predicate")
    def query_locations(body: LocationQueryInput | None = None) -> dict[str, Any]:
        body = body or LocationQueryInput()
        if "cursor" in body.model_fields_set:
            state = cursors.decode(body.cursor or "", cursors.LocationCursor, "Malformed cursor")
        else:
            limit = 1000 if body.limit is None else body.limit
            if isinstance(limit, float) and limit.is_integer():
                limit = int(limit)  # JSON's 5.0 is the integer 5, as in JavaScript
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise InvalidInput("Limit must be a positive integer >= 1")
            limit = min(limit, cursors.MAX_ROWS)
            if "query" in body.model_fields_set and not isinstance(body.query, dict):
                raise InvalidInput("Query must be an object")  # null too, as in Backstage
            state = cursors.LocationCursor(limit=limit, query=body.query)
        items, total = service(context).query_locations(state.query, state.limit + 1, state.afterId)
        page_info: dict[str, str] = {}
        if len(items) > state.limit:
            items = items[: state.limit]
            following = state.model_copy(update={"afterId": items[-1]["id"]})
            page_info["nextCursor"] = cursors.encode(following)
        return {"items": items, "totalItems": total, "pageInfo": page_info}

    @api.put("/locations/{id}", summary="Point a registered location at another target")
    def update_location(id: str, body: LocationInput) -> dict[str, Any]:
        return service(context).update_location(id, body.type, body.target)

    @api.get("/locations/by-entity/{kind}/{namespace}/{name}", summary="Location of an entity")
    def location_by_entity(kind: str, namespace: str, name: str) -> dict[str, Any]:
        return service(context).location_by_entity(format_ref(kind, namespace, name))

    @api.get("/locations/{id}", summary="Get a registered location")
    def get_location(id: str) -> dict[str, Any]:
        return service(context).get_location(id)

    @api.delete("/locations/{id}", status_code=204, summary="Unregister a location")
    def delete_location(id: str) -> Response:
        service(context).delete_location(id)
        return Response(status_code=204)

    return api
