"""The relations each built-in kind emits, in both directions, as Backstage's processor does.

A field such as ``spec.owner`` of a Component gives two relations: ``ownedBy`` from the component
to its owner and ``ownerOf`` back. Both are attributed to the entity that holds the field, so a
change to that one entity replaces them; stitching gathers every relation whose source is the
entity being served, wherever it came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from greenroom.catalog.model.refs import CompoundRef, RefError, parse_ref
from greenroom.catalog.model.validation import EntityError

# Relation pairs: each type and the type of the reverse relation.
PAIRS: dict[str, str] = {
    "ownedBy": "ownerOf",
    "providesApi": "apiProvidedBy",
    "consumesApi": "apiConsumedBy",
    "dependsOn": "dependencyOf",
    "parentOf": "childOf",
    "memberOf": "hasMember",
    "partOf": "hasPart",
}
PAIRS.update({reverse: forward for forward, reverse in list(PAIRS.items())})


@dataclass(frozen=True, slots=True)
class Relation:
    """A directed relation between two entities, by canonical reference."""

    source: str
    type: str
    target: str


@dataclass(frozen=True, slots=True)
class FieldRule:
    """A spec field that yields a relation: its type, and the default kind of its target."""

    field: str
    relation: str
    default_kind: str | None
    many: bool


def _rules(*rules: tuple[str, str, str | None, bool]) -> tuple[FieldRule, ...]:
    return tuple(FieldRule(*rule) for rule in rules)


_OWNER = ("owner", "ownedBy", "Group", False)
_SYSTEM = ("system", "partOf", "System", False)
RULES: dict[str, tuple[FieldRule, ...]] = {
    "component": _rules(
        _OWNER,
        _SYSTEM,
        ("subcomponentOf", "partOf", "Component", False),
        ("providesApis", "providesApi", "API", True),
        ("consumesApis", "consumesApi", "API", True),
        ("dependsOn", "dependsOn", None, True),
        ("dependencyOf", "dependencyOf", None, True),
    ),
    "api": _rules(_OWNER, _SYSTEM),
    "resource": _rules(
        _OWNER,
        _SYSTEM,
        ("dependsOn", "dependsOn", None, True),
        ("dependencyOf", "dependencyOf", None, True),
    ),
    "system": _rules(_OWNER, ("domain", "partOf", "Domain", False)),
    "domain": _rules(_OWNER, ("subdomainOf", "partOf", "Domain", False)),
    "group": _rules(
        ("parent", "childOf", "Group", False),
        ("children", "parentOf", "Group", True),
        ("members", "hasMember", "User", True),
    ),
    "user": _rules(("memberOf", "memberOf", "Group", True)),
    "template": _rules(_OWNER),
}


def relations_of(
    entity: Mapping[str, Any], self_ref: CompoundRef
) -> tuple[list[Relation], list[EntityError]]:
    """The relations ``entity`` emits, both directions, and errors for refs that cannot parse."""
    spec = entity.get("spec") or {}
    relations: list[Relation] = []
    errors: list[EntityError] = []
    me = str(self_ref)
    for rule in RULES.get(self_ref.kind.lower(), ()):
        value = spec.get(rule.field)
        if value is None:
            continue
        values: Iterable[Any] = value if rule.many and isinstance(value, list) else [value]
        for item in values:
            try:
                target = str(
                    parse_ref(
                        item, default_kind=rule.default_kind, default_namespace=self_ref.namespace
                    )
                )
            except RefError as exc:
                errors.append(EntityError(f"spec.{rule.field}", f"spec.{rule.field}: {exc}"))
                continue
            relations.append(Relation(me, rule.relation, target))
            relations.append(Relation(target, PAIRS[rule.relation], me))
    return relations, errors
