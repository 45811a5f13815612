"""The entity model: plain Python with types, no storage or web code.

Everything else in the catalog depends on this package, never the other way round, so that the
rules of Backstage's model (references, validation, relations) can be read and tested alone.
"""

from __future__ import annotations

from greenroom.catalog.model.refs import CompoundRef, format_ref, parse_ref
from greenroom.catalog.model.validation import EntityError, validate_entity

__all__ = ["CompoundRef", "EntityError", "format_ref", "parse_ref", "validate_entity"]
