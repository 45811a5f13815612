"""app-config.yaml: merging, ${VAR}, Backstage's key shapes, and errors that name the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from greenroom.config import ConfigError, load_config


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_files_merge_in_order_and_env_vars_substitute(tmp_path: Path) -> None:
    base = write(
        tmp_path / "app-config.yaml",
        """
backend:
  baseUrl: http://localhost:7007
  listen: {port: 7007}
catalog:
  processingInterval: {minutes: 2}
  locations:
    - {type: file, target: ./catalog/all.yaml}
""",
    )
    local = write(
        tmp_path / "app-config.local.yaml",
        """
backend:
  listen: ":8080"
  database: ${DB_URL}
  reading:
    allow: [{host: example.com}, {host: '*.example.org'}]
catalog:
  orphanStrategy: keep
""",
    )
    cfg = load_config([base, local], env={"DB_URL": "sqlite:///x.db"})
    assert cfg.backend.base_url == "http://localhost:7007"
    assert cfg.backend.listen.port == 8080
    assert cfg.database_url == "sqlite:///x.db"
    assert [a.host for a in cfg.backend.reading.allow] == ["example.com", "*.example.org"]
    assert cfg.catalog.processing_interval == timedelta(minutes=2)
    assert cfg.catalog.orphan_strategy == "keep"
    # Relative file targets are resolved against the folder of the file that names them.
    assert cfg.catalog.locations[0].target == str(tmp_path / "catalog" / "all.yaml")


def test_missing_env_var_leaves_the_key_unset(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "backend:\n  database: ${NOPE}\n  baseUrl: $${LITERAL}\n")
    cfg = load_config([path], env={})
    assert cfg.backend.database is None
    assert cfg.backend.base_url == "${LITERAL}"


def test_database_url_override_and_backstage_connection_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path / "c.yaml",
        """
backend:
  database:
    client: pg
    connection: {host: db.internal, port: 5433, user: gr, password: pw, database: portal}
""",
    )
    assert load_config([path]).database_url == "postgresql+psycopg://gr:pw@db.internal:5433/portal"
    monkeypatch.setenv("GREENROOM_DATABASE_URL", "sqlite:///override.db")
    assert load_config([path]).database_url == "sqlite:///override.db"


def test_defaults_follow_backstage() -> None:
    cfg = load_config([], env={})
    assert cfg.backend.listen.host == "127.0.0.1" and cfg.backend.listen.port == 7007
    assert cfg.catalog.rules[0].allow == ["Component", "API", "Location"]
    assert cfg.catalog.orphan_strategy == "delete"
    assert cfg.catalog.allowed_location_types == ["url"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("catalog:\n  orphanStrategy: sometimes\n", "catalog.orphanStrategy"),
        ("catalog:\n  processingInterval: {fortnights: 1}\n", "catalog.processingInterval"),
        ("catalog:\n  locations:\n    - {type: file}\n", "catalog.locations.0.target"),
        ("backend:\n  listen: {port: 99999}\n", "backend.listen.port"),
        ("backend:\n  reading:\n    allow: [{paths: [/x]}]\n", "backend.reading.allow.0.host"),
    ],
)
def test_a_bad_config_names_the_key(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path / "app-config.yaml", text)
    with pytest.raises(ConfigError) as error:
        load_config([path])
    assert named in str(error.value)
    assert str(path) in str(error.value)


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "app-config.yaml", "backend:\n  listen: [\n")
    with pytest.raises(ConfigError, match=r"app-config\.yaml:3:1"):
        load_config([path])


def test_a_password_with_special_characters_survives(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml",
        """
backend:
  database:
    client: pg
    connection: {host: db, user: gr, password: "p@ss/w:rd", database: portal}
""",
    )
    from sqlalchemy.engine import make_url

    url = make_url(load_config([path]).database_url)
    assert url.password == "p@ss/w:rd" and url.host == "db" and url.database == "portal"


def test_a_zero_interval_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "catalog:\n  processingInterval: {seconds: 0}\n")
    with pytest.raises(ConfigError, match=r"catalog\.processingInterval"):
        load_config([path])
