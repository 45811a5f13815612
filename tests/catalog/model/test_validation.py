"""Backstage's validation rules for the envelope, metadata and each kind's spec."""

from __future__ import annotations

from typing import Any

import pytest

from greenroom.catalog.model.validation import validate_entity


def component(**changes: Any) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "billing"},
        "spec": {"type": "service", "lifecycle": "production", "owner": "team-a"},
    }
    for path, value in changes.items():
        node = entity
        parts = path.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return entity


def fields(entity: dict[str, Any]) -> list[str]:
    return [e.field for e in validate_entity(entity)]


def test_a_valid_component_passes() -> None:
    assert validate_entity(component()) == []


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("a-b_c.d", True),
        ("A1", True),
        ("-a", False),
        ("a-", False),
        ("a b", False),
        ("x" * 63, True),
        ("x" * 64, False),
        ("", False),
    ],
)
def test_name_rule(name: str, ok: bool) -> None:
    assert (fields(component(metadata__name=name)) == []) is ok


@pytest.mark.parametrize(
    ("namespace", "ok"), [("default", True), ("team-a", True), ("Team", False), ("a_b", False)]
)
def test_namespace_rule(namespace: str, ok: bool) -> None:
    assert (fields(component(metadata__namespace=namespace)) == []) is ok


@pytest.mark.parametrize(
    ("tag", "ok"),
    [
        ("java", True),
        ("c++", True),
        ("k8s:prod", True),
        ("Java", False),
        ("a--b", False),
        ("a b", False),
    ],
)
def test_tag_rule(tag: str, ok: bool) -> None:
    assert (fields(component(metadata__tags=[tag])) == []) is ok


def test_label_and_annotation_keys_take_a_dns_prefix() -> None:
    good = component(
        metadata__labels={"example.com/tier": "gold", "plain": ""},
        metadata__annotations={"backstage.io/techdocs-ref": "dir:."},
    )
    assert validate_entity(good) == []
    assert fields(component(metadata__labels={"Bad_Prefix/x": "y"})) == ["metadata.labels"]
    assert fields(component(metadata__annotations={"a": 1})) == ["metadata.annotations.a"]


def test_links_need_a_url() -> None:
    assert fields(component(metadata__links=[{"url": "https://x.example.com", "title": "X"}])) == []
    assert fields(component(metadata__links=[{"title": "no url"}])) == ["metadata.links.0"]
    assert fields(component(metadata__links=[{"url": "not a url"}])) == ["metadata.links.0.url"]


def test_missing_required_spec_fields_are_each_named() -> None:
    entity = component(spec__owner=None, spec__lifecycle=None)
    assert sorted(fields(entity)) == ["spec.lifecycle", "spec.owner"]
    messages = [e.message for e in validate_entity(entity)]
    assert '"spec.owner" is required but missing' in messages


def test_wrong_field_type_is_named() -> None:
    assert fields(component(spec__providesApis="api-a")) == ["spec.providesApis"]
    assert fields(component(spec__owner=7)) == ["spec.owner"]


def test_envelope_problems() -> None:
    assert fields({"kind": "Component", "metadata": {"name": "x"}}) == ["apiVersion"]
    assert fields(component(kind=None)) == ["kind"]
    assert fields(component(metadata__name=None)) == ["metadata.name"]
    assert fields(component(extra="x")) == ["extra"]
    assert "Unsupported kind" in validate_entity(component(kind="Spaceship"))[0].message
    assert fields(component(apiVersion="scaffolder.backstage.io/v1beta3")) == ["apiVersion"]


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        ("API", {"type": "openapi", "lifecycle": "production", "owner": "a", "definition": "x"}),
        ("Resource", {"type": "database", "owner": "a"}),
        ("System", {"owner": "a"}),
        ("Domain", {"owner": "a"}),
        ("Group", {"type": "team", "children": []}),
        ("User", {"memberOf": []}),
        ("Location", {"targets": ["./a.yaml"]}),
    ],
)
def test_each_kind_with_its_required_fields(kind: str, spec: dict[str, Any]) -> None:
    entity = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x"},
        "spec": spec,
    }
    assert validate_entity(entity) == []
    required = [k for k in spec if k not in ("targets",)]
    for key in required:
        broken = {**entity, "spec": {k: v for k, v in spec.items() if k != key}}
        assert f"spec.{key}" in fields(broken)


def test_template_needs_its_own_api_version() -> None:
    template = {
        "apiVersion": "scaffolder.backstage.io/v1beta3",
        "kind": "Template",
        "metadata": {"name": "t"},
        "spec": {"type": "service", "steps": []},
    }
    assert validate_entity(template) == []
    assert fields({**template, "apiVersion": "backstage.io/v1alpha1"}) == ["apiVersion"]


def test_messages_follow_backstage() -> None:
    (kind,) = validate_entity(component(kind="9lives"))
    assert kind.message.startswith(
        '"kind" is not valid; expected a string that is a sequence of [a-zA-Z][a-z0-9A-Z]'
    )
    (api,) = validate_entity(component(apiVersion="a/b/c"))
    assert '"apiVersion" is not valid; expected a valid prefix and/or suffix' in api.message
