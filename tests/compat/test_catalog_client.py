"""Backstage's own ``@backstage/catalog-client`` against a real Greenroom server.

The client is installed with npm (cached under ``~/.cache/greenroom-tests/catalog-client/<version>``
so that re-runs are fast) and driven by a short Node script; Greenroom runs under uvicorn on a
loopback port, and a second loopback server stands in for a remote catalog-info.yaml.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from greenroom.app import create_app
from tests.httpserver import base_url, serve_folder

CLIENT_VERSION = "1.16.4"  # `npm view @backstage/catalog-client version` when this was written
NODE = shutil.which("node")
NPM = shutil.which("npm")

pytestmark = [
    pytest.mark.npm,
    pytest.mark.skipif(
        not (NODE and NPM), reason="node and npm are needed to run Backstage's catalog-client"
    ),
]

FILES = {
    "all.yaml": """
        apiVersion: backstage.io/v1alpha1
        kind: Location
        metadata: {name: demo}
        spec:
          targets: [./org.yaml, ./components.yaml]
        """,
    "org.yaml": """
        apiVersion: backstage.io/v1alpha1
        kind: Group
        metadata: {name: guests}
        spec: {type: team, children: []}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: User
        metadata: {name: guest}
        spec: {memberOf: [guests]}
        """,
    "components.yaml": """
        apiVersion: backstage.io/v1alpha1
        kind: System
        metadata: {name: shop}
        spec: {owner: guests}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: billing, tags: [python]}
        spec:
          type: service
          lifecycle: production
          owner: guests
          system: shop
          providesApis: [billing-api]
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: payments}
        spec: {type: service, lifecycle: experimental, owner: guests, system: shop}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: search}
        spec: {type: service, lifecycle: production, owner: user:guest}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: example-website}
        spec: {type: website, lifecycle: production, owner: guests, system: shop}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: docs-portal}
        spec: {type: website, lifecycle: experimental, owner: guests}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: ui-kit}
        spec: {type: library, lifecycle: production, owner: guests}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: API
        metadata: {name: billing-api}
        spec:
          type: openapi
          lifecycle: production
          owner: guests
          system: shop
          definition: |
            openapi: 3.0.0
            info: {title: Billing, version: 1.0.0}
            paths: {}
        """,
}
COMPONENTS = ["billing", "docs-portal", "example-website", "payments", "search", "ui-kit"]
SERVICES = ["billing", "payments", "search"]

REMOTE_COMPONENT = """\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: remote-widget
  description: Read over HTTP from a registered url location
spec:
  type: service
  lifecycle: experimental
  owner: guests
"""

SCRIPT = r"""
'use strict';
const { CatalogClient } = require(process.env.CATALOG_CLIENT_MODULE);

const baseUrl = process.env.GREENROOM_URL;
const target = process.env.REMOTE_TARGET;
const client = new CatalogClient({
  discoveryApi: { getBaseUrl: async () => baseUrl + '/api/catalog' },
  fetchApi: { fetch },
});

const out = {};
async function step(name, fn) {
  try {
    const value = await fn();
    out[name] = { ok: value === undefined ? null : value };
    return value;
  } catch (e) {
    out[name] = { error: String((e && e.stack) || e) };
    return undefined;
  }
}

async function main() {
  await step('getEntities', () => client.getEntities({
    filter: { kind: 'component', 'spec.type': 'service' },
    fields: ['kind', 'metadata.name'],
    order: { field: 'metadata.name', order: 'asc' },
  }));
  await step('getEntityByRef', () => client.getEntityByRef('component:default/billing'));
  await step('getEntityByRefMissing', () => client.getEntityByRef('component:default/nope'));
  const page1 = await step('queryPage1', () => client.queryEntities({
    filter: { kind: 'component' },
    limit: 4,
    orderFields: { field: 'metadata.name', order: 'asc' },
    fields: ['kind', 'metadata.name'],
  }));
  await step('queryPage2', () => client.queryEntities({ cursor: page1.pageInfo.nextCursor }));
  await step('getEntitiesByRefs', () => client.getEntitiesByRefs({
    entityRefs: ['component:default/search', 'group:default/guests', 'api:default/missing'],
    fields: ['kind', 'metadata.name'],
  }));
  await step('facetsKind', () => client.getEntityFacets({ facets: ['kind'] }));
  await step('facetsLifecycle', () => client.getEntityFacets({
    facets: ['spec.lifecycle'],
    filter: { kind: 'component' },
  }));
  await step('ancestors', () => client.getEntityAncestors({
    entityRef: 'component:default/billing',
  }));
  await step('validateGood', () => client.validateEntity({
    apiVersion: 'backstage.io/v1alpha1',
    kind: 'Component',
    metadata: { name: 'fine' },
    spec: { type: 'service', lifecycle: 'production', owner: 'guests' },
  }, 'url:http://example.com/catalog-info.yaml'));
  await step('validateBad', () => client.validateEntity({
    apiVersion: 'backstage.io/v1alpha1',
    kind: 'Component',
    metadata: { name: 'broken' },
    spec: { type: 'service', lifecycle: 'production' },
  }, 'url:http://example.com/catalog-info.yaml'));
  await step('refreshEntity', () => client.refreshEntity('component:default/billing'));

  const added = await step('addLocation', () => client.addLocation({ type: 'url', target }));
  await step('getLocationByRef', () => client.getLocationByRef('url:' + target));
  await step('getLocationById', () => client.getLocationById(added.location.id));
  const widget = await step('addedEntity', () =>
    client.getEntityByRef('component:default/remote-widget'));
  await step('getLocationByEntity', () =>
    client.getLocationByEntity('component:default/remote-widget'));
  await step('removeEntityByUid', () => client.removeEntityByUid(widget.metadata.uid));
  await step('afterRemoval', () => client.getEntityByRef('component:default/remote-widget'));
}

main().then(
  () => process.stdout.write(JSON.stringify(out)),
  (e) => { process.stderr.write(String(e && e.stack || e)); process.exit(1); },
);
"""


# --- fixtures -------------------------------------------------------------------------------------


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "greenroom-tests" / "catalog-client"


@pytest.fixture(scope="session")
def catalog_client_module() -> Path:
    """The installed ``@backstage/catalog-client`` package folder (installed once, then cached)."""
    assert NPM is not None
    folder = _cache_root() / CLIENT_VERSION
    package = folder / "node_modules" / "@backstage" / "catalog-client"
    if not (package / "package.json").exists():
        staging = folder.parent / f".{CLIENT_VERSION}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        (staging / "package.json").write_text('{"private": true}\n', encoding="utf-8")
        result = subprocess.run(
            [
                NPM,
                "install",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--loglevel=error",
                f"@backstage/catalog-client@{CLIENT_VERSION}",
            ],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            pytest.fail(f"npm install failed:\n{result.stdout}\n{result.stderr}")
        try:
            staging.rename(folder)
        except OSError:  # another worker installed it first
            shutil.rmtree(staging, ignore_errors=True)
    installed = json.loads((package / "package.json").read_text(encoding="utf-8"))
    assert installed["version"] == CLIENT_VERSION
    return package


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server with a catalog-info.yaml; yields its URL."""
    folder = tmp_path / "remote"
    folder.mkdir()
    (folder / "catalog-info.yaml").write_text(REMOTE_COMPONENT, encoding="utf-8")
    with serve_folder(folder) as server:
        yield f"{base_url(server)}/catalog-info.yaml"


@pytest.fixture
def greenroom_url(make_catalog: Any, remote: str) -> Iterator[str]:
    """A real Greenroom server on a free loopback port, on the demo-like catalog."""
    host_port = remote.split("/")[2]
    catalog = make_catalog(FILES, config={"backend": {"reading": {"allow": [{"host": host_port}]}}})
    summary = catalog.refresh()
    assert not summary.problems, summary.problems
    app = create_app(catalog.context, background=False)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "the Greenroom server stopped during start-up"
        assert time.monotonic() < deadline, "the Greenroom server did not start in time"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def run_client(module: Path, greenroom: str, target: str, folder: Path) -> dict[str, Any]:
    script = folder / "client.cjs"
    script.write_text(textwrap.dedent(SCRIPT).lstrip(), encoding="utf-8")
    assert NODE is not None
    result = subprocess.run(
        [NODE, str(script)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "CATALOG_CLIENT_MODULE": str(module),
            "GREENROOM_URL": greenroom,
            "REMOTE_TARGET": target,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        },
    )
    assert result.returncode == 0, f"node failed:\n{result.stdout}\n{result.stderr}"
    out: dict[str, Any] = json.loads(result.stdout)
    return out


# --- the test -------------------------------------------------------------------------------------


def names(items: list[dict[str, Any] | None]) -> list[str | None]:
    return [i["metadata"]["name"] if i else None for i in items]


def test_backstage_catalog_client_works_against_greenroom(
    catalog_client_module: Path, greenroom_url: str, remote: str, tmp_path: Path
) -> None:
    out = run_client(catalog_client_module, greenroom_url, remote, tmp_path)
    errors = {name: step["error"] for name, step in out.items() if "error" in step}
    assert errors == {}, "\n\n".join(f"{k}: {v}" for k, v in errors.items())
    r = {name: step["ok"] for name, step in out.items()}

    # getEntities: filter, fields and order.
    services = r["getEntities"]["items"]
    assert names(services) == SERVICES
    assert all(set(e) == {"kind", "metadata"} and set(e["metadata"]) == {"name"} for e in services)
    assert {e["kind"] for e in services} == {"Component"}

    # getEntityByRef: a full entity; a missing one is undefined (a 404 for the client).
    billing = r["getEntityByRef"]
    assert billing["metadata"]["name"] == "billing"
    assert billing["metadata"]["uid"] and billing["metadata"]["etag"]
    assert billing["spec"]["owner"] == "guests"
    assert {(x["type"], x["targetRef"]) for x in billing["relations"]} >= {
        ("ownedBy", "group:default/guests"),
        ("partOf", "system:default/shop"),
        ("providesApi", "api:default/billing-api"),
    }
    assert r["getEntityByRefMissing"] is None

    # queryEntities: two pages through the cursor, disjoint and together complete, in order.
    page1, page2 = r["queryPage1"], r["queryPage2"]
    assert page1["totalItems"] == len(COMPONENTS)
    assert page2["totalItems"] == len(COMPONENTS)
    assert len(page1["items"]) == 4
    assert page1["pageInfo"].get("nextCursor")
    assert not page2["pageInfo"].get("nextCursor")
    assert page2["pageInfo"].get("prevCursor")
    first, second = names(page1["items"]), names(page2["items"])
    assert not set(first) & set(second)
    assert first + second == COMPONENTS
    assert all(set(e) == {"kind", "metadata"} for e in page1["items"])

    # getEntitiesByRefs: in request order, a missing one as null, fields applied.
    by_refs = r["getEntitiesByRefs"]["items"]
    assert names(by_refs) == ["search", "guests", None]
    assert by_refs[0] == {"kind": "Component", "metadata": {"name": "search"}}

    # getEntityFacets: counts per value.
    kinds = {f["value"]: f["count"] for f in r["facetsKind"]["facets"]["kind"]}
    assert kinds["Component"] == len(COMPONENTS)
    assert kinds["API"] == 1 and kinds["System"] == 1
    assert kinds["Group"] == 1 and kinds["User"] == 1
    lifecycles = {f["value"]: f["count"] for f in r["facetsLifecycle"]["facets"]["spec.lifecycle"]}
    assert lifecycles == {"production": 4, "experimental": 2}

    # getEntityAncestors: the entity, then the Locations that led to it.
    ancestry = r["ancestors"]
    assert ancestry["rootEntityRef"] == "component:default/billing"
    refs = [
        f"{i['entity']['kind'].lower()}:default/{i['entity']['metadata']['name']}"
        for i in ancestry["items"]
    ]
    assert refs[0] == "component:default/billing"
    assert "location:default/demo" in refs

    # validateEntity: valid, and invalid with the errors.
    assert r["validateGood"] == {"valid": True}
    assert r["validateBad"]["valid"] is False
    assert any("owner" in e["message"] for e in r["validateBad"]["errors"])

    # addLocation (url), ingested at once; found again by ref, by id and by entity.
    added = r["addLocation"]
    assert added["location"]["type"] == "url"
    assert added["location"]["target"] == remote
    assert added["location"]["id"]
    assert isinstance(added["entities"], list)
    location = r["getLocationByRef"]
    generated = hashlib.sha1(f"url:{remote}".encode()).hexdigest()
    assert location == {
        "id": added["location"]["id"],
        "type": "url",
        "target": remote,
        "entityRef": f"location:default/generated-{generated}",
    }
    assert added["location"] == location
    assert r["getLocationById"] == location
    widget = r["addedEntity"]
    assert widget["metadata"]["name"] == "remote-widget"
    assert widget["metadata"]["annotations"]["backstage.io/managed-by-location"] == f"url:{remote}"
    assert r["getLocationByEntity"]["target"] == remote

    # removeEntityByUid: gone afterwards.
    assert r["removeEntityByUid"] is None
    assert r["afterRemoval"] is None
