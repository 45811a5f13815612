"""YAML documents: per-document isolation, lines, YAML 1.2 scalars, alias bombs."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from greenroom.catalog.ingest.parsing import parse_documents


def test_each_document_is_parsed_alone_with_its_line() -> None:
    text = "a: 1\n---\nb: [2\n---\n# comment\nc: 3\n"
    docs = parse_documents(text)
    assert [d.data for d in docs] == [{"a": 1}, None, {"c": 3}]
    assert docs[1].error and docs[1].error.startswith("YAML syntax error")
    assert docs[2].line == 6


def test_field_lines_are_known() -> None:
    docs = parse_documents("kind: X\nmetadata:\n  name: x\nspec:\n  owner: y\n")
    assert docs[0].line_of("spec.owner") == 5
    assert docs[0].line_of("spec.owner.deeper") == 5
    assert docs[0].line_of("nothing") == 1


def test_yaml_12_scalars_as_backstage_reads_them() -> None:
    data = parse_documents("on: yes\nwhen: 2024-01-01\nok: true\n")[0].data
    assert data == {"on": "yes", "when": "2024-01-01", "ok": True}


def test_alias_bomb_is_refused() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, cur in zip("abcdefg", "bcdefgh", strict=True):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    doc = parse_documents("\n".join(lines))[0]
    assert doc.data is None and "alias bomb" in (doc.error or "")


def test_a_few_aliases_are_fine() -> None:
    doc = parse_documents("base: &b {owner: a}\nspec: *b\n")[0]
    assert doc.data == {"base": {"owner": "a"}, "spec": {"owner": "a"}}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.text("abc", min_size=1, max_size=5), st.integers() | st.text(max_size=10), max_size=4
        ),
        min_size=1,
        max_size=5,
    )
)
def test_round_trip_of_generated_documents(docs: list[dict[str, Any]]) -> None:
    text = yaml.safe_dump_all(docs, explicit_start=True)
    parsed = [d.data for d in parse_documents(text)]
    assert parsed == docs


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_never_raises_on_arbitrary_text(text: str) -> None:
    for doc in parse_documents(text):
        assert (doc.error is None) or (doc.data is None)
