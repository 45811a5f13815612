"""The search rows of an entity: what filters and facets answer from."""

from __future__ import annotations

from greenroom.catalog.search_rows import search_rows


def test_a_key_spelled_like_stitching_gives_its_row_once() -> None:
    """A kind that allows any top-level key may hold ``relations.ownedBy`` (with a dot) or a
    ``Relations`` list; their rows are those written for the relations, and each
    ``(key, value)`` must be written once, or facets count the entity twice."""
    entity = {
        "apiVersion": "example.com/v1",
        "kind": "Thing",
        "metadata": {"name": "Odd", "uid": "u-1"},
        "relations.ownedBy": "group:default/Team",
        "Relations": ["ownedBy"],
        "relations": [{"type": "ownedBy", "targetRef": "group:default/team"}],
    }
    rows = search_rows("thing:default/odd", entity, 7)
    assert {row[4] for row in rows} == {7}
    pairs = [(key, value) for _, key, value, _, _ in rows]
    assert len(pairs) == len(set(pairs))
    assert ("relations.ownedby", "group:default/team") in pairs
    assert ("metadata.uid", "u-1") in pairs and ("metadata.name", "odd") in pairs
    # The spelling kept for facets is the first met: the entity's own key comes first.
    assert (
        "thing:default/odd",
        "relations.ownedby",
        "group:default/team",
        "group:default/Team",
        7,
    ) in rows
