"""A large root is walked in a process of its own (``ingest/apart.py``): the catalog, its
problems and what later passes skip are the same as when the walk runs in the server's thread."""

from __future__ import annotations

import copy
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from greenroom.catalog.ingest import apart
from greenroom.catalog.ingest.walk import Walker
from greenroom.config import load_config
from greenroom.context import create_context
from tests.catalog.test_ingestion import ORG, relations
from tests.conftest import ALL_KINDS, write_files

COMPONENT = """
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {{name: svc-{i}, title: Service {i}}}
spec:
  type: service
  lifecycle: production
  owner: platform
  dependsOn: [component:svc-{j}]
"""
BROKEN = """
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: [not, a, name]}
spec: {type: service, lifecycle: production, owner: platform}
---
kind: Component
metadata: {name: unclosed, tags: [a
"""


def many(count: int) -> str:
    """``count`` components, each depending on another (a peer that comes later or earlier)."""
    docs = [textwrap.dedent(COMPONENT.format(i=i, j=(i * 7 + 3) % count)) for i in range(count)]
    return "---".join(docs)


def big_org() -> dict[str, str]:
    # More documents than a batch (1,500), so that the child sends several.
    files = dict(ORG)
    files["all.yaml"] = files["all.yaml"].replace(
        "[./org.yaml, ./services.yaml]", "[./org.yaml, ./services.yaml, ./many.yaml, ./bad.yaml]"
    )
    files["many.yaml"] = many(3200)
    files["bad.yaml"] = BROKEN
    return files


def served(catalog: Any) -> dict[str, Any]:
    """Every served entity by ref, without what is random (uid, and the etag that hashes it)."""
    out = {}
    for entity in catalog.get("/entities"):
        entity = copy.deepcopy(entity)
        meta = entity["metadata"]
        meta.pop("uid")
        meta.pop("etag")
        out[f"{entity['kind']}:{meta.get('namespace', 'default')}/{meta['name']}".lower()] = entity
    return out


def in_this_process_is_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Walks in the test's process fail: only the child (a fresh interpreter) can walk."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("walked in the server's process")

    monkeypatch.setattr(Walker, "walk", refuse)


def test_a_large_root_walked_apart_gives_the_same_catalog(
    make_catalog: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files = big_org()
    # The same files walked in this process, into a database of their own.
    here = tmp_path / "here"
    write_files(here, files)
    cfg = load_config(
        [],
        env={},
        extra={
            "backend": {"database": f"sqlite:///{tmp_path / 'here.sqlite'}"},
            "catalog": {
                "rules": [{"allow": ALL_KINDS}],
                "locations": [{"type": "file", "target": str(here / "all.yaml")}],
                "processingInterval": False,
            },
        },
    )
    from greenroom.catalog.plugin import service

    reference_context = create_context(cfg)
    reference = service(reference_context).refresh()
    assert reference.written == 3200 + 7  # the components, ORG's five, two Locations

    monkeypatch.setattr(apart, "MIN_BYTES", 0)
    catalog = make_catalog(files)
    with monkeypatch.context() as patch:
        in_this_process_is_forbidden(patch)
        summary = catalog.refresh()
    assert summary.written == reference.written
    # The child is gone, and so is the resource tracker that spawning it started (12 MiB).
    children = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-a"], capture_output=True, text=True
    ).stdout
    assert children == "", children
    assert summary.stitched == reference.stitched
    assert sorted(p.text() for p in summary.problems) == sorted(
        p.text().replace(str(here), str(catalog.root)) for p in reference.problems
    )
    got = served(catalog)
    assert len(got) == 3200 + 7
    billing = got["component:default/billing"]
    assert {(r["type"], r["targetRef"]) for r in billing["relations"]} >= {
        ("ownedBy", "group:default/platform"),
        ("providesApi", "api:default/billing-api"),
    }
    assert "openapi: 3.0.0" in got["api:default/billing-api"]["spec"]["definition"]

    from fastapi.testclient import TestClient

    from greenroom.app import create_app

    with TestClient(create_app(reference_context, background=False)) as client:
        expected = {}
        for entity in client.get("/api/catalog/entities").json():
            meta = entity["metadata"]
            meta.pop("uid")
            meta.pop("etag")
            key = f"{entity['kind']}:{meta.get('namespace', 'default')}/{meta['name']}".lower()
            expected[key] = entity

    def comparable(entities: dict[str, Any], root: Path) -> str:
        """The catalog with the folder's path left out (the generated Location's name is a
        hash of it)."""
        import json

        kept = {
            k: v for k, v in entities.items() if not k.startswith("location:default/generated-")
        }
        return json.dumps(kept, sort_keys=True).replace(str(root), "<root>")

    assert comparable(got, catalog.root) == comparable(expected, here)

    def search_rows_of(context: Any, root: Path) -> list[str]:
        """Every search row (filters and facets answer from them) but the random uids; the
        walk apart computes most of them in its process, the writer the rest."""
        import json

        from greenroom.catalog.tables import search

        with context.engine.connect() as conn:
            rows = conn.execute(
                sa.select(search.c.ref, search.c.key, search.c.value, search.c.original_value)
                .where(search.c.key != "metadata.uid")
                .where(~search.c.ref.startswith("location:default/generated-"))
            ).all()
        text = [json.dumps(list(row)) for row in rows]
        return sorted(
            t.replace(str(root), "<root>").replace(str(root).lower(), "<root>") for t in text
        )

    apart_rows = search_rows_of(catalog.context, catalog.root)
    assert len(apart_rows) > 3200 * 10
    assert apart_rows == search_rows_of(reference_context, here)
    reference_again = service(reference_context).refresh()
    reference_context.engine.dispose()

    # A second pass is a refresh, walked here (it skips unchanged documents before parsing
    # them: not worth a process), and skips what the walk apart stored, as after a walk here.
    root = catalog.service.roots()[0]
    assert not apart.worth_a_process(catalog.context, root)
    again = catalog.refresh()
    assert (again.written, again.unchanged) == (0, reference_again.unchanged)
    assert reference_again.unchanged > 3200


def test_a_conflict_found_while_walking_apart_lands_on_the_location(
    make_catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer finds conflicts with other roots before the child has sent its Locations;
    they are attached when it does."""
    files = {
        "first.yaml": textwrap.dedent(COMPONENT.format(i=5, j=6)),
        "second.yaml": many(40),
    }
    catalog = make_catalog(files, locations=[])
    first, second = (str(catalog.root / name) for name in ("first.yaml", "second.yaml"))
    catalog = make_catalog(
        files,
        locations=[{"type": "file", "target": first}, {"type": "file", "target": second}],
    )
    service = catalog.service
    service.refresh([r for r in service.roots() if r.target == first])  # svc-5 is the first's
    monkeypatch.setattr(apart, "MIN_BYTES", os.path.getsize(second))  # the second only
    with monkeypatch.context() as patch:
        calls: list[str] = []
        original = apart.ProcessWalker.walk

        def spy(self: Any, root: Any, *args: Any) -> Any:
            calls.append(root.target)
            return original(self, root, *args)

        patch.setattr(apart.ProcessWalker, "walk", spy)
        summary = catalog.refresh()
    assert calls == [second]
    conflicts = [p.text() for p in summary.problems if "conflicting entityRef" in p.text()]
    assert len(conflicts) == 1 and "component:default/svc-5" in conflicts[0], conflicts
    locations = catalog.get("/entities", params={"filter": "kind=location"})
    messages = {
        loc["spec"]["target"]: " ".join(
            i["message"] for i in loc.get("status", {}).get("items", [])
        )
        for loc in locations
    }
    assert "conflicting entityRef component:default/svc-5" in messages[second], messages
    assert catalog.entity("component", "svc-39")["metadata"]["title"] == "Service 39"


def test_a_root_with_plugins_given_by_the_caller_is_walked_here(make_catalog: Any) -> None:
    """Another process cannot load plugins that were handed to this one: no walk apart."""

    class Extra:
        pass

    catalog = make_catalog(ORG, plugins=(Extra(),))
    root = catalog.service.roots()[0]
    assert not catalog.context.rebuildable
    assert not apart.worth_a_process(catalog.context, root)


def test_an_in_memory_database_is_walked_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child process would open an empty in-memory database of its own."""
    monkeypatch.setattr(apart, "MIN_BYTES", 0)
    write_files(tmp_path, {"all.yaml": many(3)})
    cfg = load_config(
        [],
        env={},
        extra={
            "backend": {"database": "sqlite://"},
            "catalog": {"locations": [{"type": "file", "target": str(tmp_path / "all.yaml")}]},
        },
    )
    context = create_context(cfg)
    from greenroom.catalog.plugin import service

    root = service(context).roots()[0]
    assert context.rebuildable
    assert not apart.worth_a_process(context, root)
    context.engine.dispose()


def deep(name: str, levels: int, *, valid: bool = True) -> str:
    """A component with a field nested ``levels`` deep (without an owner: invalid)."""
    owner = "owner: platform, " if valid else ""
    return (
        f"apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {{name: {name}}}\n"
        f"spec: {{type: service, lifecycle: production, {owner}x: {'[' * levels}{']' * levels}}}\n"
    )


@pytest.mark.parametrize("walked_apart", [False, True])
def test_an_entity_nested_too_deep_fails_alone(
    make_catalog: Any, monkeypatch: pytest.MonkeyPatch, walked_apart: bool
) -> None:
    """Too deep to encode as JSON (about 250 levels), or to pass to the writer's process when
    it failed anyway: that entity fails with a problem, the rest of the root is stored. Both
    took the whole pass down (and a walk apart failed every pass after its first batch)."""
    if walked_apart:
        monkeypatch.setattr(apart, "MIN_BYTES", 0)
    docs = [many(1600), deep("deep-valid", 300), deep("deep-invalid", 700, valid=False)]
    catalog = make_catalog({"all.yaml": "---\n".join(docs)})
    with monkeypatch.context() as patch:
        if walked_apart:
            in_this_process_is_forbidden(patch)

            def no_terminate(*_args: Any) -> None:
                raise AssertionError("a child that finished is left to exit by itself")

            import multiprocessing.process

            patch.setattr(multiprocessing.process.BaseProcess, "terminate", no_terminate)
        summary = catalog.refresh()
    assert catalog.entity("component", "svc-1599")["metadata"]["title"] == "Service 1599"
    assert catalog.status("component", "deep-valid") == 404
    assert catalog.status("component", "deep-invalid") == 404
    texts = [p.text() for p in summary.problems]
    assert any("deep-valid" in t and "cannot be stored" in t for t in texts), texts
    assert any("deep-invalid" in t for t in texts), texts
    assert summary.written == 1600 + 1  # and the root's Location


def test_closing_the_parser_does_not_wait_for_a_walk_apart() -> None:
    """Stopping multiprocessing's resource tracker waits for every process that inherited it:
    a small root's pass closing the parser's pool would have waited for another root's walk
    apart to end (its lease unrenewed meanwhile). The tracker stops after the last of them."""
    import multiprocessing
    import time

    from greenroom.catalog.ingest.parsing import Parser

    spawn = multiprocessing.get_context("spawn")
    with Parser.child():
        walking = spawn.Process(target=time.sleep, args=(6,))  # stands for a walk's child
        walking.start()
        try:
            Parser(workers=1, min_group=1).submit([(0, 0, "a: 1\n")])()
            start = time.monotonic()
            Parser.close()
            elapsed = time.monotonic() - start
        finally:
            walking.terminate()
            walking.join()
    assert elapsed < 3, elapsed


def test_a_small_root_that_names_large_files_is_walked_apart(
    make_catalog: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The usual layout: a small catalog-info.yaml whose Location lists the files. Their size
    counts (one level down, inside the root's folder; a file elsewhere does not)."""
    files = big_org()
    catalog = make_catalog(files)
    root = catalog.service.roots()[0]
    named = len(files["many.yaml"])
    assert len(files["all.yaml"]) < named // 100
    monkeypatch.setattr(apart, "MIN_BYTES", named)
    assert apart.worth_a_process(catalog.context, root)
    monkeypatch.setattr(apart, "MIN_BYTES", named * 2)
    assert not apart.worth_a_process(catalog.context, root)

    outside = tmp_path / "outside.yaml"
    outside.write_text(many(400))
    (catalog.root / "all.yaml").write_text(
        "apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata: {name: root}\n"
        f"spec: {{targets: [{outside}, ./org.yaml]}}\n"
    )
    monkeypatch.setattr(apart, "MIN_BYTES", len(many(400)) // 2)
    assert not apart.worth_a_process(catalog.context, root)


def test_sizing_a_root_does_not_parse_a_file_of_entities(
    make_catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a small file that mentions a Location is parsed to find the files it names: a root
    of 1,000 entities (1 MB) was parsed once more just to choose where to walk it (0.3 s)."""

    def refuse(_text: str) -> Any:
        raise AssertionError("parsed to size the root")

    catalog = make_catalog({"all.yaml": many(40)})
    monkeypatch.setattr(apart, "parse_documents", refuse)
    assert not apart.worth_a_process(catalog.context, catalog.service.roots()[0])
    (catalog.root / "all.yaml").write_text(many(400))  # over 64 KiB: not even read
    assert not apart.worth_a_process(catalog.context, catalog.service.roots()[0])


def assert_stored_as_stitched_afresh(catalog: Any) -> None:
    """Every stored final entity, etag and search row is what a full stitch from the processed
    entity and the relations table gives now (rows compared with their multiplicity)."""
    import orjson
    import sqlalchemy as sa

    from greenroom.catalog import stitch
    from greenroom.catalog.search_rows import search_rows
    from greenroom.catalog.tables import entities, search

    with catalog.context.engine.connect() as conn:
        stored_rows = sorted(
            tuple(row)
            for row in conn.execute(sa.select(*(search.c[name] for name in stitch.SEARCH_COLUMNS)))
        )
        rows = conn.execute(
            sa.select(*stitch.STITCHED_FROM, entities.c.final).where(entities.c.final.is_not(None))
        ).all()
        rels = stitch._relations_by_source(conn, [row.ref for row in rows])
    expected_rows = []
    for row in rows:
        final, etag = stitch._final(row, rels.get(row.ref, set()))
        assert (orjson.loads(row.final), row.etag) == (final, etag), row.ref
        expected_rows.extend(search_rows(row.ref, final, row.id))
    assert stored_rows == sorted(expected_rows)


@pytest.mark.parametrize("walked_apart", [False, True])
def test_stitched_peers_are_as_a_full_stitch_would_make_them(
    make_catalog: Any, monkeypatch: pytest.MonkeyPatch, walked_apart: bool
) -> None:
    """Peers stitched at the end of a root get only their relations replaced, starting from
    their stored final entity, and their search rows (which hold no relation) are kept:
    after a first load (peers only gain relations) and after a refresh in which some lose
    relations and others gain them, every final entity and search row must be exactly what a
    full stitch writes, whichever process walked them."""
    if walked_apart:
        monkeypatch.setattr(apart, "MIN_BYTES", 0)
    files = big_org()
    catalog = make_catalog(files)
    summary = catalog.refresh()
    assert summary.stitched > 100  # peers: components depending on ones written before them
    assert_stored_as_stitched_afresh(catalog)
    before = relations(catalog.entity("component", "svc-3"))
    assert ("dependencyOf", "component:default/svc-0") in before

    # Every component now depends on the one after it: svc-3 loses its dependents and gains
    # svc-2; the group gains nothing, the users nothing.
    docs = [textwrap.dedent(COMPONENT.format(i=i, j=(i + 1) % 3200)) for i in range(3200)]
    write_files(catalog.root, {"many.yaml": "---".join(docs)})
    summary = catalog.refresh()
    assert summary.stitched > 3000
    assert relations(catalog.entity("component", "svc-3")) >= {
        ("dependencyOf", "component:default/svc-2"),
        ("dependsOn", "component:default/svc-4"),
    }
    assert ("dependencyOf", "component:default/svc-0") not in relations(
        catalog.entity("component", "svc-3")
    )
    assert_stored_as_stitched_afresh(catalog)


def test_sizing_never_reads_what_is_not_a_regular_file(
    make_catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIFO as the root (or named by it) would block the read that sizes it, and /dev/zero
    would fill memory: sizing looks at regular files only; the walk reports the rest."""
    catalog = make_catalog({"all.yaml": many(3)})
    fifo = catalog.root / "pipe.yaml"
    os.mkfifo(fifo)
    (catalog.root / "all.yaml").write_text(
        "apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata: {name: root}\n"
        "spec: {targets: [./pipe.yaml, /dev/zero]}\n"
    )
    monkeypatch.setattr(apart, "MIN_BYTES", 10**9)
    root = catalog.service.roots()[0]
    assert not apart.worth_a_process(catalog.context, root)  # returns: nothing was read
    from greenroom.contracts import RootLocation

    for target in (str(fifo), "/dev/zero"):
        assert not apart.worth_a_process(catalog.context, RootLocation("file", target))


def test_a_location_target_with_a_nul_character_is_a_problem_not_a_failed_pass(
    make_catalog: Any,
) -> None:
    """The system refuses a path holding NUL with a ValueError: it failed the pass, every
    pass, and left the root's lease held until it expired."""
    import sqlalchemy as sa

    from greenroom.catalog.tables import roots

    files = {
        "all.yaml": "apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata: {name: root}\n"
        'spec: {targets: ["./a\\0b.yaml", ./ok.yaml]}\n',
        "ok.yaml": many(2),
    }
    catalog = make_catalog(files)
    summary = catalog.refresh()
    assert catalog.status("component", "svc-1") == 200
    assert any("NUL character" in p.text() for p in summary.problems), summary.problems
    with catalog.context.engine.connect() as conn:
        owners = conn.execute(sa.select(roots.c.lease_owner)).scalars().all()
    assert owners and all(owner is None for owner in owners), owners


def test_a_root_whose_first_pass_found_nothing_is_still_walked_apart_later(
    make_catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pass writes the root's generated Location: that one does not make a refresh."""
    catalog = make_catalog({"other.yaml": many(2)})
    monkeypatch.setattr(apart, "MIN_BYTES", 1000)
    root = catalog.service.roots()[0]
    (catalog.root / "all.yaml").unlink(missing_ok=True)
    catalog.refresh()  # the file is not there yet: only the root's Location is written
    (catalog.root / "all.yaml").write_text(many(100))
    assert apart.worth_a_process(catalog.context, root)
    catalog.refresh()
    assert not apart.worth_a_process(catalog.context, root)  # now it is a refresh
