"""Filter predicates: ``POST /entities/by-query`` and ``POST /entity-facets`` (Backstage 4.0).

The expected answers were checked against the real Backstage catalog backend (4.0.0, from npm)
on the same entities, operator by operator, errors included (see ``docs/api.md``).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.catalog.test_api import many_components, names

# The services of ``many_components``: svc-NN, tag java when NN is even (python otherwise),
# website from 20 (service below), experimental when NN is a multiple of 5, annotation tier NN % 3.
SERVICES = range(25)


def svc(numbers: Any) -> list[str]:
    return sorted(f"svc-{i:02d}" for i in numbers)


@pytest.fixture
def catalog(make_catalog: Any) -> Any:
    catalog = make_catalog(many_components())
    catalog.refresh()
    return catalog


def query(catalog: Any, body: dict[str, Any], path: str = "/entities/by-query") -> Any:
    response = catalog.client.post(f"/api/catalog{path}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def found(catalog: Any, predicate: Any, **extra: Any) -> list[str]:
    return sorted(names(query(catalog, {"query": predicate, **extra})["items"]))


def test_all_any_not_combine_and_keys_and_values_ignore_case(catalog: Any) -> None:
    predicate = {
        "$all": [
            {"KIND": "Component"},
            {"$not": {"spec.lifecycle": "EXPERIMENTAL"}},
            {"$any": [{"spec.type": "website"}, {"metadata.tags": "java"}]},
        ]
    }
    expected = svc(i for i in SERVICES if i % 5 and (i >= 20 or i % 2 == 0))
    assert found(catalog, predicate) == expected
    assert query(catalog, {"query": predicate})["totalItems"] == len(expected)
    # Several fields in one object all hold; none at all, or an empty $all: everything.
    assert found(catalog, {"kind": "component", "spec.type": "website"}) == svc(range(20, 25))
    everything = found(catalog, {})
    assert found(catalog, {"$all": []}) == everything and "ada" in everything
    assert found(catalog, {"$any": []}) == []
    assert query(catalog, {})["totalItems"] == len(everything)


def test_value_operators(catalog: Any) -> None:
    tags = {"metadata.tags": {"$in": ["JAVA", "nothing"]}, "kind": "component"}
    assert found(catalog, tags) == svc(range(0, 25, 2))
    assert found(catalog, {"metadata.tags": {"$in": []}}) == []
    assert found(catalog, {"spec.definition": {"$exists": True}}) == ["billing-api"]
    no_tags = {"kind": "component", "metadata.tags": {"$exists": False}}
    assert found(catalog, no_tags) == []  # every component has a tag
    assert found(catalog, {"metadata.name": {"$hasPrefix": "SVC-2"}}) == svc(range(20, 25))
    assert found(catalog, {"metadata.tags": {"$contains": "python"}}) == sorted(
        ["billing", *svc(range(1, 25, 2))]
    )
    # Numbers and booleans compare as JavaScript writes them: 2.0 is "2".
    tier = {"metadata.annotations.example.com/tier": 2.0}
    assert found(catalog, tier) == svc(range(2, 25, 3))


def test_prefix_takes_like_wildcards_literally(catalog: Any) -> None:
    assert found(catalog, {"metadata.name": {"$hasPrefix": "svc_"}}) == []
    assert found(catalog, {"metadata.name": {"$hasPrefix": "svc%"}}) == []
    assert len(found(catalog, {"metadata.name": {"$hasPrefix": "svc-"}})) == 25


def test_relations_contains_a_type_and_targets(catalog: Any) -> None:
    owned = {"relations": {"$contains": {"type": "ownedBy", "targetRef": "group:default/platform"}}}
    assert "billing" in found(catalog, owned) and "billing-db" not in found(catalog, owned)
    by_ada = {"type": "OWNEDBY", "targetRef": {"$in": ["User:default/Ada", "group:default/x"]}}
    assert found(catalog, {"relations": {"$contains": by_ada}}) == ["billing-db"]
    depends = {"relations": {"$contains": {"type": "dependsOn"}}}
    assert found(catalog, depends) == ["billing"]


def test_order_full_text_fields_and_pages_through_cursors(catalog: Any) -> None:
    body = {
        "query": {"kind": "component", "spec.type": "service"},
        "orderBy": [{"field": "metadata.name", "order": "desc"}],
        "limit": 7,
        "fields": ["metadata.name"],
    }
    first = query(catalog, body)
    assert first["totalItems"] == 21
    assert first["items"][0] == {"metadata": {"name": "svc-19"}}
    seen = names(first["items"])
    cursor = first["pageInfo"]["nextCursor"]
    while cursor:  # the cursor carries the predicate and the order
        page = query(catalog, {"cursor": cursor, "limit": 7, "fields": ["metadata.name"]})
        seen += names(page["items"])
        cursor = page["pageInfo"].get("nextCursor")
    assert seen == sorted(["billing", *svc(range(20))], reverse=True)
    # A predicate's cursor serves GET by-query too, as Backstage's cursors do.
    back = catalog.get("/entities/by-query", params={"cursor": first["pageInfo"]["nextCursor"]})
    assert names(back["items"])[0] == "svc-12"
    text = query(
        catalog,
        {
            "query": {"$not": {"spec.lifecycle": "experimental"}},
            "fullTextFilter": {"term": "service 1", "fields": ["metadata.title"]},
        },
    )
    assert sorted(names(text["items"])) == svc(i for i in range(10, 20) if i % 5)
    assert text["totalItems"] == 8


def test_facets_by_predicate(catalog: Any) -> None:
    body = {"facets": ["spec.lifecycle", "", "kind"], "query": {"$not": {"kind": "component"}}}
    facets = query(catalog, body, "/entity-facets")["facets"]
    assert set(facets) == {"spec.lifecycle", "kind"}
    assert facets["spec.lifecycle"] == [{"value": "production", "count": 1}]  # the API
    assert {"value": "Component", "count": 26} not in facets["kind"]
    assert {"value": "Group", "count": 1} in facets["kind"]
    again = query(catalog, {"facets": ["kind"], "query": {"kind": "component"}}, "/entity-facets")
    assert again["facets"]["kind"] == [{"value": "Component", "count": 26}]  # not the cached one
    plain = query(catalog, {"facets": ["kind"]}, "/entity-facets")["facets"]["kind"]
    assert {"value": "Component", "count": 26} in plain and len(plain) > 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"query": "component"}, "Query must be an object"),
        ({"query": {"$all": [], "kind": "x"}}, "$all cannot stand beside 'kind'"),
        ({"query": {"$any": [{"$nope": 1}]}}, "query.$any[0]: unknown operator '$nope'"),
        ({"query": {"$all": {"kind": "x"}}}, "query.$all: expected an array"),
        ({"query": {"kind": None}}, 'value for field "kind": expected a primitive value'),
        ({"query": {"kind": {"$in": [{"a": 1}]}}}, 'value for field "kind"'),
        ({"query": {"metadata.tags": {"$contains": {"a": 1}}}}, "Object form of $contains"),
        ({"query": {"relations": {"$contains": {"targetRef": "x"}}}}, 'requires a "type"'),
        (
            {"query": {"relations": {"$contains": {"type": "a", "other": 1}}}},
            'Unsupported key "other"',
        ),
        (
            {"query": {"relations": {"$contains": {"type": "a", "targetRef": {"$in": []}}}}},
            'Empty "$in" array',
        ),
        (
            {"query": {"kind": "component"}, "orderBy": [{"field": "a", "order": "up"}]},
            "must be asc or desc",
        ),
        ({"limit": -1}, "limit"),
    ],
)
def test_a_malformed_query_is_a_400_that_says_where(
    catalog: Any, body: dict[str, Any], message: str
) -> None:
    response = catalog.client.post("/api/catalog/entities/by-query", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["name"] == "InputError" and message in error["message"]
    if "query" in body:
        facets = catalog.client.post(
            "/api/catalog/entity-facets", json={"facets": ["kind"], "query": body["query"]}
        )
        assert facets.status_code == 400 or "orderBy" in body


def test_a_predicate_too_deep_or_too_large_is_refused(catalog: Any) -> None:
    deep: dict[str, Any] = {"kind": "component"}
    for _ in range(40):
        deep = {"$not": deep}
    response = catalog.client.post("/api/catalog/entities/by-query", json={"query": deep})
    assert response.status_code == 400
    assert "nested more than 32 levels" in response.json()["error"]["message"]
    wide = {"$any": [{"metadata.name": f"n{i}"} for i in range(1001)]}
    response = catalog.client.post("/api/catalog/entities/by-query", json={"query": wide})
    assert response.status_code == 400
    assert "more than 1000 field conditions" in response.json()["error"]["message"]
    facets = catalog.client.post("/api/catalog/entity-facets", json={"facets": []})
    assert facets.status_code == 400
    assert facets.json()["error"]["message"] == "Missing or empty facets parameter"
