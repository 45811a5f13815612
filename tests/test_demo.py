"""The demo catalog that `make demo` serves: complete, valid, and richly related."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from greenroom.config import load_config

DEMO = Path(__file__).parent.parent / "examples"


def test_demo_config_loads_and_points_at_the_demo_catalog() -> None:
    cfg = load_config([DEMO / "app-config.demo.yaml"], env={})
    assert cfg.catalog.locations[0].target == str(DEMO / "demo-catalog" / "all.yaml")
    assert cfg.backend.listen.port == 7007


def test_demo_catalog_ingests_without_a_single_problem(make_catalog: Any) -> None:
    catalog = make_catalog(
        locations=[{"type": "file", "target": str(DEMO / "demo-catalog" / "all.yaml")}]
    )
    summary = catalog.refresh()
    assert summary.problems == []
    counts = {
        f["value"]: f["count"]
        for f in catalog.get("/entity-facets", params={"facet": "kind"})["facets"]["kind"]
    }
    assert 80 <= sum(counts.values()) <= 150
    assert set(counts) == {
        "API",
        "Component",
        "Domain",
        "Group",
        "Location",
        "Resource",
        "System",
        "Template",
        "User",
    }
    assert [e["metadata"]["name"] for e in catalog.get("/entities") if "status" in e] == []

    service = catalog.entity("component", "shipment-service")
    relations = {(r["type"], r["targetRef"]) for r in service["relations"]}
    assert ("providesApi", "api:default/shipment-booking-api") in relations
    assert ("dependsOn", "resource:default/shipments-db") in relations
    assert ("partOf", "system:default/shipment-management") in relations
    api = catalog.entity("api", "shipment-booking-api")
    assert api["spec"]["definition"].lstrip().startswith("openapi:")
    team = catalog.entity("group", "team-shipments")
    members = {r["targetRef"] for r in team["relations"] if r["type"] == "hasMember"}
    assert "user:default/yuki-tanabe" in members


def test_every_demo_relation_points_at_a_served_entity(make_catalog: Any) -> None:
    catalog = make_catalog(
        locations=[{"type": "file", "target": str(DEMO / "demo-catalog" / "all.yaml")}]
    )
    catalog.refresh()
    everything = catalog.get("/entities")
    refs = {
        f"{e['kind']}:{e['metadata']['namespace']}/{e['metadata']['name']}".lower()
        for e in everything
    }
    dangling = {r["targetRef"] for e in everything for r in e["relations"]} - refs
    assert dangling == set()
