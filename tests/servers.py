"""What the tests that start ``greenroom serve`` as real processes share."""

from __future__ import annotations

from pathlib import Path

import httpx


def app_config(folder: Path, database_url: str, kinds: list[str], catalog: str = "") -> Path:
    """``folder/app-config.yaml`` for a server on ``database_url`` loading
    ``folder/catalog.yaml`` (which the test writes) once: refreshes every hour, ``kinds`` and
    Locations allowed; ``catalog`` adds lines to the catalog section (indented by two)."""
    config = folder / "app-config.yaml"
    config.write_text(
        f"""
backend:
  database: "{database_url}"
catalog:
  processingInterval: {{hours: 1}}
{catalog}  rules:
    - allow: [{", ".join([*kinds, "Location"])}]
  locations:
    - {{type: file, target: {folder / "catalog.yaml"}}}
"""
    )
    return config


def served(port: int) -> int:
    """How many entities the server on ``port`` serves; 0 while it does not answer."""
    try:
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/catalog/entities/by-query",
            params={"limit": 0},
            timeout=5,
        )
    except httpx.HTTPError:
        return 0
    return int(response.json()["totalItems"]) if response.status_code == 200 else 0
