"""Filter predicates: ``POST /entities/by-query`` and ``POST /entity-facets`` (Backstage 4.0).

The expected answers were checked against the real Backstage catalog backend (4.0.0, from npm)
on the same entities, operator by operator, errors included (see ``docs/api.md``).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from greenroom.catalog import predicates
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
    wide = {"$any": [{"metadata.name": f"n{i}"} for i in range(201)]}
    response = catalog.client.post("/api/catalog/entities/by-query", json={"query": wide})
    assert response.status_code == 400
    assert "more than 200 field conditions" in response.json()["error"]["message"]
    many = {"metadata.name": {"$in": [f"n{i}" for i in range(5001)]}}
    response = catalog.client.post("/api/catalog/entities/by-query", json={"query": many})
    assert response.status_code == 400
    assert "more than 5000 values" in response.json()["error"]["message"]
    owners = {"type": "ownedBy", "targetRef": {"$in": [f"group:default/g{i}" for i in range(3000)]}}
    names_ = {"metadata.name": {"$in": [f"n{i}" for i in range(2001)]}}
    both = {"$all": [{"relations": {"$contains": owners}}, names_]}  # relations' $in count too
    response = catalog.client.post("/api/catalog/entities/by-query", json={"query": both})
    assert response.status_code == 400
    assert "more than 5000 values" in response.json()["error"]["message"]
    facets = catalog.client.post("/api/catalog/entity-facets", json={"facets": []})
    assert facets.status_code == 400
    assert facets.json()["error"]["message"] == "Missing or empty facets parameter"


def test_the_largest_predicates_allowed_are_answered(catalog: Any) -> None:
    """At the bounds, with what wraps a predicate most (an order, a full-text term, facets):
    SQLite refuses expressions deeper than 1,000 levels, PostgreSQL statements with more than
    65,535 parameters."""
    wide = {"$any": [{"metadata.name": f"svc-{i:02d}"} for i in range(200)]}
    kinds = {"kind": {"$in": ["component"] + [f"kind-{i}" for i in range(4999)]}}
    both = {"$all": [{"$any": wide["$any"][:199]}, {"$not": kinds}]}  # 200 and 5,000 again
    for predicate in (wide, kinds, both):
        for extra in (
            {"orderBy": [{"field": "metadata.name", "order": "asc"}]},
            {"fullTextFilter": {"term": "svc", "fields": ["metadata.name"]}},
            {},
        ):
            body = {"query": predicate, "limit": 5, **extra}
            response = catalog.client.post("/api/catalog/entities/by-query", json=body)
            assert response.status_code == 200, response.text[:300]
        facets = {"facets": ["kind", "spec.type"], "query": predicate}
        response = catalog.client.post("/api/catalog/entity-facets", json=facets)
        assert response.status_code == 200, response.text[:300]
    assert found(catalog, wide) == svc(SERVICES)
    assert len(found(catalog, kinds)) == 26


def test_odd_values_are_400s_and_operators_are_read_as_backstage_reads_them(catalog: Any) -> None:
    for body in (
        {"query": None},
        {"query": {"kind": "\ud800"}},
        {"query": {"kind\u2028": "component"}},
        {
            "query": {"kind": "component"},
            "orderBy": [{"field": "metadata.name", "order": "asc"}, {"field": "x", "order": "up"}],
        },
    ):
        response = catalog.client.post(
            "/api/catalog/entities/by-query",
            content=json.dumps(body),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400, (body, response.text)
    facets = {"facets": ["kind"], "query": None}
    assert catalog.client.post("/api/catalog/entity-facets", json=facets).status_code == 400
    nested = "[" * 5000 + "]" * 5000
    cursor = base64.urlsafe_b64encode(nested.encode()).decode()
    response = catalog.client.post("/api/catalog/entities/by-query", json={"cursor": cursor})
    assert response.status_code == 400
    # An object with two operators is read as the first well-formed one, in the schema's order.
    odd = {"metadata.name": {"$contains": [1], "$hasPrefix": "SVC-2"}}
    assert found(catalog, odd) == svc(range(20, 25))
    huge = {"facets": ["kind"], "query": {"spec.replicas": 2**70}}
    response = catalog.client.post("/api/catalog/entity-facets", json=huge)
    assert response.status_code == 200 and response.json() == {"facets": {"kind": []}}


def test_get_and_post_facets_never_share_a_cached_answer(catalog: Any) -> None:
    params = [("facet", "kind"), ("filter", "query"), ("filter", '{"kind": "group"}')]
    assert catalog.get("/entity-facets", params=params)["facets"]["kind"] == []
    body = {"facets": ["kind"], "query": {"kind": "group"}}
    posted = query(catalog, body, "/entity-facets")["facets"]["kind"]
    assert posted == [{"value": "Group", "count": 1}]


@pytest.mark.parametrize(
    ("number", "text"),
    [  # String(number) in node
        (1.0, "1"),
        (0.00001, "0.00001"),
        (1e-7, "1e-7"),
        (2.5e-7, "2.5e-7"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (10**22, "1e+22"),
        (2**53 + 1, "9007199254740992"),
        (-0.0, "0"),
        (12345678.9, "12345678.9"),
    ],
)
def test_numbers_are_compared_as_javascript_writes_them(number: float, text: str) -> None:
    assert predicates.parse({"x": number}) == predicates.Match("x", (text,))


def test_many_filter_parameters_on_one_key_are_one_condition(catalog: Any) -> None:
    """A client fetching entities by name sends a ``filter`` per name; 1,200 of them were
    an ``OR`` too deep for SQLite (a 500). Different keys beyond the bound are a 400."""
    params = [("filter", f"metadata.name=svc-{i % 30:02d}") for i in range(1200)]
    listed = catalog.get("/entities", params=params)
    assert sorted(names(listed)) == svc(SERVICES)
    ordered = catalog.get(
        "/entities/by-query", params=[*params, ("orderField", "metadata.name,desc")]
    )
    assert names(ordered["items"]) == sorted(svc(SERVICES), reverse=True)
    facets = catalog.get("/entity-facets", params=[*params, ("facet", "kind")])
    assert facets["facets"]["kind"] == [{"value": "Component", "count": 25}]
    mixed = [*params, ("filter", "kind=group"), ("filter", "kind=user")]
    assert len(catalog.get("/entities", params=mixed)) == 27
    distinct = [("filter", f"metadata.annotations.k{i}=x") for i in range(201)]
    response = catalog.client.get("/api/catalog/entities", params=distinct)
    assert response.status_code == 400
    assert "more than 200 conditions" in response.json()["error"]["message"]
