"""Ingestion end to end on a real database: files in, served entities and problems out."""

from __future__ import annotations

import textwrap
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from greenroom.catalog.ingest.engine import PassSummary
from greenroom.catalog.leases import Leases
from greenroom.catalog.tables import entities, roots
from tests.catalog.indexes import missing_deferred

ORG = {
    "all.yaml": """
        apiVersion: backstage.io/v1alpha1
        kind: Location
        metadata: {name: root}
        spec:
          targets: [./org.yaml, ./services.yaml]
        """,
    "org.yaml": """
        apiVersion: backstage.io/v1alpha1
        kind: Group
        metadata: {name: platform}
        spec: {type: team, children: []}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: User
        metadata: {name: ada}
        spec: {memberOf: [platform]}
        """,
    "services.yaml": """
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: billing, tags: [python]}
        spec:
          type: service
          lifecycle: production
          owner: platform
          providesApis: [billing-api]
          dependsOn: [resource:billing-db]
        ---
        apiVersion: backstage.io/v1alpha1
        kind: API
        metadata: {name: billing-api}
        spec:
          type: openapi
          lifecycle: production
          owner: platform
          definition:
            $text: ./billing.openapi.yaml
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Resource
        metadata: {name: billing-db}
        spec: {type: database, owner: user:ada}
        """,
    "billing.openapi.yaml": """
        openapi: 3.0.0
        info: {title: Billing, version: 1.0.0}
        paths: {}
        """,
}


def relations(entity: dict[str, Any]) -> set[tuple[str, str]]:
    return {(r["type"], r["targetRef"]) for r in entity["relations"]}


def test_relations_come_out_in_both_directions(make_catalog: Any) -> None:
    catalog = make_catalog(ORG)
    catalog.refresh()
    billing = catalog.entity("component", "billing")
    assert relations(billing) == {
        ("ownedBy", "group:default/platform"),
        ("providesApi", "api:default/billing-api"),
        ("dependsOn", "resource:default/billing-db"),
    }
    assert ("ownerOf", "component:default/billing") in relations(
        catalog.entity("group", "platform")
    )
    assert ("hasMember", "user:default/ada") in relations(catalog.entity("group", "platform"))
    assert ("memberOf", "group:default/platform") in relations(catalog.entity("user", "ada"))
    assert relations(catalog.entity("resource", "billing-db")) == {
        ("ownedBy", "user:default/ada"),
        ("dependencyOf", "component:default/billing"),
    }
    assert ("apiProvidedBy", "component:default/billing") in relations(
        catalog.entity("api", "billing-api")
    )


def test_relative_text_placeholder_is_read_from_the_file_beside_it(make_catalog: Any) -> None:
    catalog = make_catalog(ORG)
    catalog.refresh()
    api = catalog.entity("api", "billing-api")
    assert api["spec"]["definition"].startswith("openapi: 3.0.0")


def test_served_entities_carry_uid_etag_and_location_annotations(make_catalog: Any) -> None:
    catalog = make_catalog(ORG)
    catalog.refresh()
    billing = catalog.entity("component", "billing")
    meta = billing["metadata"]
    assert meta["namespace"] == "default"
    assert meta["uid"] and meta["etag"]
    services = catalog.root / "services.yaml"
    assert meta["annotations"]["backstage.io/managed-by-location"] == f"file:{services}"
    assert meta["annotations"]["backstage.io/managed-by-origin-location"] == (
        f"file:{catalog.root / 'all.yaml'}"
    )


def test_a_second_pass_over_unchanged_files_writes_nothing(make_catalog: Any) -> None:
    catalog = make_catalog(ORG)
    first = catalog.refresh()
    assert first.written > 0
    before = catalog.entity("component", "billing")
    second = catalog.refresh()
    assert second.written == 0 and second.stitched == 0
    assert catalog.entity("component", "billing") == before


def test_a_changed_owner_moves_the_reverse_relation(make_catalog: Any) -> None:
    files = dict(ORG)
    files["org.yaml"] += """
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Group
        metadata: {name: payments}
        spec: {type: team, children: []}
        """
    catalog = make_catalog(files)
    catalog.refresh()
    services = catalog.root / "services.yaml"
    services.write_text(
        services.read_text().replace(
            "owner: platform\n  providesApis", "owner: payments\n  providesApis"
        )
    )
    catalog.refresh()
    assert ("ownedBy", "group:default/payments") in relations(
        catalog.entity("component", "billing")
    )
    assert ("ownerOf", "component:default/billing") in relations(
        catalog.entity("group", "payments")
    )
    assert ("ownerOf", "component:default/billing") not in relations(
        catalog.entity("group", "platform")
    )


def test_an_entity_no_longer_produced_becomes_an_orphan(make_catalog: Any) -> None:
    catalog = make_catalog(ORG, config={"catalog": {"orphanStrategy": "keep"}})
    catalog.refresh()
    services = catalog.root / "services.yaml"
    services.write_text(services.read_text().split("---")[0])
    catalog.refresh()
    orphan = catalog.entity("resource", "billing-db")
    assert orphan["metadata"]["annotations"]["backstage.io/orphan"] == "true"
    assert (
        "backstage.io/orphan"
        not in catalog.entity("component", "billing")["metadata"]["annotations"]
    )


def test_orphan_strategy_delete_removes_them(make_catalog: Any) -> None:
    catalog = make_catalog(ORG)  # delete is the default, as in Backstage
    catalog.refresh()
    services = catalog.root / "services.yaml"
    services.write_text(services.read_text().split("---")[0])
    catalog.refresh()
    assert catalog.status("resource", "billing-db") == 404
    assert ("dependsOn", "resource:default/billing-db") in relations(
        catalog.entity("component", "billing")
    )
    assert search_rows_of(catalog, "resource:default/billing-db") == 0  # nothing left behind
    assert search_rows_of(catalog, "component:default/billing") > 0


def search_rows_of(catalog: Any, ref: str) -> int:
    """How many filter rows the database holds for ``ref``."""
    with catalog.context.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM catalog_search WHERE ref = :ref"), {"ref": ref}
            ).scalar_one()
        )


def test_a_file_gone_for_a_moment_keeps_its_entities(make_catalog: Any) -> None:
    catalog = make_catalog(ORG)
    catalog.refresh()
    services = catalog.root / "services.yaml"
    text = services.read_text()
    services.unlink()
    catalog.refresh()
    billing = catalog.entity("component", "billing")
    assert "backstage.io/orphan" not in billing["metadata"]["annotations"]
    root = catalog.get("/entities", params={"filter": "kind=location,metadata.name=root"})[0]
    messages = " ".join(item["message"] for item in root["status"]["items"])
    assert "services.yaml does not exist" in messages
    services.write_text(text)
    catalog.refresh()
    root = catalog.get("/entities", params={"filter": "kind=location,metadata.name=root"})[0]
    assert "status" not in root


def test_bad_documents_are_isolated_and_reported_on_the_location(make_catalog: Any) -> None:
    files = dict(ORG)
    files["services.yaml"] = (
        ORG["services.yaml"]
        + """
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: "bad name!"}
        spec: {type: service, lifecycle: production, owner: platform}
        ---
        just: [an, unclosed
        ---
        - a list
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Spaceship
        metadata: {name: enterprise}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: no-owner}
        spec: {type: service, lifecycle: production}
        """
    )
    catalog = make_catalog(files)
    catalog.refresh()
    # The good documents of the file are still served.
    assert catalog.status("component", "billing") == 200
    assert catalog.status("component", "no-owner") == 404
    root = catalog.get("/entities", params={"filter": "kind=location,metadata.name=root"})[0]
    messages = [item["message"] for item in root["status"]["items"]]
    text = "\n".join(messages)
    services = str(catalog.root / "services.yaml")
    assert f"{services}:" in text
    assert '"metadata.name" is not valid' in text and "bad name!" in text
    assert "YAML syntax error" in text
    assert "got a list" in text
    assert "spaceship:default/enterprise" in text and "not of an allowed kind" in text
    assert "component:default/no-owner" in text and '"spec.owner" is required' in text
    assert all(
        item["type"] == "backstage.io/catalog-processing" for item in root["status"]["items"]
    )
    assert all(item["level"] == "error" for item in root["status"]["items"])


def test_an_invalid_new_version_keeps_the_old_one_with_the_error_on_it(make_catalog: Any) -> None:
    catalog = make_catalog(ORG)
    catalog.refresh()
    services = catalog.root / "services.yaml"
    services.write_text(
        services.read_text().replace(
            "lifecycle: production\n  owner: platform\n  providesApis",
            "lifecycle: 42\n  owner: platform\n  providesApis",
        )
    )
    catalog.refresh()
    billing = catalog.entity("component", "billing")
    assert billing["spec"]["lifecycle"] == "production"
    assert "spec.lifecycle" in billing["status"]["items"][0]["message"]


def test_kinds_not_allowed_by_rules_are_refused(make_catalog: Any) -> None:
    catalog = make_catalog(
        ORG, config={"catalog": {"rules": [{"allow": ["Component", "Location"]}]}}
    )
    catalog.refresh()
    assert catalog.status("component", "billing") == 200
    assert catalog.status("group", "platform") == 404
    root = catalog.get("/entities", params={"filter": "kind=location,metadata.name=root"})[0]
    assert any(
        "not of an allowed kind" in i["message"] and "group:default/platform" in i["message"]
        for i in root["status"]["items"]
    )


def test_text_placeholder_cannot_escape_the_location_folder(
    make_catalog: Any, tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_text("s3cret")
    files = {
        "all.yaml": """
            apiVersion: backstage.io/v1alpha1
            kind: API
            metadata: {name: sneaky}
            spec:
              type: openapi
              lifecycle: production
              owner: platform
              definition: {$text: ../secret.txt}
            """
    }
    catalog = make_catalog(files)
    catalog.refresh()
    assert catalog.status("api", "sneaky") == 404
    generated = catalog.get("/entities", params={"filter": "kind=location"})[0]
    text = " ".join(i["message"] for i in generated["status"]["items"])
    assert "outside the location's folder" in text and "s3cret" not in text


def test_location_cycles_are_reported_and_stop(make_catalog: Any) -> None:
    files = {
        "all.yaml": """
            apiVersion: backstage.io/v1alpha1
            kind: Location
            metadata: {name: a}
            spec: {targets: [./b.yaml]}
            """,
        "b.yaml": """
            apiVersion: backstage.io/v1alpha1
            kind: Location
            metadata: {name: b}
            spec: {targets: [./all.yaml]}
            """,
    }
    catalog = make_catalog(files)
    catalog.refresh()
    b = catalog.entity("location", "b")
    assert "Location cycle" in b["status"]["items"][0]["message"]


def test_two_locations_claiming_one_entity_first_keeps_it(make_catalog: Any) -> None:
    component = """
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: shared, description: %s}
        spec: {type: service, lifecycle: production, owner: platform}
        """
    catalog = make_catalog({"one.yaml": component % "first", "two.yaml": component % "second"})
    catalog = make_catalog(
        None,
        locations=[
            {"type": "file", "target": str(catalog.root / "one.yaml")},
            {"type": "file", "target": str(catalog.root / "two.yaml")},
        ],
    )
    catalog.refresh()
    catalog.refresh()
    assert catalog.entity("component", "shared")["metadata"]["description"] == "first"
    locations = catalog.get("/entities", params={"filter": "kind=location"})
    conflicts = [i for loc in locations for i in loc.get("status", {}).get("items", [])]
    assert len(conflicts) == 1 and conflicts[0]["error"]["name"] == "ConflictError"


def test_rows_are_written_in_batches_not_per_entity(make_catalog: Any) -> None:
    many = "\n---\n".join(
        f"apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {{name: c{i}}}\n"
        f"spec: {{type: service, lifecycle: production, owner: platform}}"
        for i in range(300)
    )
    catalog = make_catalog({"all.yaml": many})
    statements: list[str] = []
    sa.event.listen(
        catalog.context.engine, "before_cursor_execute", lambda *args: statements.append(args[2])
    )
    catalog.refresh()
    with catalog.context.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(entities)).scalar() == 301
    inserts = [
        s for s in statements if s.lstrip().upper().startswith("INSERT INTO CATALOG_ENTITIES")
    ]
    assert len(inserts) < 10


def test_a_location_removed_from_config_takes_its_entities_along(
    make_catalog: Any, tmp_path: Path
) -> None:
    catalog = make_catalog(ORG)
    catalog.refresh()
    assert catalog.status("component", "billing") == 200
    later = make_catalog(None, locations=[])
    later.refresh()
    assert later.get("/entities") == []


def test_kind_namespace_and_name_are_unique_regardless_of_case(make_catalog: Any) -> None:
    files = {
        "all.yaml": """
            apiVersion: backstage.io/v1alpha1
            kind: Group
            metadata: {name: Platform}
            spec: {type: team, children: []}
            ---
            apiVersion: backstage.io/v1alpha1
            kind: group
            metadata: {name: platform}
            spec: {type: team, children: []}
            """
    }
    catalog = make_catalog(files)
    catalog.refresh()
    groups = catalog.get("/entities", params={"filter": "kind=group"})
    assert [g["metadata"]["name"] for g in groups] == ["Platform"]
    location = catalog.get("/entities", params={"filter": "kind=location"})[0]
    assert "group:default/platform" in location["status"]["items"][0]["message"]


def test_a_file_over_the_size_limit_is_refused(make_catalog: Any) -> None:
    big = ORG["org.yaml"] + "\n# " + "x" * 3000 + "\n"
    catalog = make_catalog({"all.yaml": big}, config={"catalog": {"maxFileBytes": 2000}})
    catalog.refresh()
    assert catalog.status("group", "platform") == 404
    location = catalog.get("/entities", params={"filter": "kind=location"})[0]
    assert "over the limit of 2000" in location["status"]["items"][0]["message"]


def test_the_refresh_loop_picks_up_changes(
    make_catalog: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import time

    caplog.set_level(logging.INFO, logger="greenroom.catalog.plugin")

    from fastapi.testclient import TestClient

    from greenroom.app import create_app

    catalog = make_catalog(ORG, config={"catalog": {"processingInterval": {"milliseconds": 100}}})
    with TestClient(create_app(catalog.context, background=True)) as client:
        deadline = time.monotonic() + 20
        while client.get("/api/catalog/entities/by-name/group/default/platform").status_code != 200:
            assert time.monotonic() < deadline, "the first pass never ran"
            time.sleep(0.05)
        services = catalog.root / "services.yaml"
        services.write_text(services.read_text().replace("tags: [python]", "tags: [rust]"))
        while True:
            billing = client.get("/api/catalog/entities/by-name/component/default/billing").json()
            if billing["metadata"]["tags"] == ["rust"]:
                break
            assert time.monotonic() < deadline, "the change was never picked up"
            time.sleep(0.05)
        time.sleep(0.3)  # passes that find nothing new
    # The operator sees each pass that changed something, and where its time went; the passes
    # that found nothing (every 100 ms here) say nothing.
    passes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("catalog pass")]
    assert len(passes) == 2, passes
    assert passes[0].startswith("catalog pass: 1 location(s) read, ") and " in " in passes[0]
    assert ", 1 written, " in passes[1], passes[1]


def test_an_optional_target_that_is_absent_is_no_problem(make_catalog: Any) -> None:
    files = {
        "all.yaml": """
            apiVersion: backstage.io/v1alpha1
            kind: Location
            metadata: {name: root}
            spec:
              presence: optional
              targets: [./org.yaml, ./not-there-yet.yaml]
            """,
        "org.yaml": ORG["org.yaml"],
    }
    catalog = make_catalog(files)
    catalog.refresh()
    assert catalog.status("group", "platform") == 200
    assert "status" not in catalog.entity("location", "root")


def test_batches_stitch_relations_across_each_other(
    make_catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenroom.catalog.ingest import walk

    monkeypatch.setattr(walk, "BATCH", 3)
    components = "\n---\n".join(
        f"apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {{name: c{i}}}\n"
        f"spec: {{type: service, lifecycle: production, owner: platform, "
        f"dependsOn: ['component:c{(i + 1) % 10}']}}"
        for i in range(10)
    )
    files = dict(ORG)
    files["services.yaml"] = components + "\n---\n" + textwrap.dedent(ORG["org.yaml"])
    files["all.yaml"] = ORG["all.yaml"].replace("./org.yaml, ", "")
    catalog = make_catalog(files)
    catalog.refresh()
    owned = {
        r["targetRef"]
        for r in catalog.entity("group", "platform")["relations"]
        if r["type"] == "ownerOf"
    }
    assert owned == {f"component:default/c{i}" for i in range(10)}
    c3 = relations(catalog.entity("component", "c3"))
    assert {("dependsOn", "component:default/c4"), ("dependencyOf", "component:default/c2")} <= c3


def test_a_pass_costs_in_proportion_to_what_changed(make_catalog: Any) -> None:
    many = "\n---\n".join(
        f"apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {{name: c{i}}}\n"
        f"spec: {{type: service, lifecycle: production, owner: platform}}"
        for i in range(200)
    )
    catalog = make_catalog({"all.yaml": many})
    first = catalog.refresh()
    assert first.written == 201 and first.unchanged == 0
    second = catalog.refresh()
    assert second.written == 0 and second.unchanged == 200
    path = catalog.root / "all.yaml"
    path.write_text(path.read_text().replace("name: c7}", "name: c7, title: Seven}"))
    third = catalog.refresh()
    assert third.written == 1 and third.unchanged == 199
    assert catalog.entity("component", "c7")["metadata"]["title"] == "Seven"


BAD_AND_GOOD = (
    "\n---\n".join(
        f"apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {{name: c{i}}}\n"
        f"spec: {{type: service, lifecycle: production, owner: platform}}"
        for i in range(120)
    )
    + """
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: "bad name!"}
spec: {type: service, lifecycle: production, owner: platform}
---
just: [an, unclosed
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: c5}
spec: {type: website, lifecycle: production, owner: platform}
"""
)


def test_parsing_in_a_worker_process_changes_nothing(make_catalog: Any) -> None:
    """Large files are parsed in another process; entities, errors and their lines are the
    same as when parsing here."""
    from greenroom.catalog.ingest.parsing import Parser
    from greenroom.catalog.ingest.walk import Walker

    catalog = make_catalog({"all.yaml": BAD_AND_GOOD})
    svc = catalog.service
    root = svc.roots()[0]

    def walk(parser: Parser) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
        with svc.reader() as reader:
            walker = Walker(reader, svc.validator, svc.rules, svc.processors, parser=parser)
            result, emitted = walker.walk_all(root)
        problems = [p.text() for e in result.locations.values() for p in e.problems]
        return problems, [(e.ref, e.entity) for e in emitted]

    here = walk(Parser(workers=0))
    there = walk(Parser(workers=1, min_group=1))
    assert Parser._pool is not None  # the worker process did the parsing
    assert there == here
    problems = "\n".join(here[0])
    assert "all.yaml:" in problems and "YAML syntax error" in problems
    assert "appears twice" in problems
    assert '"metadata.name" is not valid' in problems
    assert len(here[1]) == 1 + 120  # the root Location and c0..c119


def test_a_first_load_builds_the_filter_index_once_at_the_end(make_catalog: Any) -> None:
    """Into an empty catalog the (key, value) index is dropped and built after the pass; a
    pass into a catalog with entities keeps it; a missing one is rebuilt by the next pass (a
    replica that died in the middle of a first load)."""
    catalog = make_catalog({"all.yaml": BAD_AND_GOOD})
    engine = catalog.context.engine
    ingestion = catalog.service.ingestion

    def missing() -> set[str]:
        return missing_deferred(engine)

    everything = {
        "ix_catalog_search_key_value",
        "ix_catalog_relations_originating",
        "ix_catalog_relations_type_target",
        "ix_catalog_relations_source_type",
    }
    # A load that leaves them to another process's next pass (the small first load that
    # ``serve`` forks) ends without them; the next pass builds them.
    with ingestion.bulk_load(PassSummary(), build=False) as bulk:
        assert bulk and everything <= missing()
    assert everything <= missing()
    with ingestion.bulk_load(PassSummary()) as bulk:
        assert bulk and everything <= missing()
    assert not missing()
    catalog.refresh()
    with engine.connect() as conn:  # walked to their end: their next walks are refreshes
        walked = conn.execute(sa.select(roots.c.root_key, roots.c.walked_at)).all()
    assert walked and all(at is not None for _, at in walked)
    from greenroom.catalog.ingest.parsing import Parser

    assert Parser._pool is None  # the parser's worker process stops after a pass
    with ingestion.bulk_load(PassSummary()) as bulk:
        assert not bulk and not missing()
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_catalog_search_key_value")
    # While another replica walks (perhaps its own first load, which builds the indexes when
    # it ends), a pass leaves them alone; the first pass after it builds what is missing.
    other = Leases(engine, "another-replica", timedelta(seconds=60))
    assert other.claim("file:/elsewhere.yaml")
    catalog.refresh()
    assert missing() == {"ix_catalog_search_key_value"}
    other.release("file:/elsewhere.yaml", None)
    catalog.refresh()
    assert not missing()
    # A refresh under way (of a root walked to its end before) does not hold them back: with
    # many roots and several replicas some replica nearly always holds a lease.
    assert other.claim("file:/elsewhere.yaml")
    other.release("file:/elsewhere.yaml", None, walked=True)
    assert other.claim("file:/elsewhere.yaml")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_catalog_search_key_value")
    assert other.any_held() and not other.first_walk_held()
    catalog.refresh()
    assert not missing()
    page = catalog.get("/entities/by-query", params={"filter": "spec.type=website"})
    assert [e["metadata"]["name"] for e in page["items"]] == []  # the duplicate c5 lost
    assert (
        catalog.get("/entities/by-query", params={"filter": "kind=component"})["totalItems"] == 120
    )


def test_a_stitch_of_peers_that_changes_nothing_leaves_the_generation(make_catalog: Any) -> None:
    """Marks on the stitch queue, and taking them off, change no answer of the API: when the
    peers they name come out of the stitch as they were, the generation (which cached facets
    are keyed by) stays."""
    from greenroom import db
    from greenroom.catalog.stitch import mark_for_stitch
    from greenroom.catalog.tables import stitch_queue

    catalog = make_catalog(ORG)
    catalog.refresh()
    engine = catalog.context.engine
    with engine.connect() as conn:
        refs = list(conn.execute(sa.select(entities.c.ref).limit(3)).scalars())
        before = db.read_generation(conn)
    with db.write_transaction(engine, durable=False) as conn:
        mark_for_stitch(conn, refs)
    summary = PassSummary()
    catalog.service.ingestion.stitch_pending(summary)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(stitch_queue)).scalar() == 0
        assert db.read_generation(conn) == before
    assert summary.stitched == 0 and len(refs) == 3


def test_a_pass_of_due_roots_ends_with_no_processing_interval(make_catalog: Any) -> None:
    """With ``processingInterval: false`` a root released after its walk is due again at once:
    ``run_due`` (the refresh loop's pass, which a plugin may call) walks each root once and
    ends, instead of walking the same root for ever."""
    catalog = make_catalog({"all.yaml": BAD_AND_GOOD})
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(catalog.service.run_due()), daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "run_due did not end"
    assert outcome[0].roots == 1 and outcome[0].written > 0
