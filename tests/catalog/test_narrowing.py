"""``fields``: the partial decoding of stored entities answers what parsing them whole answers:
the same keys in the same order, the same values (a number may be spelled differently)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenroom.catalog import narrowing
from greenroom.catalog.narrowing import entity_json, parse_fields, select_fields


def whole(raw: str, fields: list[str]) -> bytes:
    """The general path: parse the entity whole, keep the fields, encode."""
    return orjson.dumps(select_fields(orjson.loads(raw), fields))


def same(answer: bytes, expected: bytes) -> bool:
    """The same JSON, keys in the same order, whatever the spelling of numbers."""
    return orjson.dumps(orjson.loads(answer)) == orjson.dumps(orjson.loads(expected))


ENTITY = {
    "apiVersion": "backstage.io/v1alpha1",
    "kind": "Component",
    "metadata": {
        "name": "petstore",
        "namespace": "default",
        "title": None,
        "annotations": {"backstage.io/techdocs-ref": "dir:.", "a.b": {"c": 1}},
        "tags": ["java", "δ-ünïcode"],
    },
    "spec": {"type": "service", "owner": "team-a", "size": 1.5e300, "count": -(2**63)},
    "relations": [{"type": "ownedBy", "targetRef": "group:default/team-a"}],
    # A top-level key holding a dot: reached by "x.y" only when there is no "x".
    "x.y": "dotted",
}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (["kind", "metadata.name"], {"kind": "Component", "metadata": {"name": "petstore"}}),
        (
            ["metadata.annotations.backstage.io/techdocs-ref"],
            {"metadata": {"annotations": {"backstage.io/techdocs-ref": "dir:."}}},
        ),
        (["metadata.annotations.a.b.c"], {"metadata": {"annotations": {"a.b": {"c": 1}}}}),
        (["metadata.title"], {"metadata": {"title": None}}),
        (["x.y", "x"], {"x.y": "dotted"}),
        (["relations", "nope", "kind.name"], {"relations": ENTITY["relations"]}),
        (["metadata", "metadata.name"], {"metadata": ENTITY["metadata"]}),
        (["spec.size", "spec.count"], {"spec": {"size": 1.5e300, "count": -(2**63)}}),
        (["metadata.tags"], {"metadata": {"tags": ["java", "δ-ünïcode"]}}),
    ],
)
def test_fields_keep_what_backstage_keeps(fields: list[str], expected: dict[str, Any]) -> None:
    raw = orjson.dumps(ENTITY).decode()
    answer = entity_json(raw, fields)
    assert orjson.loads(answer) == expected
    assert same(answer, whole(raw, fields))
    assert entity_json(raw.encode(), fields) == answer


def test_without_fields_the_stored_text_is_sent_as_it_is() -> None:
    raw = '{"kind":"Component",  "metadata":{"name":"x"}}'
    assert entity_json(raw, []) == raw.encode()


def test_a_whole_key_is_copied_from_the_stored_text() -> None:
    """A key wanted whole is not parsed: its text goes into the answer as it was stored."""
    raw = '{"kind":"Component","relations":[ {"type" : "ownedBy"} ]}'
    assert entity_json(raw, ["relations"]) == b'{"relations":[ {"type" : "ownedBy"} ]}'


def test_stored_text_that_is_not_an_object_answers_as_before() -> None:
    assert entity_json("[1, 2]", ["kind"]) == whole("[1, 2]", ["kind"]) == b"{}"
    with pytest.raises(orjson.JSONDecodeError):
        entity_json('{"kind": ', ["kind"])


PART = st.sampled_from(
    ["a", "b", "c", "a.b", "b.c", "a.b.c", "kind", "é", "", "f0", 'q"', "\\", "\x01"]
)
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
TREE = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(PART, inner, max_size=4),
    max_leaves=12,
)
FIELD = st.lists(
    st.sampled_from(["a", "b", "c", "kind", "é", "", "f0", 'q"', "\\", "\x01"]),
    min_size=1,
    max_size=4,
).map(".".join)


@settings(max_examples=300, deadline=None)
@given(entity=st.dictionaries(PART, TREE, max_size=5), fields=st.lists(FIELD, max_size=4))
def test_any_entity_and_fields_answer_as_the_whole_parse(
    entity: dict[str, Any], fields: list[str]
) -> None:
    raw = orjson.dumps(entity).decode()
    assert same(entity_json(raw, fields), whole(raw, fields))


@pytest.mark.parametrize(
    "field",
    [
        'metadata.annotations.a"b',
        "foo\\bar",
        "kind\x01",
        "kind\ud800",
        "." * 5000,
        ".".join("x" * 100),
    ],
)
def test_fields_no_decoder_can_be_made_of_are_narrowed_the_general_way(field: str) -> None:
    """Keys that msgspec cannot rename a field to, and fields with more candidate keys than
    are worth a cached decoder, still answer."""
    extra = {} if "\ud800" in field else {field: 1, field.split(".")[0]: {"x": 2}}
    raw = orjson.dumps({**ENTITY, **extra}).decode()
    assert same(entity_json(raw, ["kind", field]), whole(raw, ["kind", field]))


def test_no_decoder_is_kept_for_a_field_of_many_dots() -> None:
    """A field of n dots has n candidate keys of n²/2 characters in all: a cached decoder of a
    field of 100,000 dots would hold about 5 GB, so none is made beyond a few thousand."""
    assert narrowing._narrower(("." * 100_000,)) is None
    assert narrowing._narrower(("kind", "metadata.name")) is not None


def joined_resolve(entity: dict[str, Any], path: str) -> list[str] | None:
    """The resolution as first written: every join of parts looked up in turn (n²/2
    characters for n dots), kept here as the oracle of the faster one."""
    parts = path.split(".")
    keys: list[str] = []
    node: Any = entity
    i = 0
    while i < len(parts):
        if not isinstance(node, dict):
            return None
        key = parts[i]
        while key not in node and i + 1 < len(parts):
            i += 1
            key = f"{key}.{parts[i]}"
        if key not in node:
            return None
        keys.append(key)
        node = node[key]
        i += 1
    return keys


# Keys of many parts, beyond the joins looked up before an object's keys are compared.
LONG_PART = st.lists(st.sampled_from(["a", "b", ""]), min_size=1, max_size=9).map(".".join)
LONG_TREE = st.recursive(
    LEAF, lambda inner: st.dictionaries(LONG_PART, inner, max_size=5), max_leaves=12
)


@settings(max_examples=300, deadline=None)
@given(
    entity=st.dictionaries(PART, TREE, max_size=5) | st.dictionaries(LONG_PART, LONG_TREE),
    field=FIELD | LONG_PART,
)
def test_paths_resolve_as_joining_every_run_of_parts(entity: dict[str, Any], field: str) -> None:
    assert resolved(entity, field) == joined_resolve(entity, field)


def resolved(entity: dict[str, Any], path: str) -> list[str] | None:
    """``_resolve_path``'s answer with every bound on its joins, so that both ways of finding a
    key of many parts (joins looked up, the object's keys compared) are exercised."""
    answers = []
    default = narrowing._JOIN_CHARS
    try:
        for bound in (0, 1, 3, default):
            narrowing._JOIN_CHARS = bound
            answers.append(narrowing._resolve_path(entity, path))
    finally:
        narrowing._JOIN_CHARS = default
    assert all(answer == answers[0] for answer in answers)
    return answers[0]


@settings(max_examples=300, deadline=None)
@given(entity=st.dictionaries(LONG_PART, LONG_TREE, min_size=1), data=st.data())
def test_paths_through_keys_of_many_parts_resolve_as_joining_them(
    entity: dict[str, Any], data: st.DataObject
) -> None:
    """Paths made of the entity's own keys, so that they reach keys of many parts."""
    keys: list[str] = []
    node: Any = entity
    while isinstance(node, dict) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(node)))
        keys.append(key)
        node = node[key]
    keys.append(data.draw(LONG_PART))
    field = ".".join(keys)
    assert resolved(entity, field) == joined_resolve(entity, field)


def test_a_field_of_many_dots_resolves_without_joining_them_all() -> None:
    """The shortest run of parts that is a key is found from the object's keys: the answer of
    the joins, for a path whose joins alone would be five billion characters."""
    entity = {"a": {"b.c": {"": 1}}, "x." + "." * 99_998: {"": 2}}
    assert narrowing._resolve_path(entity, "a.b.c.") == ["a", "b.c", ""]
    assert narrowing._resolve_path(entity, "x" + "." * 100_000) == ["x." + "." * 99_998, ""]
    assert narrowing._resolve_path(entity, "a" + "." * 100_000) is None
    assert joined_resolve(entity, "x" + "." * 2_000) is None  # the oracle, on a shorter path
    assert narrowing._resolve_path(entity, "x" + "." * 2_000) is None


def test_field_lists_keep_each_field_once_in_order() -> None:
    assert parse_fields(["kind,metadata.name", " kind ,spec", "metadata.name,,"]) == [
        "kind",
        "metadata.name",
        "spec",
    ]
