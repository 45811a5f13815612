"""Pages of ``/entities/by-query`` follow one order from the first page to the last and back.

Cursors hold the position of the last (or first) entity of their page (``pages.py``). Every
combination of filters and orders below is paged through forward with ``nextCursor`` and back
with ``prevCursor``, and compared with the order computed in Python from the served entities:
the smallest value of the key, ascending or descending, then entities without one; ties and
entities without a value by ref in the order's direction.
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest

from tests.catalog.oracle import backstage_rows, ref_of

COMPONENT = """
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: {name}
  {title}
  tags: [{tags}]
spec: {{type: {type}, lifecycle: {lifecycle}, owner: {owner}{system}}}
"""
OTHERS = """
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: team-a, title: "Team A"}
spec: {type: team, children: [], members: [u1, u2]}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: u1}
spec: {memberOf: [team-a, team-b]}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: u2}
spec: {memberOf: [team-a]}
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: team-b}
spec: {type: team, children: []}
---
apiVersion: backstage.io/v1alpha1
kind: API
metadata: {name: zeta-api, tags: [rest]}
spec: {type: openapi, lifecycle: production, owner: team-a, definition: "openapi: 3.0.0"}
---
apiVersion: backstage.io/v1alpha1
kind: System
metadata: {name: alpha-system, title: "Mid title"}
spec: {owner: team-a}
"""


def documents() -> dict[str, str]:
    docs = [OTHERS]
    for i in range(17):
        docs.append(
            COMPONENT.format(
                name=f"svc-{(i * 7) % 17:02d}" if i % 4 else f"Svc_{i:02d}.core",
                # Ties on titles, and components without one (they come last).
                title=f'title: "Title {i % 3}"' if i % 5 else "",
                tags="b, a" if i % 3 == 0 else ("c" if i % 3 == 1 else ""),
                type=["service", "website", "library"][i % 3],
                lifecycle="production" if i % 4 else "experimental",
                # Relations: two owners (one not stored), and a system for a third of them.
                owner=["team-a", "team-b", "group:default/nobody"][i % 3],
                system=", system: alpha-system" if i % 3 == 2 else "",
            )
        )
    return {"all.yaml": "\n---\n".join(docs)}


FILTERS: list[list[str]] = [
    [],
    ["kind=component"],
    ["kind=component,spec.lifecycle=production"],
    ["kind=api", "spec.type=website"],
    ["metadata.tags"],
    ["relations.ownedby=group:default/team-b"],
    ["kind=component,relations.partof", "relations.ownedby=group:default/nobody"],
    ["relations.ownerof"],
]
ORDERS = [
    [],
    ["metadata.name,asc"],
    ["metadata.name,desc"],
    ["metadata.title,asc"],
    ["metadata.title,desc"],
    ["metadata.tags,asc"],
    ["spec.type,desc"],
    ["kind,asc"],
    ["relations.ownedby,asc"],
    ["relations.ownerof,desc"],
    ["relations.partof,asc"],
    ["relations.haspart,desc"],
    # Emitted twice, by the group and by the user: each entity once.
    ["relations.memberof,desc"],
    ["relations.hasmember,asc"],
]


def expected(entities: list[dict[str, Any]], filters: list[str], order: list[str]) -> list[str]:
    """The definition, from each entity's search rows."""
    out: list[tuple[str | None, str]] = []
    for entity in entities:
        ref = ref_of(entity)
        values: dict[str, list[str]] = {}
        keys: set[str] = set()
        for key, value, _ in backstage_rows(entity):
            keys.add(key)
            if value is not None:
                values.setdefault(key, []).append(value)
        if filters and not any(
            all(
                key.lower() in keys
                if not eq
                else any(value.lower() == v for v in values.get(key.lower(), []))
                for key, eq, value in (cond.partition("=") for cond in f.split(","))
            )
            for f in filters
        ):
            continue
        found = values.get(order[0].partition(",")[0].lower()) if order else None
        out.append((min(found) if found else None, ref))
    descending = bool(order) and order[0].endswith(",desc")
    present = sorted(((v, r) for v, r in out if v is not None), reverse=descending)
    missing = sorted((r for v, r in out if v is None), reverse=descending)
    return [ref for _, ref in present] + missing


def page(catalog: Any, params: Any) -> dict[str, Any]:
    return catalog.get("/entities/by-query", params=params)  # type: ignore[no-any-return]


def refs(body: dict[str, Any]) -> list[str]:
    return [ref_of(e) for e in body["items"]]


@pytest.fixture
def catalog(make_catalog: Any) -> Any:
    catalog = make_catalog(documents())
    catalog.refresh()
    return catalog


def test_every_page_forward_and_back_follows_the_order(catalog: Any) -> None:
    entities = catalog.get("/entities")
    for filters, order, limit in itertools.product(FILTERS, ORDERS, [3, 7]):
        want = expected(entities, filters, order)
        params = [("filter", f) for f in filters] + [("orderField", o) for o in order]
        body = page(catalog, [*params, ("limit", str(limit))])
        assert body["totalItems"] == len(want)
        assert "prevCursor" not in body["pageInfo"]
        forward = [refs(body)]
        while "nextCursor" in body["pageInfo"]:
            body = page(catalog, {"cursor": body["pageInfo"]["nextCursor"], "limit": limit})
            assert body["totalItems"] == len(want)
            forward.append(refs(body))
        case = (filters, order, limit)
        assert [r for p in forward for r in p] == want, case
        assert all(len(p) == limit for p in forward[:-1]), case
        # Back from the last page: the same pages, in reverse, down to the first.
        backward = [refs(body)]
        while "prevCursor" in body["pageInfo"]:
            body = page(catalog, {"cursor": body["pageInfo"]["prevCursor"], "limit": limit})
            backward.append(refs(body))
        assert backward[::-1] == forward, case
        # And forward again from the first page reached going back.
        if len(forward) > 1:
            again = page(catalog, {"cursor": body["pageInfo"]["nextCursor"], "limit": limit})
            assert refs(again) == forward[1], case


def test_an_offset_starts_the_first_page_inside_the_order(catalog: Any) -> None:
    entities = catalog.get("/entities")
    for order in (["metadata.title,asc"], ["metadata.title,desc"], []):
        want = expected(entities, ["kind=component"], order)
        for offset in (0, 2, 13, 15, len(want), len(want) + 3):
            params = [("filter", "kind=component"), ("offset", str(offset)), ("limit", "4")]
            body = page(catalog, params + [("orderField", o) for o in order])
            assert refs(body) == want[offset : offset + 4], (order, offset)
            assert body["totalItems"] == len(want)
            seen = refs(body)
            while "nextCursor" in body["pageInfo"]:
                body = page(catalog, {"cursor": body["pageInfo"]["nextCursor"]})
                seen += refs(body)
            assert seen == want[offset:], (order, offset)
            if 0 < offset < len(want):
                first = page(catalog, params + [("orderField", o) for o in order])
                back = page(catalog, {"cursor": first["pageInfo"]["prevCursor"], "limit": 4})
                assert refs(back) == want[max(0, offset - 4) : offset], (order, offset)


def test_pages_of_a_full_text_query_go_back_too(catalog: Any) -> None:
    params = {
        "fullTextFilterTerm": "svc",
        "fullTextFilterFields": "metadata.name",
        "orderField": "metadata.title,desc",
        "limit": "4",
    }
    entities = [e for e in catalog.get("/entities") if "svc" in e["metadata"]["name"].lower()]
    want = expected(entities, [], ["metadata.title,desc"])
    body = page(catalog, params)
    forward = [refs(body)]
    while "nextCursor" in body["pageInfo"]:
        body = page(catalog, {"cursor": body["pageInfo"]["nextCursor"]})
        forward.append(refs(body))
    assert [r for p in forward for r in p] == want
    backward = [refs(body)]
    while "prevCursor" in body["pageInfo"]:
        body = page(catalog, {"cursor": body["pageInfo"]["prevCursor"]})
        backward.append(refs(body))
    assert backward[::-1] == forward


def test_a_page_after_a_deleted_entity_starts_where_it_was(catalog: Any) -> None:
    first = page(catalog, {"filter": "kind=component", "orderField": "metadata.name", "limit": 3})
    last = first["items"][-1]
    catalog.client.delete(f"/api/catalog/entities/by-uid/{last['metadata']['uid']}")
    entities = catalog.get("/entities")
    want = expected(entities, ["kind=component"], ["metadata.name,asc"])
    following = page(catalog, {"cursor": first["pageInfo"]["nextCursor"], "limit": 3})
    assert refs(following) == want[2:5]  # nothing skipped, nothing twice


def _cursor(data: dict[str, Any]) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "state",
    [
        {"order": [["metadata.name", False]], "position": ["svc-01"]},  # no value
        {"order": [], "position": ["a", "component:default/svc-01"]},  # a value, no order
        {"position": [None]},
        {"position": []},
        {"position": ["x" * 5000, "component:default/svc-01"], "order": [["metadata.name", 0]]},
        {"backwards": "sideways"},
        {"order": [["metadata.name", False]], "position": ["a\u0000", "component:default/x"]},
    ],
)
def test_a_tampered_position_is_a_bad_request(catalog: Any, state: dict[str, Any]) -> None:
    response = catalog.client.get(
        "/api/catalog/entities/by-query", params={"cursor": _cursor(state)}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["name"] == "InputError"
