"""What every capability receives: configuration, database and plugins."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy
import sqlalchemy as sa
from pydantic import ValidationError

from greenroom import db
from greenroom.config import Config, ConfigError, unknown_keys
from greenroom.plugins import plugin_manager

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    """The running app's shared parts; capabilities keep their services in ``services``.

    ``rebuildable``: another process can build the same context from ``config`` alone (its
    plugins are the installed ones, none passed in by the caller), so work can be handed to one.
    """

    config: Config
    engine: sa.Engine
    plugins: pluggy.PluginManager
    services: dict[str, Any] = field(default_factory=dict)
    rebuildable: bool = False


def create_context(
    config: Config, *, plugins: Iterable[Any] = (), entry_points: bool = True, migrate: bool = True
) -> AppContext:
    """Config, database (migrated) and plugins: what the app and the CLI share."""
    extra = list(plugins)
    plugins_ = plugin_manager(extra, entry_points=entry_points)
    check_plugin_config(config, plugins_)
    for key in unknown_keys(config):
        log.warning("configuration key %s is not used by Greenroom", key)
    engine = db.create_engine(config.database_url)
    if migrate:
        db.upgrade(engine)
    return AppContext(
        config=config,
        engine=engine,
        plugins=plugins_,
        rebuildable=entry_points and not extra,
    )


def check_plugin_config(config: Config, plugins: pluggy.PluginManager) -> None:
    """Validate the top-level sections that plugins declare (``greenroom_config_schema``), so
    that a mistake in a plugin's settings stops start-up with the key named."""
    sections = config.model_extra or {}
    for schema in plugins.hook.greenroom_config_schema():
        for key, model in (schema or {}).items():
            try:
                model.model_validate(sections.get(key) or {})
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join([key, *map(str, e['loc'])])}: {e['msg']}" for e in exc.errors()
                )
                raise ConfigError(f"invalid configuration: {problems}") from exc
