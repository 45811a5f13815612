"""Errors any capability raises to mean an HTTP status; rendered by :mod:`greenroom.errors`."""

from __future__ import annotations


class NotFound(Exception):
    """Something asked for does not exist (404)."""


class Conflict(Exception):
    """Something to create exists already (409)."""


class InvalidInput(Exception):
    """A request that cannot be served as asked (400)."""
