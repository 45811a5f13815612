"""Greenroom against real Backstage material: the example organisation, schemas and OpenAPI.

Runs only when ``GREENROOM_COMPAT_DIR`` points at the shared compatibility folder (see its
``README.md``); the expectations are what Backstage (catalog-backend 4.0.0) serves for the same
files, as measured there.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from greenroom.app import create_app
from greenroom.config import load_config
from greenroom.context import create_context
from tests.conftest import ALL_KINDS
from tests.httpserver import base_url, serve_folder

COMPAT_ENV = os.environ.get("GREENROOM_COMPAT_DIR")
COMPAT = Path(COMPAT_ENV) if COMPAT_ENV else Path("/nonexistent-greenroom-compat")

pytestmark = [
    pytest.mark.compat,
    pytest.mark.skipif(
        not COMPAT_ENV,
        reason="GREENROOM_COMPAT_DIR is not set (point it at the shared folder of real "
        "Backstage material, e.g. /work/shared/compat)",
    ),
]

EXAMPLES_2021 = COMPAT / "backstage-backstage@0a922726-2021-05-24/packages/catalog-model/examples"
NEWER = COMPAT / "backstage-backstage"
SCHEMAS = COMPAT / "npm-@backstage+catalog-model@1.10.1/packages/catalog-model/src/schema"
TEMPLATE_SCHEMA = (
    COMPAT
    / "npm-@backstage+plugin-scaffolder-common@2.3.0/plugins/scaffolder-common/src"
    / "Template.v1beta3.schema.json"
)
OPENAPI = (
    COMPAT
    / "npm-@backstage+plugin-catalog-backend@4.0.0/plugins/catalog-backend/src/schema"
    / "openapi.spec-from-generated-router.json"
)

# What Backstage serves from the 2021 acme set (Locations aside, see below).
SERVED_COUNTS = {
    "Component": 13,
    "API": 4,
    "Group": 8,
    "User": 16,
    "System": 3,
    "Domain": 2,
    "Resource": 1,
}
# Their definitions are `$text` placeholders on github.com, which is not in backend.reading.allow.
UNREADABLE_APIS = ("spotify", "wayback-archive", "wayback-search")
NAMED_LOCATIONS = {
    "acme-corp",
    "example-apis",
    "example-components",
    "example-domains",
    "example-resources",
    "example-systems",
    "example-groups",
}

REVERSE = {
    "ownedBy": "ownerOf",
    "providesApi": "apiProvidedBy",
    "consumesApi": "apiConsumedBy",
    "dependsOn": "dependencyOf",
    "parentOf": "childOf",
    "memberOf": "hasMember",
    "partOf": "hasPart",
}
REVERSE.update({v: k for k, v in list(REVERSE.items())})

# The kind schemas of @backstage/catalog-model (and the scaffolder's Template), by $id.
SCHEMA_IDS = {
    "Component": "ComponentV1alpha1",
    "API": "ApiV1alpha1",
    "Resource": "ResourceV1alpha1",
    "System": "SystemV1alpha1",
    "Domain": "DomainV1alpha1",
    "Group": "GroupV1alpha1",
    "User": "UserV1alpha1",
    "Location": "LocationV1alpha1",
    "Template": "TemplateV1beta3",
}
SUPPORTED_KINDS = set(ALL_KINDS)


# --- helpers --------------------------------------------------------------------------------------


def ref_of(entity: dict[str, Any]) -> str:
    meta = entity["metadata"]
    return f"{entity['kind'].lower()}:{meta.get('namespace', 'default')}/{meta['name']}"


def relations(entity: dict[str, Any]) -> set[tuple[str, str]]:
    return {(r["type"], r["targetRef"]) for r in entity.get("relations", [])}


def status_items(entity: dict[str, Any]) -> list[dict[str, Any]]:
    return list((entity.get("status") or {}).get("items") or [])


def mentions(item: dict[str, Any], api: str) -> bool:
    text = f"{item.get('message', '')} {(item.get('error') or {}).get('message', '')}"
    return f"api:default/{api}" in text.lower() or f"apis/{api}-api.yaml" in text


def ingest_acme(make_catalog: Any, config: dict[str, Any] | None = None) -> Any:
    """The 2021 example organisation, ingested from a glob config location."""
    catalog = make_catalog(
        None,
        locations=[{"type": "file", "target": f"{EXAMPLES_2021}/*.yaml"}],
        config=config,
    )
    catalog.refresh()
    return catalog


@pytest.fixture
def acme(make_catalog: Any) -> Any:
    return ingest_acme(make_catalog)


def served(catalog: Any) -> dict[str, dict[str, Any]]:
    """Every served entity by ref, through the REST API."""
    items = catalog.get("/entities")
    assert isinstance(items, list)
    return {ref_of(e): e for e in items}


# --- the 2021 example organisation ----------------------------------------------------------------


def test_served_counts_per_kind_match_backstage(acme: Any) -> None:
    kinds = Counter(e["kind"] for e in acme.get("/entities", params={"fields": "kind"}))
    assert {k: n for k, n in kinds.items() if k != "Location"} == SERVED_COUNTS
    locations = {
        e["metadata"]["name"]
        for e in acme.get(
            "/entities", params={"filter": "kind=location", "fields": "metadata.name"}
        )
    }
    assert locations >= NAMED_LOCATIONS
    # The same counts through the paginated query endpoint's total.
    for kind, count in SERVED_COUNTS.items():
        page = acme.get("/entities/by-query", params={"filter": f"kind={kind}", "limit": 1})
        assert page["totalItems"] == count, kind


def test_apis_with_unreadable_definitions_are_not_served_but_their_errors_are(
    acme: Any,
) -> None:
    for name in UNREADABLE_APIS:
        assert acme.status("api", name) == 404, name
    served_apis = {
        e["metadata"]["name"]
        for e in acme.get("/entities", params={"filter": "kind=api", "fields": "metadata.name"})
    }
    assert served_apis == {"hello-world", "petstore", "streetlights", "starwars-graphql"}

    locations = acme.get("/entities", params={"filter": "kind=location"})
    for name in UNREADABLE_APIS:
        holders = [
            (loc["metadata"]["name"], item)
            for loc in locations
            for item in status_items(loc)
            if mentions(item, name)
        ]
        assert holders, f"no Location entity shows why api:default/{name} is not served"
        for location_name, item in holders:
            assert item["level"] == "error", (location_name, item)
            assert item["type"] == "backstage.io/catalog-processing", (location_name, item)
            assert item["error"]["name"] and item["error"]["message"], (location_name, item)
        # The Location that read apis/*.yaml is the natural holder.
        assert "example-apis" in {location_name for location_name, _ in holders}


def test_served_entities_carry_no_errors_except_the_failed_apis(acme: Any) -> None:
    problems = {}
    for ref, entity in served(acme).items():
        unexplained = [
            item
            for item in status_items(entity)
            if not (
                entity["kind"] == "Location"
                and any(mentions(item, name) for name in UNREADABLE_APIS)
            )
        ]
        if unexplained:
            problems[ref] = unexplained
    assert problems == {}


def test_every_relation_has_its_reverse_on_a_served_target(acme: Any) -> None:
    entities = served(acme)
    missing = []
    unknown = set()
    for ref, entity in entities.items():
        for kind, target in relations(entity):
            if kind not in REVERSE:
                unknown.add(kind)
                continue
            other = entities.get(target)
            if other is None:
                continue
            if (REVERSE[kind], ref) not in relations(other):
                missing.append(f"{ref} {kind} {target}, but not {target} {REVERSE[kind]} {ref}")
    assert not unknown, f"relation types Backstage does not emit: {sorted(unknown)}"
    assert missing == []
    # Relations point at refs Backstage's way: lower-case kind, namespace, name.
    for entity in entities.values():
        for _, target in relations(entity):
            kind, _, rest = target.partition(":")
            assert kind == kind.lower() and "/" in rest, target


def test_relations_spot_checks_from_the_example_files(acme: Any) -> None:
    e = served(acme)

    # components/artist-lookup-component.yaml: owner team-a, system, dependsOn resource.
    assert relations(e["component:default/artist-lookup"]) == {
        ("ownedBy", "group:default/team-a"),
        ("partOf", "system:default/artist-engagement-portal"),
        ("dependsOn", "resource:default/artists-db"),
    }
    # resources/artists-db-resource.yaml, and the reverse of artist-lookup's dependsOn.
    assert relations(e["resource:default/artists-db"]) == {
        ("ownedBy", "group:default/team-a"),
        ("partOf", "system:default/artist-engagement-portal"),
        ("dependencyOf", "component:default/artist-lookup"),
    }
    # components/petstore-component.yaml provides three inline-defined APIs.
    petstore = relations(e["component:default/petstore"])
    assert petstore == {
        ("ownedBy", "group:default/team-c"),
        ("providesApi", "api:default/petstore"),
        ("providesApi", "api:default/streetlights"),
        ("providesApi", "api:default/hello-world"),
    }
    assert relations(e["api:default/streetlights"]) == {
        ("ownedBy", "group:default/team-c"),
        ("apiProvidedBy", "component:default/petstore"),
    }
    # Relations to an API that is not served stay on the component, as in Backstage.
    assert relations(e["component:default/wayback-search"]) == {
        ("ownedBy", "group:default/team-a"),
        ("providesApi", "api:default/wayback-search"),
        ("consumesApi", "api:default/wayback-archive"),
    }
    # subcomponentOf is partOf/hasPart between components.
    assert ("partOf", "component:default/wayback-archive") in relations(
        e["component:default/wayback-archive-ingestion"]
    )
    assert {
        ("hasPart", "component:default/wayback-archive-ingestion"),
        ("hasPart", "component:default/wayback-archive-storage"),
        ("providesApi", "api:default/wayback-archive"),
    } <= relations(e["component:default/wayback-archive"])

    # acme/*.yaml: the group tree, from both parent and children fields.
    assert relations(e["group:default/acme-corp"]) == {
        ("parentOf", "group:default/infrastructure"),
    }
    assert relations(e["group:default/infrastructure"]) == {
        ("childOf", "group:default/acme-corp"),
        ("parentOf", "group:default/backstage"),
        ("parentOf", "group:default/boxoffice"),
    }
    assert relations(e["group:default/boxoffice"]) == {
        ("childOf", "group:default/infrastructure"),
        ("parentOf", "group:default/team-c"),
        ("parentOf", "group:default/team-d"),
    }
    # team-a: its members, what it owns; nothing from its APIs that failed processing.
    assert relations(e["group:default/team-a"]) == {
        ("childOf", "group:default/backstage"),
        ("hasMember", "user:default/breanna.davison"),
        ("hasMember", "user:default/janelle.dawe"),
        ("hasMember", "user:default/nigel.manning"),
        ("hasMember", "user:default/guest"),
        ("ownerOf", "component:default/artist-lookup"),
        ("ownerOf", "component:default/wayback-archive"),
        ("ownerOf", "component:default/wayback-archive-storage"),
        ("ownerOf", "component:default/wayback-search"),
        ("ownerOf", "component:default/www-artist"),
        ("ownerOf", "system:default/artist-engagement-portal"),
        ("ownerOf", "domain:default/artists"),
        ("ownerOf", "resource:default/artists-db"),
    }
    assert relations(e["user:default/janelle.dawe"]) == {("memberOf", "group:default/team-a")}
    assert relations(e["user:default/guest"]) == {
        ("memberOf", "group:default/team-a"),
        ("ownerOf", "component:default/playback-order"),
        ("ownerOf", "component:default/searcher"),
        ("ownerOf", "component:default/shuffle-api"),
    }
    assert relations(e["user:default/frank.tiernan"]) == {
        ("memberOf", "group:default/team-c"),
        ("ownerOf", "domain:default/playback"),
    }

    # systems/ and domains/: systems are part of domains, components part of systems.
    assert relations(e["system:default/audio-playback"]) == {
        ("ownedBy", "group:default/team-c"),
        ("partOf", "domain:default/playback"),
        ("hasPart", "component:default/playback-order"),
        ("hasPart", "component:default/playback-sdk"),
        ("hasPart", "component:default/shuffle-api"),
    }
    assert relations(e["domain:default/playback"]) == {
        ("ownedBy", "user:default/frank.tiernan"),
        ("hasPart", "system:default/audio-playback"),
        ("hasPart", "system:default/podcast"),
    }
    assert relations(e["domain:default/artists"]) == {
        ("ownedBy", "group:default/team-a"),
        ("hasPart", "system:default/artist-engagement-portal"),
    }


def test_inline_definitions_and_metadata_come_through(acme: Any) -> None:
    petstore = acme.entity("api", "petstore")
    assert petstore["spec"]["definition"].startswith('openapi: "3.0.0"')
    assert petstore["metadata"]["tags"] == ["store", "rest"]
    org = acme.entity("group", "acme-corp")
    assert org["spec"]["profile"]["displayName"] == "ACME Corp"
    assert [link["title"] for link in org["metadata"]["links"]] == ["Website", "Intranet"]
    component = acme.entity("component", "artist-lookup")
    annotations = component["metadata"]["annotations"]
    assert annotations["backstage.io/managed-by-location"] == (
        f"file:{EXAMPLES_2021}/components/artist-lookup-component.yaml"
    )
    assert annotations["backstage.io/managed-by-origin-location"] == (
        f"file:{EXAMPLES_2021}/*.yaml"
    )


# --- Backstage's JSON Schemas ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema_registry() -> Any:
    """A ``referencing`` registry of every catalog-model schema (and Template's), by ``$id``."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    files = [*sorted(SCHEMAS.rglob("*.schema.json")), TEMPLATE_SCHEMA]
    resources = []
    for file in files:
        contents = json.loads(file.read_text(encoding="utf-8"))
        resources.append(
            (contents["$id"], Resource.from_contents(contents, default_specification=DRAFT7))
        )
    registry = Registry().with_resources(resources)
    assert "Entity" in registry and "common" in registry
    return registry


def schema_errors(registry: Any, entity: dict[str, Any]) -> list[str]:
    from jsonschema import Draft7Validator

    schema_id = SCHEMA_IDS[entity["kind"]]
    if entity["kind"] == "API" and (entity.get("spec") or {}).get("type") == "mcp-server":
        schema_id = "ApiV1alpha1McpServer"
    out = []
    for sid in ("Entity", schema_id):
        validator = Draft7Validator(registry.contents(sid), registry=registry)
        for err in validator.iter_errors(entity):
            where = "/".join(map(str, err.absolute_path)) or "<root>"
            out.append(f"{sid}: {where}: {err.message}")
    return out


def test_backstage_schema_registry_resolves_references(schema_registry: Any) -> None:
    bad = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "x"},
        "spec": {"type": "service", "lifecycle": "production", "owner": "a"},
        "relations": [{"type": "owned by", "targetRef": "group:default/a"}],
        "status": {"items": [{"type": "t", "level": "fatal", "message": "m"}]},
    }
    errors = schema_errors(schema_registry, bad)
    assert any("relations/0/type" in e for e in errors), errors
    assert any("status/items/0/level" in e for e in errors), errors


def test_served_entities_validate_against_backstage_json_schemas(
    acme: Any, schema_registry: Any
) -> None:
    failures = {}
    for ref, entity in served(acme).items():
        errors = schema_errors(schema_registry, entity)
        if errors:
            failures[ref] = errors
    assert failures == {}


# --- `greenroom catalog validate` on the newer files ----------------------------------------------


def _newer_entity_files() -> list[Path]:
    if not COMPAT_ENV or not NEWER.is_dir():
        return []
    return sorted(p for p in NEWER.rglob("*") if p.suffix in (".yaml", ".yml"))


def _kinds_in(path: Path) -> set[str]:
    kinds = set()
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc:
            kinds.add(str(doc["kind"]))
    return kinds


@pytest.fixture(scope="module")
def cli_app() -> Iterator[Any]:
    """The ``greenroom`` Typer app with the plugins' sub-commands (as ``main()`` adds them)."""
    from greenroom.cli import cli
    from greenroom.plugins import plugin_manager

    if not any(group.name == "catalog" for group in cli.registered_groups):
        plugin_manager().hook.greenroom_cli(cli=cli)
    yield cli


@pytest.mark.parametrize(
    "path",
    _newer_entity_files(),
    ids=lambda p: str(p.relative_to(NEWER)),
)
def test_newer_backstage_entity_files_validate_with_the_cli(cli_app: Any, path: Path) -> None:
    from typer.testing import CliRunner

    kinds = _kinds_in(path)
    if not kinds:
        pytest.skip(f"{path.name} holds no catalog entity")
    unsupported = kinds - SUPPORTED_KINDS
    if unsupported:
        pytest.skip(
            f"{path.relative_to(NEWER)}: kinds Greenroom does not support: "
            f"{', '.join(sorted(unsupported))}"
        )
    result = CliRunner().invoke(cli_app, ["catalog", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 file(s) checked, 0 invalid" in result.output


def test_the_newer_folder_has_entity_files_to_check() -> None:
    files = _newer_entity_files()
    assert len(files) >= 20
    kinds = set().union(*(_kinds_in(f) for f in files))
    assert {"Group", "User", "API", "Location", "Template"} <= kinds


# --- the REST API against Backstage's OpenAPI document --------------------------------------------

REQUIRED_OPERATIONS = [
    ("get", "/entities"),
    ("get", "/entities/by-query"),
    ("post", "/entities/by-query"),
    ("post", "/entities/by-refs"),
    ("get", "/entities/by-name/{kind}/{namespace}/{name}"),
    ("get", "/entities/by-name/{kind}/{namespace}/{name}/ancestry"),
    ("get", "/entities/by-uid/{uid}"),
    ("delete", "/entities/by-uid/{uid}"),
    ("get", "/entity-facets"),
    ("post", "/entity-facets"),
    ("post", "/refresh"),
    ("post", "/validate-entity"),
    ("post", "/analyze-location"),
    ("get", "/locations"),
    ("post", "/locations"),
    ("post", "/locations/by-query"),
    ("get", "/locations/{id}"),
    ("put", "/locations/{id}"),
    ("delete", "/locations/{id}"),
    ("get", "/locations/by-entity/{kind}/{namespace}/{name}"),
]


def parameters(spec: dict[str, Any], operation: dict[str, Any]) -> dict[str, set[str]]:
    """``{"query": {...names}, "path": {...names}}`` of an operation, ``$ref``s resolved."""
    out: dict[str, set[str]] = {"query": set(), "path": set()}
    for param in operation.get("parameters", []):
        if "$ref" in param:
            node: Any = spec
            for part in param["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            param = node
        out.setdefault(param["in"], set()).add(param["name"])
    return out


@pytest.fixture(scope="module")
def backstage_openapi() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(OPENAPI.read_text(encoding="utf-8"))
    return spec


@pytest.fixture(scope="module")
def greenroom_openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    folder = tmp_path_factory.mktemp("openapi")
    cfg = load_config(
        [], env={}, extra={"backend": {"database": f"sqlite:///{folder / 'gr.sqlite'}"}}
    )
    context = create_context(cfg)
    try:
        with TestClient(create_app(context, background=False)) as client:
            response = client.get("/openapi.json")
        assert response.status_code == 200, response.text
        spec: dict[str, Any] = response.json()
        return spec
    finally:
        context.engine.dispose()


@pytest.mark.parametrize(
    ("method", "path"),
    REQUIRED_OPERATIONS,
    ids=[f"{m.upper()} {p}" for m, p in REQUIRED_OPERATIONS],
)
def test_greenroom_serves_backstage_operation_with_its_parameters(
    backstage_openapi: dict[str, Any],
    greenroom_openapi: dict[str, Any],
    method: str,
    path: str,
) -> None:
    theirs = backstage_openapi["paths"].get(path, {}).get(method)
    assert theirs is not None, f"{method.upper()} {path} is not in Backstage's spec"
    ours = greenroom_openapi["paths"].get(f"/api/catalog{path}", {}).get(method)
    assert ours is not None, f"Greenroom does not serve {method.upper()} /api/catalog{path}"
    want = parameters(backstage_openapi, theirs)
    have = parameters(greenroom_openapi, ours)
    assert have["path"] == want["path"]
    missing = want["query"] - have["query"]
    assert not missing, (
        f"{method.upper()} {path}: query parameters of Backstage missing in Greenroom: "
        f"{sorted(missing)} (Greenroom has {sorted(have['query'])})"
    )
    assert ("requestBody" in ours) == ("requestBody" in theirs)


def test_every_operation_of_backstage_is_required(backstage_openapi: dict[str, Any]) -> None:
    """The list above is Backstage's whole catalog API: an operation its spec gains shows up
    here as missing."""
    theirs = {
        (method, path)
        for path, operations in backstage_openapi["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "delete", "patch")
    }
    assert theirs - set(REQUIRED_OPERATIONS) == set()


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def response_errors(
    spec: dict[str, Any], method: str, path: str, status: int, body: Any
) -> list[str]:
    """Where ``body`` breaks the schema Backstage's spec gives that response."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    uri = "urn:backstage:catalog-openapi"
    registry = Registry().with_resource(
        uri, Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    responses = spec["paths"][path][method]["responses"]
    key = str(status) if str(status) in responses else "default"
    response = responses.get(key)
    assert response is not None, f"Backstage's spec has no {status} for {method} {path}"
    if "$ref" in response:
        pointer = "#/" + _pointer(*response["$ref"].removeprefix("#/").split("/"))
    else:
        pointer = "#/" + _pointer("paths", path, method, "responses", key)
    schema = {"$ref": f"{uri}{pointer}/content/application~1json/schema"}
    validator = Draft202012Validator(schema, registry=registry)
    return [
        f"{method.upper()} {path} {status}: "
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(body)
    ]


def test_responses_match_backstage_openapi_schemas(
    make_catalog: Any, backstage_openapi: dict[str, Any], tmp_path: Path
) -> None:
    folder = tmp_path / "remote"
    folder.mkdir()
    (folder / "catalog-info.yaml").write_text(
        "apiVersion: backstage.io/v1alpha1\n"
        "kind: Component\n"
        "metadata: {name: extra}\n"
        "spec: {type: service, lifecycle: production, owner: team-a}\n",
        encoding="utf-8",
    )
    with serve_folder(folder) as server:
        extra = f"{base_url(server)}/catalog-info.yaml"
        allow = {"backend": {"reading": {"allow": [{"host": extra.split("/")[2]}]}}}
        acme = ingest_acme(make_catalog, allow)
        check_responses(acme, backstage_openapi, extra)


def test_openapi_response_check_catches_a_bad_body(backstage_openapi: dict[str, Any]) -> None:
    errors = response_errors(backstage_openapi, "get", "/locations/{id}", 200, {"id": "x"})
    assert any("entityRef" in e for e in errors), errors
    errors = response_errors(
        backstage_openapi, "get", "/entity-facets", 200, {"facets": {"kind": [{"value": 1}]}}
    )
    assert any("count" in e for e in errors), errors


def check_responses(acme: Any, backstage_openapi: dict[str, Any], extra: str) -> None:
    client = acme.client
    uid = acme.entity("component", "artist-lookup")["metadata"]["uid"]
    calls: list[tuple[str, str, str, dict[str, Any], int]] = [
        ("get", "/entities", "/entities", {"params": {"limit": 5}}, 200),
        ("get", "/entities/by-query", "/entities/by-query", {"params": {"limit": 5}}, 200),
        (
            "post",
            "/entities/by-refs",
            "/entities/by-refs",
            {"json": {"entityRefs": ["group:default/team-a", "api:default/spotify"]}},
            200,
        ),
        (
            "get",
            "/entities/by-name/{kind}/{namespace}/{name}",
            "/entities/by-name/component/default/artist-lookup",
            {},
            200,
        ),
        (
            "get",
            "/entities/by-name/{kind}/{namespace}/{name}",
            "/entities/by-name/api/default/spotify",
            {},
            404,
        ),
        (
            "get",
            "/entities/by-name/{kind}/{namespace}/{name}/ancestry",
            "/entities/by-name/component/default/artist-lookup/ancestry",
            {},
            200,
        ),
        ("get", "/entities/by-uid/{uid}", f"/entities/by-uid/{uid}", {}, 200),
        (
            "get",
            "/entity-facets",
            "/entity-facets",
            {"params": {"facet": ["kind", "spec.type"]}},
            200,
        ),
        (
            "post",
            "/analyze-location",
            "/analyze-location",
            {"json": {"location": {"type": "url", "target": extra}}},
            200,
        ),
        (
            "post",
            "/locations",
            "/locations",
            {"json": {"type": "url", "target": extra}},
            201,
        ),
        ("get", "/locations", "/locations", {}, 200),
        (
            "get",
            "/locations/by-entity/{kind}/{namespace}/{name}",
            "/locations/by-entity/component/default/extra",
            {},
            200,
        ),
        ("post", "/validate-entity", "/validate-entity", {"json": {"entity": {}}}, 400),
        (
            "post",
            "/entities/by-query",
            "/entities/by-query",
            {"json": {"query": {"$not": {"kind": "group"}}, "limit": 3}},
            200,
        ),
        (
            "post",
            "/entity-facets",
            "/entity-facets",
            {"json": {"facets": ["spec.type"], "query": {"kind": "component"}}},
            200,
        ),
        (
            "post",
            "/locations/by-query",
            "/locations/by-query",
            {"json": {"query": {"type": "url"}, "limit": 1}},
            200,
        ),
    ]
    problems = []
    location_id = None
    for method, template, path, kwargs, status in calls:
        response = client.request(method, f"/api/catalog{path}", **kwargs)
        assert response.status_code == status, (method, path, response.text)
        body = response.json()
        if template == "/locations" and method == "post":
            location_id = body["location"]["id"]
        problems += response_errors(backstage_openapi, method, template, status, body)
    assert location_id is not None
    response = client.get(f"/api/catalog/locations/{location_id}")
    assert response.status_code == 200, response.text
    problems += response_errors(backstage_openapi, "get", "/locations/{id}", 200, response.json())
    response = client.put(
        f"/api/catalog/locations/{location_id}", json={"type": "url", "target": f"{extra}?moved"}
    )
    assert response.status_code == 200, response.text
    problems += response_errors(backstage_openapi, "put", "/locations/{id}", 200, response.json())
    assert problems == []
