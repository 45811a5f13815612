"""The plugin manager: pluggy with Greenroom's hook specifications and entry-point discovery.

Built-in capabilities are ordinary plugins listed in the ``greenroom.plugins`` entry-point group
of Greenroom's own ``pyproject.toml``; third-party packages add theirs to the same group.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pluggy

from greenroom import hookspecs

hookimpl = pluggy.HookimplMarker("greenroom")
ENTRY_POINT_GROUP = "greenroom.plugins"


class PluginError(Exception):
    """A plugin that cannot be loaded; the message names it."""


def plugin_manager(extra: Iterable[Any] = (), *, entry_points: bool = True) -> pluggy.PluginManager:
    """A plugin manager with every installed plugin, plus ``extra`` (for tests and embedding)."""
    pm = pluggy.PluginManager("greenroom")
    pm.add_hookspecs(hookspecs)
    if entry_points:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken plugin must stop start-up with its name
            raise PluginError(f"could not load a plugin of {ENTRY_POINT_GROUP}: {exc!r}") from exc
    else:
        import greenroom.catalog.plugin as catalog_plugin

        pm.register(catalog_plugin, name="catalog")
    for plugin in extra:
        pm.register(plugin)
    pm.check_pending()
    return pm


def flatten(results: Iterable[Iterable[Any] | None]) -> list[Any]:
    """Join the lists that each implementation of a list-returning hook gave."""
    out: list[Any] = []
    for items in results:
        if items:
            out.extend(items)
    return out
