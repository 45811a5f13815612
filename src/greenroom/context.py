"""What every capability receives: configuration, database and plugins."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pluggy
import sqlalchemy as sa

from greenroom.config import Config


@dataclass
class AppContext:
    """The running app's shared parts; capabilities keep their services in ``services``."""

    config: Config
    engine: sa.Engine
    plugins: pluggy.PluginManager
    services: dict[str, Any] = field(default_factory=dict)
