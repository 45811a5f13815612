"""The documentation keeps up with the code: every hook, config key, route and command is in it.

Each check reads the code (hook specifications, the pydantic config models, the app's routes, the
Typer commands) and looks for each name in the page that documents it, so that adding one without
documenting it fails here.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import BaseModel

from greenroom import hookspecs
from greenroom.config import Config

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
API_PREFIX = "/api/catalog"
# Filled in by load_config (the files that were read), not written by users.
INTERNAL_CONFIG_KEYS = {"files"}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def mentioned(name: str, text: str) -> bool:
    """``name`` appears in ``text`` as a whole token, not as part of a longer name."""
    return re.search(rf"(?<![\w.\[\]/{{}}-]){re.escape(name)}(?![\w\[\]/{{}}-])", text) is not None


# --- hooks -----------------------------------------------------------------------------------


HOOKS = sorted(name for name in vars(hookspecs) if name.startswith("greenroom_"))


def test_there_are_hooks_to_check() -> None:
    assert "greenroom_routers" in HOOKS and len(HOOKS) >= 5


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook: str) -> None:
    assert mentioned(hook, read(DOCS / "plugins.md")), f"docs/plugins.md does not mention {hook}"
    assert mentioned(hook, read(ROOT / "ARCHITECTURE.md")), f"ARCHITECTURE.md lacks {hook}"


# --- configuration ---------------------------------------------------------------------------


def _models(annotation: Any) -> Iterator[tuple[type[BaseModel], bool]]:
    """The pydantic models inside a field's type, and whether each sits inside a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, False
        return
    origin = typing.get_origin(annotation)
    in_list = origin in (list, tuple, set, frozenset)
    for arg in typing.get_args(annotation):
        for model, nested in _models(arg):
            yield model, nested or in_list


def config_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every key of the config models as a dotted path (aliases used; ``[]`` for list items)."""
    keys = []
    for name, info in model.model_fields.items():
        if not prefix and name in INTERNAL_CONFIG_KEYS:
            continue
        key = f"{prefix}{info.alias or name}"
        keys.append(key)
        for sub, in_list in _models(info.annotation):
            keys.extend(config_keys(sub, f"{key}[]." if in_list else f"{key}."))
    return sorted(set(keys))


CONFIG_KEYS = config_keys()


def test_config_keys_are_walked_with_their_aliases() -> None:
    expected = {
        "backend.baseUrl",
        "backend.listen.port",
        "backend.reading.allow[].host",
        "catalog.processingInterval",
        "catalog.locations[].rules[].allow",
        "catalog.rules[].locations[].pattern",
    }
    assert expected <= set(CONFIG_KEYS)


@pytest.mark.parametrize("key", CONFIG_KEYS)
def test_every_config_key_is_documented(key: str) -> None:
    assert mentioned(key, read(DOCS / "configuration.md")), (
        f"docs/configuration.md does not document {key}"
    )


# --- the REST API ----------------------------------------------------------------------------


@pytest.fixture
def catalog_routes(make_catalog: Any) -> list[tuple[str, str]]:
    """``(METHOD, path)`` of every route the catalog serves.

    Read from the app's OpenAPI document: recent FastAPI versions keep included routers as
    nested objects in ``app.routes``, while the document always lists every path and method.
    """
    catalog = make_catalog()
    paths = catalog.client.get("/openapi.json").json()["paths"]
    return sorted(
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith(API_PREFIX)
        for method in operations
    )


def test_every_catalog_route_is_documented(catalog_routes: list[tuple[str, str]]) -> None:
    assert len(catalog_routes) >= 10
    text = read(DOCS / "api.md")
    missing = [
        f"{method} {path}"
        for method, path in catalog_routes
        if not mentioned(f"{method} {path}", text)
        and not mentioned(f"{method} {path.removeprefix(API_PREFIX)}", text)
    ]
    assert missing == [], f"docs/api.md does not document: {missing}"


# --- the command line ------------------------------------------------------------------------


def cli_commands() -> list[str]:
    """Every leaf command of ``greenroom``, with the commands that plugins add."""
    from greenroom.cli import cli
    from greenroom.plugins import plugin_manager

    app = typer.Typer()
    for info in cli.registered_commands:
        app.registered_commands.append(info)
    for group in cli.registered_groups:
        app.registered_groups.append(group)
    plugin_manager().hook.greenroom_cli(cli=app)  # on a copy: the real one stays as it is

    def walk(command: Any, path: str) -> Iterator[str]:
        subcommands = getattr(command, "commands", None)  # a group (Typer has its own click)
        if subcommands:
            for name, sub in subcommands.items():
                yield from walk(sub, f"{path} {name}")
        else:
            yield path

    return sorted(walk(typer.main.get_command(app), "greenroom"))


COMMANDS = cli_commands()


def test_the_known_commands_are_found() -> None:
    assert {"greenroom serve", "greenroom db upgrade", "greenroom catalog validate"} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_documented(command: str) -> None:
    assert mentioned(command, read(DOCS / "cli.md")), f"docs/cli.md does not document {command}"


# --- the README and the contributor map ------------------------------------------------------


def test_readme_starts_with_the_two_commands() -> None:
    head = "\n".join(read(ROOT / "README.md").splitlines()[:30])
    assert "make demo" in head and "make test" in head


def _modules() -> list[str]:
    package = ROOT / "src" / "greenroom"
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if path.name == "__init__.py" or rel.parts[:2] == ("migrations", "versions"):
            continue
        found.append(rel.as_posix())
    return found


@pytest.mark.parametrize("module", _modules())
def test_every_module_is_on_the_contributor_map(module: str) -> None:
    """Named by its path, or as an entry of the map's tree (``    walk.py   what it holds``)."""
    text = read(ROOT / "ARCHITECTURE.md")
    name = module.rsplit("/", 1)[-1]
    in_tree = re.search(rf"^\s+{re.escape(name)}(\s|$)", text, re.MULTILINE) is not None
    assert in_tree or mentioned(module, text), f"ARCHITECTURE.md does not mention {module}"


def test_docs_links_point_at_existing_files() -> None:
    pages = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", read(page)):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []
