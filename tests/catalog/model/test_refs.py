"""Entity references, as Backstage parses and prints them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenroom.catalog.model.refs import CompoundRef, RefError, parse_ref


@pytest.mark.parametrize(
    ("ref", "defaults", "expected"),
    [
        ("team-a", {"default_kind": "Group"}, "group:default/team-a"),
        ("team-a", {"default_kind": "Group", "default_namespace": "ops"}, "group:ops/team-a"),
        ("user:ada", {"default_kind": "Group"}, "user:default/ada"),
        ("Component:Prod/Billing", {}, "component:prod/billing"),
        ("other/api-x", {"default_kind": "API"}, "api:other/api-x"),
    ],
)
def test_parse_with_context_defaults(ref: str, defaults: dict[str, str], expected: str) -> None:
    assert str(parse_ref(ref, **defaults)) == expected


@pytest.mark.parametrize("ref", ["", "  ", "a:b:c", "kind:/name", ":name", "ns/", "a/b/c"])
def test_malformed_refs_are_refused(ref: str) -> None:
    with pytest.raises(RefError):
        parse_ref(ref, default_kind="Component")


def test_a_ref_without_kind_and_no_default_is_refused_with_backstage_message() -> None:
    with pytest.raises(RefError, match="had missing or empty kind"):
        parse_ref("my-lib")


names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(kind=names, namespace=names, name=names)
def test_canonical_form_round_trips(kind: str, namespace: str, name: str) -> None:
    ref = CompoundRef(kind, namespace, name)
    assert parse_ref(str(ref)) == ref
    assert str(parse_ref(str(ref).upper())) == str(ref)
