"""Everything that can be checked of an entity without reading anything else.

``POST /validate-entity`` and ``greenroom catalog validate`` must refuse what ingestion would
refuse, so they run the same rules: validation, then the references of the relation fields
(``dependsOn: [my-lib]`` has no kind, and ingestion rejects it).
"""

from __future__ import annotations

from typing import Any

from greenroom.catalog.model.refs import DEFAULT_NAMESPACE, CompoundRef
from greenroom.catalog.model.relations import relations_of
from greenroom.catalog.model.validation import EntityError, Validator


def check_entity(validator: Validator, entity: Any) -> list[EntityError]:
    """Every problem of ``entity`` that ingestion would report, reading nothing."""
    errors = validator.validate(entity)
    if errors:
        return errors
    meta = entity["metadata"]
    ref = CompoundRef(
        str(entity["kind"]), str(meta.get("namespace") or DEFAULT_NAMESPACE), str(meta["name"])
    )
    return relations_of(entity, ref)[1]
