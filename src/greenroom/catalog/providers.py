"""The built-in entity providers: locations from config, and locations registered by the API."""

from __future__ import annotations

import sqlalchemy as sa

from greenroom.catalog.tables import locations
from greenroom.config import Config
from greenroom.contracts import RootLocation


class ConfigLocationProvider:
    """``catalog.locations``; a location's own ``rules`` widen the kinds allowed from it."""

    name = "config"

    def __init__(self, config: Config) -> None:
        self.config = config

    def roots(self) -> list[RootLocation]:
        """The configured locations, in the order they are written."""
        out = []
        for loc in self.config.catalog.locations:
            kinds = None
            if loc.rules is not None:
                kinds = tuple(kind for rule in loc.rules for kind in rule.allow)
            out.append(RootLocation(loc.type, loc.target, kinds))
        return out


class RegisteredLocationProvider:
    """Locations added through ``POST /locations`` (kept in ``catalog_locations``)."""

    name = "registered"

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def roots(self) -> list[RootLocation]:
        """The registered locations, oldest first (the first claim on an entity wins)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(locations.c.type, locations.c.target).order_by(
                    locations.c.created_at, locations.c.id
                )
            ).all()
        return [RootLocation(row.type, row.target) for row in rows]
