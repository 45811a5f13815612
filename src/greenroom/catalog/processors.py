"""The catalog's built-in processors, registered through ``greenroom_catalog_processors``.

Order (``priority``): placeholders (10), validation (20), defaults and annotations (30),
relations (40). Third-party processors pick a priority between or after these.
"""

from __future__ import annotations

from typing import Any

from greenroom.catalog.ingest.placeholders import PlaceholderError, PlaceholderResolver
from greenroom.catalog.ingest.walk import MANAGED_BY_LOCATION, MANAGED_BY_ORIGIN
from greenroom.catalog.model.refs import DEFAULT_NAMESPACE, CompoundRef, parse_ref
from greenroom.catalog.model.relations import relations_of
from greenroom.catalog.model.validation import Validator
from greenroom.contracts import ProcessContext, ProcessingError


class PlaceholderProcessor:
    """Resolves ``$text``/``$json``/``$yaml`` against the file that holds the entity."""

    name = "placeholders"
    priority = 10

    def process(self, entity: dict[str, Any], context: ProcessContext) -> dict[str, Any]:
        """Return the entity with placeholders replaced by the content they name."""
        if context.reader is None:
            return entity
        resolver = PlaceholderResolver(context.reader, context.location_key, context.confine_to)
        try:
            resolved: dict[str, Any] = resolver.resolve(entity)
        except PlaceholderError as exc:
            raise ProcessingError(str(exc), field=exc.path) from exc
        return resolved


class ValidationProcessor:
    """Backstage's validation rules; every problem is reported at once."""

    name = "validation"
    priority = 20

    def __init__(self, validator: Validator) -> None:
        self.validator = validator

    def process(self, entity: dict[str, Any], context: ProcessContext) -> dict[str, Any]:
        """Return the entity unchanged, or raise with every validation problem."""
        errors = self.validator.validate(entity)
        if errors:
            raise ProcessingError("; ".join(e.message for e in errors), field=errors[0].field)
        return entity


class AnnotationProcessor:
    """Default namespace and the ``managed-by`` annotations, as Backstage sets them."""

    name = "annotations"
    priority = 30

    def process(self, entity: dict[str, Any], context: ProcessContext) -> dict[str, Any]:
        """Return the entity with its namespace and location annotations set."""
        meta = entity.setdefault("metadata", {})
        meta.setdefault("namespace", DEFAULT_NAMESPACE)
        annotations = dict(meta.get("annotations") or {})
        annotations.setdefault(MANAGED_BY_LOCATION, context.location_key)
        annotations.setdefault(MANAGED_BY_ORIGIN, context.origin_key)
        meta["annotations"] = annotations
        return entity


class RelationsProcessor:
    """Emits the relations of the built-in kinds, both directions."""

    name = "relations"
    priority = 40

    def process(self, entity: dict[str, Any], context: ProcessContext) -> dict[str, Any]:
        """Emit relations; a malformed reference rejects this version of the entity."""
        self_ref = parse_ref(context.ref)
        relations, errors = relations_of(
            entity,
            CompoundRef(str(entity["kind"]), self_ref.namespace, str(entity["metadata"]["name"])),
        )
        if errors:
            raise ProcessingError("; ".join(e.message for e in errors), field=errors[0].field)
        for relation in relations:
            context.emit(relation)
        return entity
