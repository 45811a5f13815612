"""The built-in kinds: which apiVersions each accepts and the JSON Schema of its ``spec``.

Written for Greenroom from Backstage's published rules (the catalog-model kind schemas); a
third-party kind registers a :class:`KindSpec` through the ``greenroom_entity_kinds`` hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CORE_API_VERSIONS = ("backstage.io/v1alpha1", "backstage.io/v1beta1")


@dataclass(frozen=True)
class KindSpec:
    """What the catalog knows of a kind: its name, accepted apiVersions, and ``spec`` schema."""

    kind: str
    api_versions: tuple[str, ...]
    spec_schema: dict[str, Any] = field(default_factory=dict)


def _string() -> dict[str, Any]:
    return {"type": "string", "minLength": 1}


def _strings() -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string", "minLength": 1}}


def _spec(required: list[str], **props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


BUILTIN_KINDS: tuple[KindSpec, ...] = (
    KindSpec(
        "Component",
        CORE_API_VERSIONS,
        _spec(
            ["type", "lifecycle", "owner"],
            type=_string(),
            lifecycle=_string(),
            owner=_string(),
            system=_string(),
            subcomponentOf=_string(),
            providesApis=_strings(),
            consumesApis=_strings(),
            dependsOn=_strings(),
            dependencyOf=_strings(),
        ),
    ),
    KindSpec(
        "API",
        CORE_API_VERSIONS,
        {
            **_spec(
                ["type", "lifecycle", "owner"],
                type=_string(),
                lifecycle=_string(),
                owner=_string(),
                system=_string(),
                definition=_string(),
                remotes={
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "url"],
                        "properties": {"type": _string(), "url": _string()},
                    },
                },
            ),
            # An MCP server describes where it listens (``remotes``) instead of a definition.
            "if": {"properties": {"type": {"const": "mcp-server"}}, "required": ["type"]},
            "then": {"required": ["remotes"]},
            "else": {"required": ["definition"]},
        },
    ),
    KindSpec(
        "Resource",
        CORE_API_VERSIONS,
        _spec(
            ["type", "owner"],
            type=_string(),
            owner=_string(),
            system=_string(),
            dependsOn=_strings(),
            dependencyOf=_strings(),
        ),
    ),
    KindSpec(
        "System",
        CORE_API_VERSIONS,
        _spec(["owner"], owner=_string(), domain=_string(), type=_string()),
    ),
    KindSpec(
        "Domain",
        CORE_API_VERSIONS,
        _spec(["owner"], owner=_string(), subdomainOf=_string(), type=_string()),
    ),
    KindSpec(
        "Group",
        CORE_API_VERSIONS,
        _spec(
            ["type", "children"],
            type=_string(),
            profile={"type": "object"},
            parent=_string(),
            children=_strings(),
            members=_strings(),
        ),
    ),
    KindSpec(
        "User",
        CORE_API_VERSIONS,
        _spec(["memberOf"], profile={"type": "object"}, memberOf=_strings()),
    ),
    KindSpec(
        "Location",
        CORE_API_VERSIONS,
        _spec(
            [],
            type=_string(),
            target=_string(),
            targets=_strings(),
            presence={"type": "string", "enum": ["required", "optional"]},
        ),
    ),
    KindSpec(
        "Template",
        ("scaffolder.backstage.io/v1beta3",),
        _spec(
            ["type", "steps"],
            type=_string(),
            owner=_string(),
            parameters={"type": ["object", "array"]},
            steps={"type": "array", "items": {"type": "object"}},
            output={"type": "object"},
        ),
    ),
)
