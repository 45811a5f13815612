"""URL locations against a real loopback HTTP server, and the locations API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_files
from tests.httpserver import base_url, serve_folder

REMOTE = {
    "catalog-info.yaml": """
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: remote-service}
        spec:
          type: service
          lifecycle: production
          owner: platform
          providesApis: [remote-api]
        ---
        apiVersion: backstage.io/v1alpha1
        kind: API
        metadata: {name: remote-api}
        spec:
          type: openapi
          lifecycle: production
          owner: platform
          definition:
            $text: ./api/openapi.yaml
        """,
    "api/openapi.yaml": "openapi: 3.0.0\n",
}


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "remote"
    write_files(folder, REMOTE)
    with serve_folder(folder) as server:
        yield base_url(server), folder


def allowing(url: str) -> dict[str, Any]:
    host = url.split("://", 1)[1]
    return {"backend": {"reading": {"allow": [{"host": host}]}}}


def test_register_a_url_location(make_catalog: Any, remote: tuple[str, Path]) -> None:
    url, _ = remote
    catalog = make_catalog(config=allowing(url))
    target = f"{url}/catalog-info.yaml"
    response = catalog.client.post("/api/catalog/locations", json={"type": "url", "target": target})
    assert response.status_code == 201, response.text
    location = response.json()["location"]
    assert location["type"] == "url" and location["target"] == target
    service = catalog.entity("component", "remote-service")
    assert service["metadata"]["annotations"]["backstage.io/managed-by-location"] == f"url:{target}"
    assert catalog.entity("api", "remote-api")["spec"]["definition"] == "openapi: 3.0.0\n"
    assert catalog.get("/locations") == [{"data": location}]
    assert catalog.get(f"/locations/{location['id']}") == location
    assert catalog.get("/locations/by-entity/component/default/remote-service") == location
    again = catalog.client.post("/api/catalog/locations", json={"type": "url", "target": target})
    assert again.status_code == 409
    assert again.json()["error"]["name"] == "ConflictError"


def test_a_host_not_allowed_is_refused(make_catalog: Any, remote: tuple[str, Path]) -> None:
    url, _ = remote
    catalog = make_catalog()
    response = catalog.client.post(
        "/api/catalog/locations", json={"type": "url", "target": f"{url}/catalog-info.yaml"}
    )
    assert response.status_code == 400
    assert "backend.reading.allow" in response.json()["error"]["message"]
    assert catalog.get("/locations") == []


def test_a_placeholder_to_a_host_not_allowed_is_an_error(make_catalog: Any, tmp_path: Path) -> None:
    files = {
        "all.yaml": """
            apiVersion: backstage.io/v1alpha1
            kind: API
            metadata: {name: elsewhere}
            spec:
              type: openapi
              lifecycle: production
              owner: platform
              definition: {$text: "http://127.0.0.1:9/openapi.yaml"}
            """
    }
    catalog = make_catalog(files)
    catalog.refresh()
    assert catalog.status("api", "elsewhere") == 404
    location = catalog.get("/entities", params={"filter": "kind=location"})[0]
    message = location["status"]["items"][0]["message"]
    assert "api:default/elsewhere" in message and "not allowed" in message


def test_host_down_keeps_entities_and_a_failing_text_keeps_the_old_version(
    make_catalog: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "remote"
    write_files(folder, REMOTE)
    with serve_folder(folder) as server:
        url = base_url(server)
        catalog = make_catalog(
            config=allowing(url),
            locations=[{"type": "url", "target": f"{url}/catalog-info.yaml"}],
        )
        catalog.refresh()
        assert catalog.status("component", "remote-service") == 200
        (folder / "api" / "openapi.yaml").unlink()
        catalog.refresh()
        api = catalog.entity("api", "remote-api")
        assert api["spec"]["definition"] == "openapi: 3.0.0\n"
        assert "could not read location" in api["status"]["items"][0]["message"]
    # The server is gone now: everything stays as it was.
    catalog.refresh()
    assert catalog.status("component", "remote-service") == 200
    service = catalog.entity("component", "remote-service")
    assert "backstage.io/orphan" not in service["metadata"]["annotations"]


def test_delete_location_removes_what_it_produced(
    make_catalog: Any, remote: tuple[str, Path]
) -> None:
    url, _ = remote
    catalog = make_catalog(config=allowing(url))
    target = f"{url}/catalog-info.yaml"
    location = catalog.client.post(
        "/api/catalog/locations", json={"type": "url", "target": target}
    ).json()["location"]
    response = catalog.client.delete(f"/api/catalog/locations/{location['id']}")
    assert response.status_code == 204
    assert catalog.client.get(f"/api/catalog/locations/{location['id']}").status_code == 404
    assert catalog.status("component", "remote-service") == 404
    assert catalog.get("/entities") == []


def test_dry_run_and_analyze_show_what_would_be_added(
    make_catalog: Any, remote: tuple[str, Path]
) -> None:
    url, _ = remote
    catalog = make_catalog(config=allowing(url))
    target = f"{url}/catalog-info.yaml"
    dry = catalog.client.post(
        "/api/catalog/locations", params={"dryRun": "true"}, json={"type": "url", "target": target}
    )
    assert dry.status_code == 201
    assert {e["metadata"]["name"] for e in dry.json()["entities"]} >= {
        "remote-service",
        "remote-api",
    }
    assert dry.json()["exists"] is False
    assert catalog.get("/locations") == []
    analyzed = catalog.client.post(
        "/api/catalog/analyze-location", json={"location": {"type": "url", "target": target}}
    )
    assert analyzed.status_code == 200
    files = analyzed.json()["existingEntityFiles"]
    assert {f["entity"]["metadata"]["name"] for f in files} == {"remote-service", "remote-api"}
    assert all(f["location"] == {"type": "url", "target": target} for f in files)
    assert all(f["isRegistered"] is False for f in files)


def test_only_allowed_location_types_can_be_registered(make_catalog: Any, tmp_path: Path) -> None:
    write_files(tmp_path / "files", {"catalog-info.yaml": REMOTE["catalog-info.yaml"]})
    target = str(tmp_path / "files" / "catalog-info.yaml")
    catalog = make_catalog()
    refused = catalog.client.post("/api/catalog/locations", json={"type": "file", "target": target})
    assert refused.status_code == 400
    assert 'allowed type ["url"]' in refused.json()["error"]["message"]
    catalog = make_catalog(config={"catalog": {"allowedLocationTypes": ["url", "file"]}})
    accepted = catalog.client.post(
        "/api/catalog/locations", json={"type": "file", "target": target}
    )
    assert accepted.status_code == 201
    assert catalog.status("component", "remote-service") == 200


def test_unknown_keys_in_a_location_are_refused(make_catalog: Any) -> None:
    catalog = make_catalog()
    response = catalog.client.post(
        "/api/catalog/locations", json={"type": "url", "target": "http://x", "colour": "red"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["name"] == "InputError"


MOVED = {
    "old/catalog-info.yaml": REMOTE["catalog-info.yaml"],
    "new/catalog-info.yaml": """
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: moved-service}
        spec: {type: service, lifecycle: production, owner: platform}
        """,
}


def test_put_points_a_location_at_another_target(make_catalog: Any, tmp_path: Path) -> None:
    """What the old target produced is treated as a root that is gone (deleted here, under
    ``orphanStrategy: delete``); the new one is read at once."""
    folder = tmp_path / "served"
    write_files(folder, MOVED)
    with serve_folder(folder) as server:
        url = base_url(server)
        catalog = make_catalog(config={**allowing(url), "catalog": {"orphanStrategy": "delete"}})
        add = {"type": "url", "target": f"{url}/old/catalog-info.yaml"}
        location = catalog.client.post("/api/catalog/locations", json=add).json()["location"]
        other = {"type": "url", "target": f"{url}/new/other.yaml"}
        catalog.client.post("/api/catalog/locations", json=other)
        assert catalog.status("component", "remote-service") == 200
        path = f"/api/catalog/locations/{location['id']}"
        moved = {"type": "url", "target": f"{url}/new/catalog-info.yaml"}
        response = catalog.client.put(path, json=moved)
        assert response.status_code == 200, response.text
        assert response.json()["target"] == moved["target"]
        assert response.json()["id"] == location["id"]
        assert catalog.get(f"/locations/{location['id']}")["target"] == moved["target"]
        assert catalog.status("component", "moved-service") == 200
        assert catalog.status("component", "remote-service") == 404
        # Another location's target: a conflict; an unknown id: 404; a type not allowed: 400.
        assert catalog.client.put(path, json=other).status_code == 409
        assert catalog.client.put("/api/catalog/locations/nope", json=moved).status_code == 404
        refused = catalog.client.put(path, json={"type": "file", "target": "/tmp/x.yaml"})
        assert refused.status_code == 400
        assert catalog.get(f"/locations/{location['id']}")["target"] == moved["target"]


def test_put_keeps_what_the_new_target_produces_again_and_everything_when_unreadable(
    make_catalog: Any, tmp_path: Path
) -> None:
    """The repository moved: the same entities, read from the new target, keep their uids and
    never go missing; a new target that cannot be read (a typo) loses nothing; what the new
    target no longer produces is orphaned under ``orphanStrategy: keep``."""
    folder = tmp_path / "served"
    write_files(folder, {**MOVED, "copy/catalog-info.yaml": REMOTE["catalog-info.yaml"]})
    (folder / "copy" / "api").mkdir()
    (folder / "copy" / "api" / "openapi.yaml").write_text("openapi: 3.0.0\n")
    with serve_folder(folder) as server:
        url = base_url(server)
        catalog = make_catalog(config={**allowing(url), "catalog": {"orphanStrategy": "keep"}})
        add = {"type": "url", "target": f"{url}/old/catalog-info.yaml"}
        location = catalog.client.post("/api/catalog/locations", json=add).json()["location"]
        path = f"/api/catalog/locations/{location['id']}"
        uid = catalog.entity("component", "remote-service")["metadata"]["uid"]

        typo = {"type": "url", "target": f"{url}/nowhere/catalog-info.yaml"}
        assert catalog.client.put(path, json=typo).status_code == 200
        kept = catalog.entity("component", "remote-service")
        assert kept["metadata"]["uid"] == uid
        assert "backstage.io/orphan" not in kept["metadata"].get("annotations", {})

        copy = {"type": "url", "target": f"{url}/copy/catalog-info.yaml"}
        assert catalog.client.put(path, json=copy).status_code == 200
        again = catalog.entity("component", "remote-service")
        assert again["metadata"]["uid"] == uid
        annotations = again["metadata"]["annotations"]
        assert annotations["backstage.io/managed-by-origin-location"] == f"url:{copy['target']}"
        assert "backstage.io/orphan" not in annotations
        assert catalog.get("/locations/by-entity/component/default/remote-service") == {
            **location,
            "target": copy["target"],
            "entityRef": catalog.get(f"/locations/{location['id']}")["entityRef"],
        }

        moved = {"type": "url", "target": f"{url}/new/catalog-info.yaml"}
        assert catalog.client.put(path, json=moved).status_code == 200
        assert catalog.status("component", "moved-service") == 200
        orphan = catalog.entity("component", "remote-service")["metadata"]["annotations"]
        assert orphan["backstage.io/orphan"] == "true"


def test_query_locations_by_predicate_in_pages(make_catalog: Any, remote: tuple[str, Path]) -> None:
    url, _ = remote
    catalog = make_catalog(config=allowing(url))
    targets = [f"{url}/a/x.yaml", f"{url}/B/x.yaml", f"{url}/c/x.yaml"]
    for target in targets:
        catalog.client.post("/api/catalog/locations", json={"type": "url", "target": target})

    def query(body: dict[str, Any]) -> Any:
        response = catalog.client.post("/api/catalog/locations/by-query", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    everything = query({})
    assert sorted(i["target"] for i in everything["items"]) == sorted(targets)
    assert everything["totalItems"] == 3 and everything["pageInfo"] == {}
    ids = [i["id"] for i in everything["items"]]
    assert ids == sorted(ids)  # in id order, as Backstage pages them
    # Case-insensitive values and prefixes; $in on other fields too; $contains and an empty
    # $all match nothing there, as in Backstage.
    upper = {"target": {"$hasPrefix": f"{url}/b".upper()}}
    assert [i["target"] for i in query({"query": upper})["items"]] == [targets[1]]
    not_a = {"$all": [{"$not": {"target": {"$in": [targets[0].upper()]}}}, {"type": "URL"}]}
    assert query({"query": not_a})["totalItems"] == 2
    assert query({"query": {"target": {"$contains": "x"}}})["totalItems"] == 0
    assert query({"query": {"$all": []}})["totalItems"] == 0
    # An empty object sets no condition, wherever it is (Backstage drops empty groups).
    assert query({"query": {"$not": {}}})["totalItems"] == 3
    assert query({"query": {"$any": [{}, {"type": "file"}]}})["totalItems"] == 0
    assert query({"query": {"$any": []}})["totalItems"] == 0
    ref = everything["items"][0]["entityRef"]
    assert query({"query": {"entityRef": ref}})["items"] == [everything["items"][0]]
    seen = []
    page = query({"limit": 1, "query": {"type": "url"}})
    while True:
        assert page["totalItems"] == 3 and len(page["items"]) == 1
        seen += page["items"]
        cursor = page["pageInfo"].get("nextCursor")
        if not cursor:
            break
        page = query({"cursor": cursor})
    assert seen == everything["items"]
    for body, message in (
        ({"query": {"kind": "x"}}, "expected key to be 'id', 'type', 'target', or 'entityRef'"),
        ({"query": {"type": {"$bar": 1}}}, "unknown matcher object"),
        ({"query": {"$foo": 1}}, "unknown logic operator '$foo'"),
        ({"query": "x"}, "Query must be an object"),
        ({"limit": 0}, "Limit must be a positive integer >= 1"),
        ({"cursor": "!"}, "Malformed cursor"),
        ({"cursor": None}, "Cursor cannot be empty"),
        ({"query": None}, "Query must be an object"),
    ):
        response = catalog.client.post("/api/catalog/locations/by-query", json=body)
        assert response.status_code == 400, body
        assert message in response.json()["error"]["message"]
