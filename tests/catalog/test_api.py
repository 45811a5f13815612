"""The catalog REST API: Backstage's paths, parameters, shapes and status codes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.catalog.test_ingestion import ORG, search_rows_of

TEAM = """
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: {name}
  title: {title}
  tags: [{tag}]
  annotations: {{example.com/tier: "{tier}"}}
spec: {{type: {type}, lifecycle: {lifecycle}, owner: platform}}
"""


def many_components() -> dict[str, str]:
    docs = []
    for i in range(25):
        docs.append(
            TEAM.format(
                name=f"svc-{i:02d}",
                title=f"Service {i:02d}",
                tag="python" if i % 2 else "java",
                tier=i % 3,
                type="service" if i < 20 else "website",
                lifecycle="production" if i % 5 else "experimental",
            )
        )
    files = dict(ORG)
    files["all.yaml"] = ORG["all.yaml"].replace("./services.yaml]", "./services.yaml, ./many.yaml]")
    files["many.yaml"] = "\n---\n".join(docs)
    return files


@pytest.fixture
def catalog(make_catalog: Any) -> Any:
    catalog = make_catalog(many_components())
    catalog.refresh()
    return catalog


def names(items: list[dict[str, Any]]) -> list[str]:
    return [e["metadata"]["name"] for e in items]


def test_filter_and_within_one_value_or_across_repeats(catalog: Any) -> None:
    websites = catalog.get("/entities", params={"filter": "kind=component,spec.type=website"})
    assert sorted(names(websites)) == [f"svc-{i}" for i in range(20, 25)]
    both = catalog.get("/entities", params=[("filter", "kind=group"), ("filter", "kind=user")])
    assert sorted(names(both)) == ["ada", "platform"]


def test_filter_is_case_insensitive_and_same_key_values_are_alternatives(catalog: Any) -> None:
    items = catalog.get("/entities", params={"filter": "KIND=Group,kind=USER"})
    assert sorted(names(items)) == ["ada", "platform"]


def test_filter_on_relations_tags_annotations_and_existence(catalog: Any) -> None:
    owned = catalog.get("/entities", params={"filter": "relations.ownedBy=group:default/platform"})
    assert "billing" in names(owned) and "svc-00" in names(owned)
    java = catalog.get("/entities", params={"filter": "metadata.tags.java"})
    assert sorted(names(java)) == [f"svc-{i:02d}" for i in range(0, 25, 2)]
    tagged = catalog.get("/entities", params={"filter": "metadata.tags=python"})
    assert len(tagged) == 13  # 12 of the services and billing
    tier = catalog.get("/entities", params={"filter": "metadata.annotations.example.com/tier=2"})
    assert sorted(names(tier)) == [f"svc-{i:02d}" for i in range(2, 25, 3)]
    with_api = catalog.get("/entities", params={"filter": "spec.definition"})
    assert names(with_api) == ["billing-api"]


def test_fields_narrow_the_entities(catalog: Any) -> None:
    items = catalog.get(
        "/entities", params={"filter": "kind=group", "fields": "kind,metadata.name"}
    )
    assert items == [{"kind": "Group", "metadata": {"name": "platform"}}]


def test_order_limit_offset_and_after(catalog: Any) -> None:
    params = {"filter": "kind=component", "order": "desc:metadata.name", "limit": 10}
    response = catalog.client.get("/api/catalog/entities", params=params)
    first = names(response.json())
    assert first == [f"svc-{i:02d}" for i in range(24, 14, -1)]
    second = catalog.get("/entities", params={**params, "offset": 10})
    assert names(second) == [f"svc-{i:02d}" for i in range(14, 4, -1)]
    assert "after=" in response.headers["link"]


def test_by_query_pages_through_a_cursor(catalog: Any) -> None:
    first = catalog.get(
        "/entities/by-query",
        params={"filter": "kind=component", "limit": 10, "orderField": "metadata.name,asc"},
    )
    assert first["totalItems"] == 26
    seen = names(first["items"])
    cursor = first["pageInfo"]["nextCursor"]
    while cursor:
        page = catalog.get("/entities/by-query", params={"cursor": cursor, "limit": 10})
        seen += names(page["items"])
        cursor = page["pageInfo"].get("nextCursor")
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 26


def test_by_query_full_text_filter(catalog: Any) -> None:
    found = catalog.get(
        "/entities/by-query",
        params={"fullTextFilterTerm": "SERVICE 1", "fullTextFilterFields": "metadata.title"},
    )
    assert sorted(names(found["items"])) == [f"svc-{i}" for i in range(10, 20)]
    assert found["totalItems"] == 10


def test_by_refs_keeps_order_and_gives_null_for_missing(catalog: Any) -> None:
    body = {"entityRefs": ["group:platform", "component:default/missing", "user:default/ada"]}
    response = catalog.client.post("/api/catalog/entities/by-refs", json=body)
    assert response.status_code == 200
    items = response.json()["items"]
    assert items[1] is None
    assert [items[0]["metadata"]["name"], items[2]["metadata"]["name"]] == ["platform", "ada"]


def test_by_refs_answers_alike_on_the_event_loop_and_in_a_thread(catalog: Any) -> None:
    """A few refs without a filter are looked up on the event loop, many refs or a filter in
    a worker thread (``api.inline``); both give the same items, in order, nulls included."""
    from greenroom.catalog.api import INLINE_REFS

    refs = ["group:platform", "component:default/missing", "not a ref", "user:default/ada"]
    many = refs * (INLINE_REFS // len(refs) + 1)
    assert len(many) > INLINE_REFS

    def items(body: dict[str, Any], **params: Any) -> list[Any]:
        response = catalog.client.post("/api/catalog/entities/by-refs", json=body, params=params)
        assert response.status_code == 200
        found: list[Any] = response.json()["items"]
        return found

    few = items({"entityRefs": refs, "fields": ["kind", "metadata.name"]})
    assert few == [
        {"kind": "Group", "metadata": {"name": "platform"}},
        None,
        None,
        {"kind": "User", "metadata": {"name": "ada"}},
    ]
    assert items({"entityRefs": many, "fields": ["kind", "metadata.name"]}) == few * (
        len(many) // len(refs)
    )
    filtered = items({"entityRefs": refs, "fields": ["metadata.name"]}, filter="kind=user")
    assert filtered == [None, None, None, {"metadata": {"name": "ada"}}]


def test_by_name_and_by_uid(catalog: Any) -> None:
    group = catalog.entity("Group", "platform")
    by_uid = catalog.get(f"/entities/by-uid/{group['metadata']['uid']}")
    assert by_uid == group
    missing = catalog.client.get("/api/catalog/entities/by-name/group/default/nobody")
    assert missing.status_code == 404
    body = missing.json()
    assert body["error"]["name"] == "NotFoundError"
    assert body["response"]["statusCode"] == 404
    assert body["request"]["method"] == "GET"


def test_delete_by_uid_removes_until_next_refresh(catalog: Any) -> None:
    uid = catalog.entity("component", "svc-01")["metadata"]["uid"]
    assert catalog.client.delete(f"/api/catalog/entities/by-uid/{uid}").status_code == 204
    assert catalog.status("component", "svc-01") == 404
    assert search_rows_of(catalog, "component:default/svc-01") == 0
    catalog.refresh()
    assert catalog.status("component", "svc-01") == 200


def test_facets_count_original_values(catalog: Any) -> None:
    facets = catalog.get(
        "/entity-facets",
        params=[("facet", "spec.type"), ("facet", "kind"), ("filter", "kind=component")],
    )["facets"]
    assert {"value": "service", "count": 21} in facets["spec.type"]
    assert {"value": "website", "count": 5} in facets["spec.type"]
    assert facets["kind"] == [{"value": "Component", "count": 26}]


def test_ancestry_leads_to_the_root_location(catalog: Any) -> None:
    body = catalog.get("/entities/by-name/component/default/billing/ancestry")
    assert body["rootEntityRef"] == "component:default/billing"
    kinds = [item["entity"]["kind"] for item in body["items"]]
    assert kinds == ["Component", "Location", "Location"]
    assert body["items"][0]["parentEntityRefs"] == ["location:default/root"]


def test_bad_filter_and_bad_order_are_400(catalog: Any) -> None:
    for params in (
        {"filter": "=x"},
        {"order": "sideways:metadata.name"},
        {"cursor": "not-a-cursor!"},
    ):
        path = "/api/catalog/entities/by-query" if "cursor" in params else "/api/catalog/entities"
        response = catalog.client.get(path, params=params)
        assert response.status_code == 400, params
        assert response.json()["error"]["name"] == "InputError"


def test_validate_entity(catalog: Any) -> None:
    good = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Group",
        "metadata": {"name": "x"},
        "spec": {"type": "team", "children": []},
    }
    ok = catalog.client.post(
        "/api/catalog/validate-entity", json={"entity": good, "location": "url:x"}
    )
    assert ok.status_code == 200
    bad = {**good, "metadata": {"name": "no spaces please"}}
    response = catalog.client.post(
        "/api/catalog/validate-entity", json={"entity": bad, "location": "url:x"}
    )
    assert response.status_code == 400
    assert "metadata.name" in response.json()["errors"][0]["message"]


def test_refresh_endpoint_rereads_the_entity_location(catalog: Any) -> None:
    many = catalog.root / "many.yaml"
    many.write_text(many.read_text().replace("Service 03", "Service Three"))
    response = catalog.client.post(
        "/api/catalog/refresh", json={"entityRef": "component:default/svc-03"}
    )
    assert response.status_code == 200
    assert catalog.entity("component", "svc-03")["metadata"]["title"] == "Service Three"
    unknown = catalog.client.post("/api/catalog/refresh", json={"entityRef": "component:nope"})
    assert unknown.status_code == 404


def test_openapi_lists_every_route(catalog: Any) -> None:
    paths = catalog.client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/catalog/entities",
        "/api/catalog/entities/by-query",
        "/api/catalog/entities/by-refs",
        "/api/catalog/entity-facets",
        "/api/catalog/locations",
        "/api/catalog/locations/{id}",
        "/api/catalog/locations/by-query",
        "/api/catalog/analyze-location",
        "/api/catalog/validate-entity",
        "/api/catalog/refresh",
    ):
        assert path in paths
    # Backstage's catalog 4.0 serves both methods on these.
    assert {"get", "post"} <= set(paths["/api/catalog/entities/by-query"])
    assert {"get", "post"} <= set(paths["/api/catalog/entity-facets"])
    assert {"get", "put", "delete"} <= set(paths["/api/catalog/locations/{id}"])


def test_a_whole_listing_is_streamed_in_pieces_and_complete(make_catalog: Any) -> None:
    """``GET /entities`` without a limit is sent as it is read, several hundred entities at a
    time; the array is complete, in order, filtered and narrowed like any other listing."""
    from greenroom.catalog import queries

    count = queries.STREAM_ROWS * 2 + 7
    many = "\n---\n".join(
        f"apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {{name: c{i:04d}}}\n"
        f"spec: {{type: service, lifecycle: production, owner: platform}}"
        for i in range(count)
    )
    catalog = make_catalog({"all.yaml": many})
    catalog.refresh()
    with catalog.client.stream(
        "GET",
        "/api/catalog/entities",
        params={"filter": "kind=component", "fields": "metadata.name"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        pieces = list(response.iter_raw())
    assert len(pieces) >= 3  # "[", the pieces of entities, "]": not one body built in memory
    body = json.loads(b"".join(pieces))
    assert body == [{"metadata": {"name": f"c{i:04d}"}} for i in range(count)]
    empty = catalog.get("/entities", params={"filter": "kind=nothing"})
    assert empty == []


def test_a_busy_pool_never_stops_the_event_loop(
    make_catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lookups run on the event loop only when a pooled connection is idle: with the only one
    held by a listing streamed to a client that stopped reading, a by-name must not wait for
    it on the loop (the stream needs the loop to finish and give it back): the health check
    answers at once, and by-name once the client reads on."""
    import socket
    import textwrap
    import threading
    import time

    import httpx
    import uvicorn

    from greenroom import db
    from greenroom.app import create_app

    plain = db.create_engine
    monkeypatch.setattr(
        db,
        "create_engine",
        lambda url, **kw: plain(url, pool_size=1, max_overflow=0, pool_timeout=20, **kw),
    )
    body = "x" * 2000
    docs = [
        textwrap.dedent(f"""
            apiVersion: backstage.io/v1alpha1
            kind: Component
            metadata: {{name: svc-{i}, description: "{body}"}}
            spec: {{type: service, lifecycle: production, owner: platform}}
            """)
        for i in range(3000)
    ]
    catalog = make_catalog({"all.yaml": "---".join(docs)})
    catalog.refresh()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(catalog.context, background=False), port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        while not server.started:
            time.sleep(0.05)
        with (
            httpx.Client(base_url=base, timeout=60) as slow,
            httpx.Client(base_url=base, timeout=60) as other,
        ):
            listing = slow.send(slow.build_request("GET", "/api/catalog/entities"), stream=True)
            assert listing.status_code == 200  # streaming: its connection stays checked out
            time.sleep(0.3)
            answers: list[int] = []
            lookup = threading.Thread(
                target=lambda: answers.append(
                    other.get("/api/catalog/entities/by-name/component/default/svc-1").status_code
                )
            )
            lookup.start()
            time.sleep(0.3)
            started = time.monotonic()
            with httpx.Client(base_url=base, timeout=60) as health:
                assert health.get("/healthcheck").status_code == 200
            assert time.monotonic() - started < 2
            received = sum(len(chunk) for chunk in listing.iter_bytes())  # the client reads on
            assert received > 3000 * 2000
            lookup.join(timeout=20)
            assert answers == [200]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
