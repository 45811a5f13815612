"""Search keys ``relations.<type>`` are answered from ``catalog_relations`` with the answers of
Backstage's search rows (``relation_search.py``): here the cases that a catalog of built-in
relations does not reach, which a plugin's processor can (``test_pages`` and
``test_fast_reads`` check the common ones against the definition, page by page)."""

from __future__ import annotations

from typing import Any

from greenroom.catalog.model.relations import Relation
from greenroom.plugins import hookimpl

LONG = "component:default/" + "x" * 250  # over 200 characters: no search value
DOCS = """
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: team-a}
spec: {type: team, children: [], members: [u]}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: u}
spec: {memberOf: [team-a]}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: a}
spec: {type: service, lifecycle: production, owner: team-a}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: b}
spec: {type: service, lifecycle: production, owner: team-a}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: odd}
spec: {type: service, lifecycle: production, owner: team-a}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: strange}
spec: {type: service, lifecycle: production, owner: team-a}
"""


class Odd:
    """Gives ``component:default/odd`` fields named like relation keys, a relation whose
    target a plugin spelled in capitals, and one to a target too long to be a search value."""

    name = "odd"
    priority = 60

    def process(self, entity: dict[str, Any], context: Any) -> dict[str, Any]:
        if entity["metadata"]["name"] == "odd":
            entity["relations.ownedBy"] = "group:default/Team-A"  # the same value, spelled so
            entity["Relations"] = ["ownedBy"]  # relations.ownedby = true
            context.emit(Relation("Component:default/Odd", "ownedBy", "Group:Default/Lead"))
            context.emit(Relation("Group:Default/Lead", "ownerOf", "Component:default/Odd"))
            context.emit(Relation("component:default/odd", "dependsOn", LONG))
        if entity["metadata"]["name"] == "strange":
            context.emit(Relation("component:default/strange", "überOrdnet", "group:default/x"))
        return entity


class Plugin:
    @hookimpl
    def greenroom_catalog_processors(self, context: Any) -> list[Any]:
        return [Odd()]


def names(items: list[dict[str, Any]]) -> list[str]:
    return [item["metadata"]["name"] for item in items]


def test_relation_keys_answer_as_backstage_search_rows(make_catalog: Any) -> None:
    catalog = make_catalog({"all.yaml": DOCS}, plugins=(Plugin(),))
    summary = catalog.refresh()
    # A type filters could not fold as Python does fails its entity alone, named.
    assert catalog.status("component", "strange") == 404
    texts = [p.text() for p in summary.problems]
    assert any("relation type 'überOrdnet' is not an ASCII name" in t for t in texts), texts
    odd = catalog.get("/entities/by-name/component/default/odd")
    assert {"type": "ownedBy", "targetRef": "group:default/lead"} in odd["relations"]

    def filtered(*filters: str, **params: str) -> list[str]:
        query = [("filter", f) for f in filters] + list(params.items())
        return names(catalog.get("/entities", params=query))

    assert filtered("relations.ownedby=GROUP:default/LEAD") == ["odd"]
    assert filtered("relations.ownedBy=group:default/team-a") == ["a", "b", "odd"]
    assert filtered("relations.ownedby=true") == ["odd"]  # the Relations list
    assert filtered("relations.dependson") == ["odd"]  # the key exists
    assert filtered(f"relations.dependson={LONG}") == []  # but has no value
    # group:default/lead is not stored: its reverse relation has no served source.
    assert filtered("relations.ownerof=component:default/odd") == ["team-a"]
    assert filtered("kind=group,relations.ownerof=component:default/a") == ["team-a"]
    assert filtered("kind=component,relations.ownerof") == []

    facets = catalog.get(
        "/entity-facets",
        params=[("facet", "relations.ownedBy"), ("facet", "relations.dependsOn")],
    )["facets"]
    # The entity's own field comes first: its spelling is the one counted, once.
    assert facets == {
        "relations.ownedBy": [
            {"value": "group:default/Team-A", "count": 1},
            {"value": "group:default/lead", "count": 1},
            {"value": "group:default/team-a", "count": 2},
            {"value": "true", "count": 1},
        ],
        "relations.dependsOn": [],
    }
    kinds = catalog.get(
        "/entity-facets", params=[("facet", "relations.ownerof"), ("filter", "metadata.name=a")]
    )
    assert kinds["facets"] == {"relations.ownerof": []}  # a component owns nothing
    every = catalog.get(
        "/entity-facets", params=[("facet", "relations.ownerOf"), ("facet", "relations.hasMember")]
    )["facets"]
    # group:default/lead (not stored) owns odd too: only served entities count. team-a's
    # hasMember u is emitted by team-a and by u: one entity, counted once.
    assert every == {
        "relations.ownerOf": [
            {"value": f"component:default/{n}", "count": 1} for n in ("a", "b", "odd")
        ],
        "relations.hasMember": [{"value": "user:default/u", "count": 1}],
    }

    def queried(query: dict[str, Any]) -> list[str]:
        response = catalog.client.post("/api/catalog/entities/by-query", json={"query": query})
        assert response.status_code == 200, response.text
        return names(response.json()["items"])

    assert queried({"relations.ownedby": {"$hasPrefix": "GROUP:default/l"}}) == ["odd"]
    assert queried({"relations.dependson": {"$hasPrefix": "component:default/x"}}) == []
    assert queried({"relations.dependson": {"$exists": True}}) == ["odd"]
    not_lead = {"$not": {"relations.ownedby": "group:default/lead"}}
    assert queried({"$all": [{"kind": "component"}, not_lead]}) == ["a", "b"]
    contains = {"type": "ownedBy", "targetRef": {"$in": ["group:default/lead", "group:x/y"]}}
    assert queried({"relations": {"$contains": contains}}) == ["odd"]
    owned = catalog.get(
        "/entity-facets", params=[("facet", "relations.ownerof"), ("filter", "kind=group")]
    )["facets"]["relations.ownerof"]
    assert owned == [{"value": f"component:default/{n}", "count": 1} for n in ("a", "b", "odd")]

    def searched(term: str, fields: str, **params: str) -> list[str]:
        query = {"fullTextFilterTerm": term, "fullTextFilterFields": fields, **params}
        body = catalog.get("/entities/by-query", params=query)
        assert body["totalItems"] == len(body["items"])  # sources not served do not count
        return names(body["items"])

    assert searched("LEAD", "relations.ownedby") == ["odd"]
    assert searched("team-a", "relations.ownedby") == ["a", "b", "odd"]
    assert searched("xxxx", "relations.dependson") == []
    assert searched("component:default/", "relations.ownerof") == ["team-a"]

    def ordered(field: str) -> list[str]:
        query = {"orderField": field, "filter": "kind=component"}
        return names(catalog.get("/entities/by-query", params=query)["items"])

    # odd's smallest value is group:default/lead; dependsOn: a target without a value sorts
    # as missing, so every component is last, in ref order.
    assert ordered("relations.ownedBy,asc") == ["odd", "a", "b"]
    assert ordered("relations.ownedBy,desc") == ["b", "a", "odd"]  # ties by ref, descending
    assert ordered("relations.dependson,asc") == ["a", "b", "odd"]
