"""What the tests that start ``greenroom serve`` as real processes share."""

from __future__ import annotations

from pathlib import Path


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
