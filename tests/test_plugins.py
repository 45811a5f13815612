"""A third-party plugin, installed with pip, adds a processor and a route through the hooks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from greenroom.config import ConfigError
from greenroom.plugins import hookimpl, plugin_manager

PLUGIN = '''
from fastapi import APIRouter

from greenroom.plugins import hookimpl


class StampProcessor:
    """Labels every entity, to show that third-party processors run during ingestion."""

    name = "stamp"
    priority = 50

    def process(self, entity, context):
        entity.setdefault("metadata", {}).setdefault("labels", {})["example.com/stamped"] = "yes"
        return entity


@hookimpl
def greenroom_catalog_processors(context):
    return [StampProcessor()]


@hookimpl
def greenroom_routers(context):
    router = APIRouter(prefix="/api/stamp")

    @router.get("/hello")
    def hello():
        return {"hello": "from a plugin"}

    return [router]
'''


ONE_GROUP = {
    "all.yaml": """
        apiVersion: backstage.io/v1alpha1
        kind: Group
        metadata: {name: platform}
        spec: {type: team, children: []}
        """
}


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` a real distribution declaring a ``greenroom.plugins`` entry point."""
    source = tmp_path_factory.mktemp("plugin-src")
    (source / "greenroom_stamp.py").write_text(PLUGIN)
    (source / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "greenroom-stamp"
        version = "0.1.0"

        [project.entry-points."greenroom.plugins"]
        stamp = "greenroom_stamp"

        [tool.setuptools]
        py-modules = ["greenroom_stamp"]
        """)
    )
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    return target


def test_an_installed_plugin_is_discovered(installed_plugin: Path, monkeypatch: Any) -> None:
    monkeypatch.syspath_prepend(str(installed_plugin))
    names = {name for name, _ in plugin_manager().list_name_plugin()}
    assert {"catalog", "stamp"} <= names


def test_plugin_processor_and_route_work(
    installed_plugin: Path, monkeypatch: Any, make_catalog: Any
) -> None:
    monkeypatch.syspath_prepend(str(installed_plugin))
    catalog = make_catalog(ONE_GROUP)
    catalog.refresh()
    group = catalog.entity("group", "platform")
    assert group["metadata"]["labels"] == {"example.com/stamped": "yes"}
    stamped = catalog.get("/entities", params={"filter": "metadata.labels.example.com/stamped=yes"})
    assert [e["metadata"]["name"] for e in stamped] == ["platform"]
    response = catalog.client.get("/api/stamp/hello")
    assert response.json() == {"hello": "from a plugin"}
    assert "/api/stamp/hello" in catalog.client.get("/openapi.json").json()["paths"]


def test_without_the_plugin_nothing_is_stamped(make_catalog: Any) -> None:
    catalog = make_catalog(ONE_GROUP)
    catalog.refresh()
    assert "labels" not in catalog.entity("group", "platform")["metadata"]
    assert catalog.client.get("/api/stamp/hello").status_code == 404


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    greeting: str = "hello"


class _ConfigPlugin:
    @hookimpl
    def greenroom_config_schema(self) -> dict[str, type[BaseModel]]:
        return {"stamp": _Settings}


def test_a_plugin_section_is_validated_at_start(make_catalog: Any) -> None:
    make_catalog(config={"stamp": {"greeting": "hi"}}, plugins=(_ConfigPlugin(),))
    with pytest.raises(ConfigError, match=r"stamp\.colour"):
        make_catalog(config={"stamp": {"colour": "red"}}, plugins=(_ConfigPlugin(),))


def test_unknown_keys_of_our_sections_are_warned_about(
    make_catalog: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING"):
        make_catalog(config={"catalog": {"orphanStratgy": "keep"}})
    assert "catalog.orphanStratgy" in caplog.text


class _DuplicateKindPlugin:
    @hookimpl
    def greenroom_entity_kinds(self) -> list[Any]:
        from greenroom.catalog.model.kinds import KindSpec

        return [KindSpec("Component", ("backstage.io/v1alpha1",), {})]


def test_a_broken_plugin_stops_start_up(make_catalog: Any) -> None:
    with pytest.raises(ValueError, match="declared twice by plugins: component"):
        make_catalog(plugins=(_DuplicateKindPlugin(),))
