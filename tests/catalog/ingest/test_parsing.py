"""YAML documents: per-document isolation, lines, YAML 1.2 scalars, alias bombs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from greenroom.catalog.ingest import parsing
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


def _built(text: str, *, ours: bool) -> Any:
    """A document as parsing builds it (``ours``) or as PyYAML's constructor does, or the
    error either raises."""
    loader = parsing._Loader(text)
    try:
        node = loader.get_single_node()
        assert node is not None
        if ours:
            return parsing._construct(loader, node, aliased="*" in text)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        return f"error: {exc}"
    finally:
        loader.dispose()


TRICKY = [
    "a: 1\nb: 1.5\nc: .inf\nd: 0x1F\ne: 1_000\nf: ~\ng:\nh: true\ni: on\nj: 2001-12-14\n",
    "200: ok\n404: {description: gone}\n1.5: x\nnull: y\ntrue: z\n",
    "base: &b {x: 1, y: [1, 2]}\nderived:\n  <<: *b\n  y: 3\n",
    "inline:\n  <<: {x: 1}\n  y: 2\n",
    "? [a, b]\n: value\n",
    "? {a: 1}\n: value\n",
    "tagged: !custom value\n",
    "s: !!str 12\ni: !!int '12'\nb: !!binary aGVsbG8=\n",
    "set: !!set {a, b}\nomap: !!omap [{a: 1}, {b: 2}]\npairs: !!pairs [{a: 1}, {a: 2}]\n",
    "quoted: 'true'\ndouble: \"1\"\nblock: |\n  line 1\n  line 2\nfolded: >\n  a\n  b\n",
    "dup: 1\ndup: 2\n",
    "- a\n- [b, {c: [d, {e: f}]}]\n- ''\n",
    "just a string\n",
    "recursive: &r [*r]\n",
]


@pytest.mark.parametrize("text", TRICKY)
def test_documents_are_built_as_pyyaml_builds_them(text: str) -> None:
    """Documents without aliases are built by parsing's own constructor, not PyYAML's: for
    every kind of node (other tags, merge keys, keys that are not strings, errors) the value or
    the error must be PyYAML's."""
    expected, got = _built(text, ours=False), _built(text, ours=True)
    if text.startswith("recursive"):  # a list holding itself: compare its shape
        assert got["recursive"][0] is got["recursive"]
        return
    assert got == expected
    assert _types(got) == _types(expected)


def test_a_document_nested_too_deep_for_the_recursion_is_built_by_pyyaml() -> None:
    """libyaml allows 1,000 levels; parsing's constructor recurses once per level, and gives a
    document it cannot finish to PyYAML's."""
    doc = parsing.parse_document(0, 0, "deep: " + "[" * 990 + "x" + "]" * 990 + "\n")
    assert doc.error is None
    node, depth = doc.data["deep"], 0
    while isinstance(node, list):
        node, depth = node[0], depth + 1
    assert (node, depth) == ("x", 990)


def _types(value: Any) -> Any:
    """The value with the type of every leaf (``1 == 1.0 == True`` would hide a difference)."""
    if isinstance(value, dict):
        return {repr(k): _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


def test_every_yaml_file_of_the_compatibility_folder_is_built_as_pyyaml_builds_it() -> None:
    """Real catalog files: Backstage's examples, its demo site, its templates."""
    folder = os.environ.get("GREENROOM_COMPAT_DIR")
    if not folder:
        pytest.skip("GREENROOM_COMPAT_DIR is not set")
    files = [*Path(folder).rglob("*.yaml"), *Path(folder).rglob("*.yml")]
    documents = 0
    for path in files:
        for _, chunk in parsing.split_documents(path.read_text(errors="replace")):
            assert _built(chunk, ours=True) == _built(chunk, ours=False), f"{path}"
            documents += 1
    assert documents > 100


scalars = st.one_of(
    st.text(max_size=8),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.sampled_from(["yes", "on", "~", "0x10", "1e3", "2020-01-01", "<<", "!x", "*a", "&b"]),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.integers(), children, max_size=4)
    ),
    max_leaves=30,
)


@given(values, st.sampled_from([None, False, True]))
@settings(max_examples=300, deadline=None)
def test_generated_documents_are_built_as_pyyaml_builds_them(value: Any, flow: bool | None) -> None:
    text = yaml.safe_dump({"root": value}, default_flow_style=flow, allow_unicode=True)
    got, expected = _built(text, ours=True), _built(text, ours=False)
    assert got == expected
    assert _types(got) == _types(expected)


DEEP_AND_HANDED_TO_PYYAML = {
    "an int key over 300 sequences": "1: " + "[" * 300 + "x" + "]" * 300 + "\n",
    "a merge key over 300 sequences": "<<: {a: " + "[" * 300 + "x" + "]" * 300 + "}\n",
    "300 mappings, then an int key over 200 sequences": "{a: " * 300
    + "{1: "
    + "[" * 200
    + "x"
    + "]" * 200
    + "}"
    + "}" * 300
    + "\n",
}


@pytest.mark.parametrize(
    "text", DEEP_AND_HANDED_TO_PYYAML.values(), ids=DEEP_AND_HANDED_TO_PYYAML.keys()
)
def test_deep_documents_whose_deep_part_pyyaml_builds_parse_as_pyyaml_parses_them(
    text: str,
) -> None:
    """The recursion can run out inside PyYAML's constructor, called deep for a subtree: the
    whole document then goes to PyYAML afresh (its half-done state made the document look
    recursive, or raised out of the walk)."""
    docs = parse_documents(text + "---\nfine: yes\n")
    assert [d.error for d in docs] == [None, None]
    assert docs[0].data == _built(text, ours=False)
    assert docs[1].data == {"fine": "yes"}


@pytest.mark.parametrize("value", ["!!int xyz", "!!bool maybe", "!!float abc", "!!timestamp x"])
def test_a_value_that_does_not_fit_its_tag_fails_its_document_alone(value: str) -> None:
    """PyYAML raises plain exceptions for these, which stopped the whole walk."""
    docs = parse_documents(f"a: {value}\n---\nfine: yes\n")
    assert docs[0].error and docs[0].error.startswith("YAML error: cannot read a tagged value")
    assert docs[1].data == {"fine": "yes"}


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for a reaper is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_parsers_pool_ends_when_the_process_that_started_it_is_killed() -> None:
    """A server killed in the middle of a pass does not shut its pool of parsers down: the
    workers must see their parent gone and end, instead of waiting on their queue for ever."""
    code = (
        "import sys, time\n"
        "from greenroom.catalog.ingest.parsing import Parser\n"
        "parser = Parser(workers=1, min_group=1)\n"
        "assert parser.submit([(0, 0, 'a: 1')])()[0].data == {'a': 1}\n"
        "print(*Parser._pool._processes, flush=True)\n"
        "time.sleep(60)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    workers = [int(pid) for pid in server.stdout.readline().split()]
    assert workers and all(_running(pid) for pid in workers)
    server.kill()
    server.wait()
    deadline = time.monotonic() + 15
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(pid) for pid in workers)
