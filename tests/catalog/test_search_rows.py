"""The search rows of an entity: what filters and facets answer from."""

from __future__ import annotations

from greenroom.catalog.search_rows import search_rows


def test_a_key_spelled_like_stitching_gives_its_row_once() -> None:
    """A kind that allows any top-level key may hold ``relations.ownedBy`` (with a dot) or a
    ``Relations`` list: they give rows as any field does, each ``(key, value)`` once, or facets
    count the entity twice. The ``relations`` themselves give none: those keys are read from
    ``catalog_relations`` (``relation_search.py``; ``test_relation_search`` checks both
    together)."""
    entity = {
        "apiVersion": "example.com/v1",
        "kind": "Thing",
        "metadata": {"name": "Odd", "uid": "u-1"},
        "relations.ownedBy": "group:default/Team",
        "Relations": ["ownedBy"],
        "relations": [
            {"type": "ownedBy", "targetRef": "group:default/team"},
            {"type": "dependsOn", "targetRef": "component:default/other"},
        ],
    }
    rows = search_rows("thing:default/odd", entity, 7)
    assert {row[4] for row in rows} == {7}
    pairs = [(key, value) for _, key, value, _, _ in rows]
    assert len(pairs) == len(set(pairs))
    assert ("relations.ownedby", "group:default/team") in pairs  # the field's
    assert not any(key == "relations.dependson" for key, _ in pairs)
    assert ("metadata.uid", "u-1") in pairs and ("metadata.name", "odd") in pairs
    # The spelling kept for facets is the first met: the entity's own key comes first.
    assert (
        "thing:default/odd",
        "relations.ownedby",
        "group:default/team",
        "group:default/Team",
        7,
    ) in rows
