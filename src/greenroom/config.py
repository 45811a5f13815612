"""``app-config.yaml``: loading, merging, ``${VAR}`` substitution and validation.

Key names follow Backstage where the concept is shared, so an existing ``app-config.yaml`` can be
read as it is. Several files merge in order (objects deep-merge, later values win, arrays are
replaced). A value of ``${VAR}`` reads the environment; a missing variable leaves the key unset, as
in Backstage, and ``$${`` escapes a literal ``${``. ``GREENROOM_DATABASE_URL`` overrides the
database. Every problem stops start-up with a :class:`ConfigError` that names the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.engine import URL

_ENV = re.compile(r"\$(\$?)\{([^}]*)\}")


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the key and the file."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


class Listen(_Model):
    """``backend.listen``: where the server listens."""

    host: str = "127.0.0.1"
    port: int = Field(7007, ge=0, le=65535)


class AllowHost(_Model):
    """An entry of ``backend.reading.allow``."""

    host: str = Field(min_length=1)
    paths: list[str] | None = None


class Reading(_Model):
    """``backend.reading``."""

    allow: list[AllowHost] = Field(default_factory=list)


class Backend(_Model):
    """``backend``."""

    base_url: str = Field("http://127.0.0.1:7007", alias="baseUrl")
    listen: Listen = Field(default_factory=lambda: Listen())
    database: str | dict[str, Any] | None = None
    reading: Reading = Field(default_factory=Reading)

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, value: Any) -> Any:
        if isinstance(value, str):  # Backstage accepts ":7007" or "0.0.0.0:7007"
            host, _, port = value.rpartition(":")
            return {"host": host or "127.0.0.1", "port": port}
        if isinstance(value, int):
            return {"port": value}
        return value


class RuleLocation(_Model):
    """A location a rule applies to: exact ``target`` or a glob ``pattern``."""

    type: str
    target: str | None = None
    pattern: str | None = None


class Rule(_Model):
    """An entry of ``catalog.rules``: kinds allowed, optionally only from some locations."""

    allow: list[str]
    locations: list[RuleLocation] | None = None


class LocationRule(_Model):
    """An entry of ``catalog.locations[].rules``."""

    allow: list[str]


class ConfigLocation(_Model):
    """An entry of ``catalog.locations``."""

    type: str
    target: str = Field(min_length=1)
    rules: list[LocationRule] | None = None


class Catalog(_Model):
    """``catalog``."""

    locations: list[ConfigLocation] = Field(default_factory=list)
    rules: list[Rule] = Field(
        default_factory=lambda: [Rule(allow=["Component", "API", "Location"])]
    )
    processing_interval: timedelta | None = Field(
        default=timedelta(seconds=100), alias="processingInterval"
    )
    orphan_strategy: Literal["keep", "delete"] = Field("delete", alias="orphanStrategy")
    allowed_location_types: list[str] = Field(
        default_factory=lambda: ["url"], alias="allowedLocationTypes"
    )
    max_file_bytes: int = Field(64 * 1024 * 1024, alias="maxFileBytes", gt=0)
    lease_duration: timedelta = Field(default=timedelta(seconds=60), alias="leaseDuration")
    full_text_in_memory: bool = Field(True, alias="fullTextInMemory")

    @field_validator("processing_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is False:
            return None
        interval = parse_duration(value)
        if interval.total_seconds() <= 0:
            raise ValueError("must be longer than zero (or false to turn the loop off)")
        return interval

    @field_validator("lease_duration", mode="before")
    @classmethod
    def _lease(cls, value: Any) -> Any:
        lease = parse_duration(value)
        if lease.total_seconds() <= 0:
            raise ValueError("must be longer than zero")
        return lease


class Config(_Model):
    """The whole configuration; unknown top-level sections belong to plugins."""

    backend: Backend = Field(default_factory=lambda: Backend())
    catalog: Catalog = Field(default_factory=lambda: Catalog())
    files: tuple[str, ...] = ()

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of the database (env override, config, or a local SQLite file)."""
        override = os.environ.get("GREENROOM_DATABASE_URL")
        if override:
            return override
        return database_url(self.backend.database)


_UNITS = {
    "years": 365 * 86400,
    "months": 30 * 86400,
    "weeks": 7 * 86400,
    "days": 86400,
    "hours": 3600,
    "minutes": 60,
    "seconds": 1,
    "milliseconds": 0.001,
}
_ISO = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def unknown_keys(model: BaseModel, prefix: str = "") -> list[str]:
    """Keys of Greenroom's own sections that no setting reads (typos, or Backstage settings
    Greenroom does not have), to warn about: an app-config.yaml written for Backstage holds
    many, so they are not errors."""
    found: list[str] = []
    for key in (model.model_extra or {}) if prefix else ():
        found.append(f"{prefix}{key}")
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        key = info.alias or name
        if isinstance(value, BaseModel):
            found.extend(unknown_keys(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found.extend(unknown_keys(item, f"{prefix}{key}.{i}."))
    return found


def parse_duration(value: Any) -> timedelta:
    """Backstage's duration: ``{minutes: 2, seconds: 30}``, ISO ``PT2M30S`` or seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, Mapping):
        unknown = set(value) - set(_UNITS)
        if unknown or not value:
            raise ValueError(
                f"expected a duration object with keys among {', '.join(_UNITS)}, got "
                f"{', '.join(map(str, unknown)) or 'an empty object'}"
            )
        seconds = 0.0
        for unit, amount in value.items():
            if not isinstance(amount, (int, float)) or isinstance(amount, bool) or amount < 0:
                raise ValueError(f"duration {unit} must be a non-negative number")
            seconds += amount * _UNITS[unit]
        return timedelta(seconds=seconds)
    if isinstance(value, str):
        match = _ISO.match(value.strip())
        if match and any(match.groupdict().values()):
            parts = {k: float(v) for k, v in match.groupdict().items() if v}
            return timedelta(**parts)
    raise ValueError(f"expected a duration such as {{ seconds: 30 }} or PT30S, got {value!r}")


def database_url(value: str | Mapping[str, Any] | None) -> str:
    """A SQLAlchemy URL from ``backend.database`` (a URL, or Backstage's client/connection)."""
    if value is None:
        return f"sqlite:///{Path.cwd() / 'greenroom.sqlite'}"
    if isinstance(value, str):
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value
    client = value.get("client")
    connection = value.get("connection")
    if client in ("better-sqlite3", "sqlite3"):
        if connection in (None, ":memory:"):
            return "sqlite://"
        filename = connection.get("filename") if isinstance(connection, Mapping) else connection
        return f"sqlite:///{filename}"
    if client == "pg":
        if isinstance(connection, str):
            return database_url(connection)
        conn = dict(connection or {})
        url = URL.create(
            "postgresql+psycopg",
            username=str(conn.get("user", "postgres")),
            password=str(conn["password"]) if conn.get("password") else None,
            host=str(conn.get("host", "127.0.0.1")),
            port=int(conn.get("port", 5432)),
            database=str(conn.get("database", "greenroom")),
        )
        return url.render_as_string(hide_password=False)
    raise ConfigError(
        f"backend.database.client: unsupported client {client!r}; use pg or better-sqlite3"
    )


def _substitute(value: Any, env: Mapping[str, str]) -> Any:
    """Replace ``${VAR}``; a string naming a missing variable becomes ``None`` (unset)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            new = _substitute(item, env)
            if new is not None or item is None:
                out[key] = new
        return out
    if isinstance(value, list):
        return [_substitute(item, env) for item in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    missing = False

    def repl(match: re.Match[str]) -> str:
        nonlocal missing
        if match.group(1):  # $${X} is a literal ${X}
            return "${" + match.group(2) + "}"
        name = match.group(2).strip()
        if name not in env:
            missing = True
            return ""
        return env[name]

    result = _ENV.sub(repl, value)
    return None if missing else result


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base``: objects merge, everything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve_locations(raw: dict[str, Any], folder: Path) -> None:
    """Make relative ``file`` targets absolute against the folder of the file that names them."""
    catalog = raw.get("catalog")
    if not isinstance(catalog, dict) or not isinstance(catalog.get("locations"), list):
        return
    for loc in catalog["locations"]:
        if (
            isinstance(loc, dict)
            and loc.get("type") == "file"
            and isinstance(loc.get("target"), str)
        ):
            target = loc["target"]
            if not os.path.isabs(target):
                loc["target"] = os.path.normpath(folder / target)


def load_config(
    paths: Sequence[str | Path] = (),
    *,
    env: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Config:
    """Load, merge and validate config files (later ones win), then ``extra`` on top."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
        try:
            raw = yaml.load(text, Loader=yaml.CSafeLoader) or {}
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            raise ConfigError(f"{where}: invalid YAML: {exc.problem}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config file must hold a mapping of keys")
        raw = _substitute(raw, env)
        _resolve_locations(raw, path.resolve().parent)
        merged = merge(merged, raw)
    if extra:
        merged = merge(merged, extra)
    try:
        return Config.model_validate({**merged, "files": tuple(str(p) for p in paths)})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(part) for part in err["loc"])
            problems.append(f"{key}: {err['msg']}")
        files = ", ".join(str(p) for p in paths) or "defaults"
        raise ConfigError(f"invalid configuration ({files}): " + "; ".join(problems)) from exc
