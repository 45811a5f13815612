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

VIEW_URL = "backstage.io/view-url"


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
        finally:
            context.volatile = context.volatile or bool(resolver.read_keys)
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
        # Backstage overwrites these: a file cannot claim to be managed from elsewhere.
        annotations[MANAGED_BY_LOCATION] = context.location_key
        annotations[MANAGED_BY_ORIGIN] = context.origin_key
        type_, _, target = context.location_key.partition(":")
        if type_ == "url":
            annotations.setdefault(VIEW_URL, target)
        meta["annotations"] = annotations
        return entity


SORTED_FIELDS = (
    "providesApis",
    "consumesApis",
    "dependsOn",
    "dependencyOf",
    "memberOf",
    "children",
    "members",
)


class RelationsProcessor:
    """Emits the relations of the built-in kinds, both directions.

    Like Backstage, it also sorts the reference lists of ``spec`` so that the served entity does
    not change when only their order does.
    """

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
        spec = entity.get("spec")
        if isinstance(spec, dict):
            for key in SORTED_FIELDS:
                if isinstance(spec.get(key), list) and all(isinstance(v, str) for v in spec[key]):
                    spec[key] = sorted(spec[key])
        return entity
