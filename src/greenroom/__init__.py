"""Greenroom: an internal developer portal that reads Backstage's files and speaks its API."""

from __future__ import annotations

__version__ = "0.1.0"
