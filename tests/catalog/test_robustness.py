"""Hostile or broken input, and the failures a review found: nothing stored is lost, nothing
outside the catalog is read, and a bad request is a 400."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from greenroom.catalog.ingest.reading import AllowRule, Reader, ReadError
from tests.catalog.test_ingestion import ORG
from tests.conftest import write_files
from tests.httpserver import base_url, serve_folder

GROUP = """
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {{name: {name}}}
spec: {{type: team, children: []}}
"""


def location_messages(catalog: Any, name: str | None = None) -> str:
    params = {"filter": "kind=location" + (f",metadata.name={name}" if name else "")}
    return " ".join(
        item["message"]
        for loc in catalog.get("/entities", params=params)
        for item in loc.get("status", {}).get("items", [])
    )


def test_an_error_clears_once_the_source_recovers(make_catalog: Any) -> None:
    catalog = make_catalog(ORG)
    catalog.refresh()
    definition = catalog.root / "billing.openapi.yaml"
    moved = catalog.root / "elsewhere.yaml"
    definition.rename(moved)
    catalog.refresh()
    assert "status" in catalog.entity("api", "billing-api")
    moved.rename(definition)
    catalog.refresh()
    assert "status" not in catalog.entity("api", "billing-api")


def test_a_typo_in_a_document_keeps_its_entity(make_catalog: Any) -> None:
    catalog = make_catalog(ORG)
    catalog.refresh()
    services = catalog.root / "services.yaml"
    services.write_text(services.read_text().replace("apiVersion", "apiVersio", 1))
    catalog.refresh()
    assert catalog.status("component", "billing") == 200
    assert "apiVersion" in location_messages(catalog, "root")
    org = catalog.root / "org.yaml"
    org.write_text(org.read_text().replace("spec: {memberOf: [platform]}", "spec: {memberOf: [}"))
    catalog.refresh()
    assert catalog.status("user", "ada") == 200
    assert "YAML syntax error" in location_messages(catalog, "root")


def test_a_glob_matching_nothing_keeps_what_it_produced(make_catalog: Any) -> None:
    catalog = make_catalog(ORG)
    catalog = make_catalog(
        None, locations=[{"type": "file", "target": str(catalog.root / "sub" / "*.yaml")}]
    )
    write_files(catalog.root / "sub", {"org.yaml": ORG["org.yaml"]})
    catalog.refresh()
    assert catalog.status("group", "platform") == 200
    (catalog.root / "sub").rename(catalog.root / "renamed")
    catalog.refresh()
    assert catalog.status("group", "platform") == 200
    assert "matches no file" in location_messages(catalog)


def test_a_recursive_glob_reads_each_file_once_and_skips_links_and_hidden_folders(
    make_catalog: Any,
) -> None:
    """``**`` finds files at any depth, in order, but does not descend into symlinked folders
    (two links back up the tree made the standard library's glob walk exponentially many
    paths: the pass never ended) nor into folders whose names start with a dot (``.git``),
    as Backstage's glob does; a dot written out in the pattern is matched."""
    catalog = make_catalog(None)
    teams = catalog.root / "teams"
    write_files(
        teams,
        {
            "a/catalog-info.yaml": ORG["org.yaml"],
            "b/deep/catalog-info.yaml": ORG["services.yaml"],
            "b/deep/billing.openapi.yaml": ORG["billing.openapi.yaml"],
            ".git/catalog-info.yaml": GROUP.format(name="from-git"),
            "c/.backstage/catalog-info.yaml": GROUP.format(name="dotted"),
        },
    )
    # One link back up: the standard library's glob matched a/catalog-info.yaml 41 times
    # (a second one, and its walk never ended).
    (teams / "a" / "up").symlink_to("..")
    catalog = make_catalog(
        None, locations=[{"type": "file", "target": str(teams / "**" / "catalog-info.yaml")}]
    )
    summary = catalog.refresh()
    assert summary.problems == []
    assert catalog.status("group", "platform") == 200
    assert catalog.status("component", "billing") == 200
    assert catalog.status("group", "from-git") == 404
    assert catalog.status("group", "dotted") == 404
    annotations = catalog.entity("group", "platform")["metadata"]["annotations"]
    assert annotations["backstage.io/managed-by-location"] == (
        f"file:{teams / 'a' / 'catalog-info.yaml'}"
    )

    dotted = str(teams / "**" / ".backstage" / "*.yaml")
    catalog = make_catalog(None, locations=[{"type": "file", "target": dotted}])
    catalog.refresh()
    assert catalog.status("group", "dotted") == 200
    (teams / ".top.yaml").write_text("")
    assert Reader.expand_file_target(str(teams / ".*.yaml")) == [str(teams / ".top.yaml")]
    assert Reader.expand_file_target(str(teams / "**") + "/") == []
    assert Reader.expand_file_target(str(teams / "**")) == [
        str(teams / "a" / "catalog-info.yaml"),
        str(teams / "b" / "deep" / "billing.openapi.yaml"),
        str(teams / "b" / "deep" / "catalog-info.yaml"),
    ]


def test_a_url_location_cannot_lead_to_files_on_the_server(
    make_catalog: Any, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text(ORG["org.yaml"].replace("{name: platform}", "{name: stolen}"))
    remote = tmp_path / "remote"
    write_files(
        remote,
        {
            "catalog-info.yaml": f"""
        apiVersion: backstage.io/v1alpha1
        kind: Location
        metadata: {{name: sneaky}}
        spec: {{type: file, target: {secret}}}
        """
        },
    )
    with serve_folder(remote) as server:
        url = base_url(server)
        catalog = make_catalog(
            config={"backend": {"reading": {"allow": [{"host": url.split("://")[1]}]}}},
            locations=[{"type": "url", "target": f"{url}/catalog-info.yaml"}],
        )
        catalog.refresh()
    assert catalog.status("group", "stolen") == 404
    assert "cannot name file targets" in location_messages(catalog, "sneaky")


def test_a_symlink_cannot_carry_text_outside_the_folder(make_catalog: Any, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s3cret")
    files = {
        "all.yaml": """
            apiVersion: backstage.io/v1alpha1
            kind: API
            metadata: {name: linked}
            spec:
              type: openapi
              lifecycle: production
              owner: platform
              definition: {$text: ./docs/secret.txt}
            """
    }
    catalog = make_catalog(files)
    os.symlink(outside, catalog.root / "docs")
    catalog.refresh()
    assert catalog.status("api", "linked") == 404
    assert "outside the location's folder" in location_messages(catalog)


def test_special_files_are_not_read() -> None:
    with Reader() as reader:
        with pytest.raises(ReadError, match="not a regular file"):
            reader.read("file:/dev/zero")
        with pytest.raises(ReadError, match="not a regular file"):
            list(reader.read_lines("file:/dev/zero"))


def test_allow_list_paths_cannot_be_escaped_with_encoded_dots() -> None:
    rule = AllowRule("example.com", ("/pub",))
    assert rule.matches("https://example.com/pub/a.yaml")
    assert not rule.matches("https://example.com/pub/%2e%2e/private/a.yaml")
    assert not rule.matches("https://example.com/public/a.yaml")
    assert not rule.matches("https://example.com.evil.org/pub/a.yaml")
    assert not rule.matches("https://example.com@evil.org/pub/a.yaml")


def test_validate_entity_refuses_what_ingestion_refuses(make_catalog: Any) -> None:
    catalog = make_catalog()
    entity = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "x"},
        "spec": {"type": "service", "lifecycle": "production", "owner": "a", "dependsOn": ["lib"]},
    }
    response = catalog.client.post(
        "/api/catalog/validate-entity", json={"entity": entity, "location": "url:x"}
    )
    assert response.status_code == 400
    assert "missing or empty kind" in response.json()["errors"][0]["message"]


def test_a_hostile_document_does_not_stop_the_pass(make_catalog: Any, tmp_path: Path) -> None:
    deep = "a: " + "[" * 3000 + "]" * 3000
    hostile = tmp_path / "hostile"
    write_files(
        hostile,
        {
            "all.yaml": """
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: weird}
        spec: {type: service, lifecycle: production, owner: a, 1: numeric-key}
        """
        },
    )
    (hostile / "deep.yaml").write_text(deep)
    catalog = make_catalog(ORG)
    catalog = make_catalog(
        None,
        locations=[
            {"type": "file", "target": str(hostile / "all.yaml")},
            {"type": "file", "target": str(hostile / "deep.yaml")},
            {"type": "file", "target": str(catalog.root / "all.yaml")},
        ],
    )
    catalog.refresh()
    assert catalog.status("component", "billing") == 200


def test_tampered_cursors_and_huge_numbers_are_400(make_catalog: Any) -> None:
    catalog = make_catalog(ORG)
    catalog.refresh()

    def cursor(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()

    for params in (
        {"cursor": cursor({"offset": "x"})},
        {"cursor": cursor({"filter": 5})},
        {"cursor": cursor({"offset": -3})},
        {"cursor": cursor({"order": [["a"]]})},
        {"limit": 10**19},
        {"offset": -1},
    ):
        response = catalog.client.get("/api/catalog/entities/by-query", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["name"] == "InputError"
    after = catalog.client.get("/api/catalog/entities", params={"after": cursor({"limit": 0})})
    assert after.status_code == 400


def test_by_query_limit_zero_does_not_lead_to_itself(make_catalog: Any) -> None:
    catalog = make_catalog(ORG)
    catalog.refresh()
    body = catalog.get("/entities/by-query", params={"limit": 0})
    assert body["items"] == [] and "nextCursor" not in body["pageInfo"]
    assert body["totalItems"] == 7


def test_following_the_link_header_walks_every_entity(make_catalog: Any) -> None:
    catalog = make_catalog(ORG)
    catalog.refresh()
    seen: list[str] = []
    response = catalog.client.get("/api/catalog/entities", params={"limit": 2})
    while True:
        seen += [e["metadata"]["name"] for e in response.json()]
        link = response.headers.get("link")
        if not link:
            break
        path = link[link.index("<") + 1 : link.index(">")]
        response = catalog.client.get(f"/api/catalog{path}")
    assert len(seen) == len(set(seen)) == 7


NUL_QUERIES = [
    ("/entities", {"filter": "metadata.name=a\x00b"}),
    ("/entities", {"filter": "metadata.na\x00me=a"}),
    ("/entities", {"order": "asc:metadata.na\x00me"}),
    ("/entities/by-query", {"filter": "kind=comp\x00onent"}),
    ("/entities/by-query", {"fullTextFilterTerm": "a\x00b"}),
    ("/entities/by-query", {"orderField": "metadata.na\x00me,asc"}),
    ("/entity-facets", {"facet": "spec.ty\x00pe"}),
    ("/entities/by-name/component/default/billing%00", {}),
    ("/entities/by-uid/a%00b", {}),
    ("/locations/a%00b", {}),
]
NUL_BODIES = [
    ("/entities/by-refs", {"entityRefs": ["component:default/billing\x00"]}),
    ("/refresh", {"entityRef": "component:default/billing\x00"}),
]


def test_a_nul_character_anywhere_in_a_request_is_a_400(make_catalog: Any) -> None:
    """No stored text holds NUL; PostgreSQL refuses it in any parameter, which made each of
    these a 500 there. The path and query are refused before any route; a NUL in a JSON body
    where the database refuses it. On SQLite a body with one finds nothing, as it should."""
    catalog = make_catalog(ORG)
    catalog.refresh()
    for path, params in NUL_QUERIES:
        response = catalog.client.get("/api/catalog" + path, params=params)
        assert response.status_code == 400, (path, params, response.text)
        error = response.json()["error"]
        assert error["name"] == "InputError"
        assert "NUL" in error["message"], error
    postgresql = catalog.context.engine.dialect.name == "postgresql"
    for path, body in NUL_BODIES:
        response = catalog.client.post("/api/catalog" + path, json=body)
        if postgresql:
            assert response.status_code == 400, (path, response.text)
            assert response.json()["error"]["message"] == "body: text cannot contain NUL characters"
        else:
            assert response.status_code in (200, 404), (path, response.text)
    assert catalog.entity("component", "billing")["metadata"]["name"] == "billing"


def test_an_entity_with_a_nul_character_fails_alone(make_catalog: Any) -> None:
    """YAML's "\\0" escape puts a NUL character in a value; PostgreSQL refuses NUL in text, and
    the search rows of that one entity failed the whole pass, every pass, for every entity of
    the root. Now that entity is refused with the field named, on both databases."""
    doc = (
        "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
        'metadata: {name: nul, description: "before\\0after"}\n'
        "spec: {type: service, owner: platform, lifecycle: production}\n"
        "---\n"
        "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
        "metadata: {name: fine}\n"
        "spec: {type: service, owner: platform, lifecycle: production}\n"
    )
    catalog = make_catalog({"all.yaml": doc})
    summary = catalog.refresh()
    assert catalog.status("component", "fine") == 200
    assert catalog.status("component", "nul") == 404
    texts = [p.text() for p in summary.problems]
    assert any(
        "component:default/nul cannot be stored: metadata.description contains a NUL" in t
        for t in texts
    ), texts


def test_a_relation_with_a_nul_character_fails_its_entity_alone(make_catalog: Any) -> None:
    """A plugin's processor can emit any relation; one with a NUL character (which PostgreSQL
    refuses) made the whole batch fail. Now its entity is refused, named, and the rest stored."""
    from greenroom.catalog.model.relations import Relation
    from greenroom.plugins import hookimpl

    class NulRelations:
        name = "nul-relations"
        priority = 60

        def process(self, entity: dict[str, Any], context: Any) -> dict[str, Any]:
            if entity["metadata"]["name"] == "bad":
                context.emit(Relation("component:default/bad", "dependsOn", "component:x\x00y"))
            return entity

    class Plugin:
        @hookimpl
        def greenroom_catalog_processors(self, context: Any) -> list[Any]:
            return [NulRelations()]

    doc = "\n---\n".join(
        "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
        f"metadata: {{name: {name}}}\n"
        "spec: {type: service, owner: platform, lifecycle: production}\n"
        for name in ("bad", "fine")
    )
    catalog = make_catalog({"all.yaml": doc}, plugins=(Plugin(),))
    summary = catalog.refresh()
    assert catalog.status("component", "fine") == 200
    assert catalog.status("component", "bad") == 404
    texts = [p.text() for p in summary.problems]
    assert any("component:default/bad cannot be stored: its relation" in t for t in texts), texts
    assert not any("\x00" in t for t in texts)
