"""Entity references: ``[kind:][namespace/]name``, as Backstage parses and prints them.

A reference given in a field (``spec.owner: team-a``) is completed from context: each field has a
default kind, and the namespace defaults to the namespace of the entity that holds the field.
The canonical form used as a key everywhere is lower-case ``kind:namespace/name``.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NAMESPACE = "default"


class RefError(ValueError):
    """A reference that cannot be parsed or completed."""


@dataclass(frozen=True, slots=True)
class CompoundRef:
    """A complete reference; ``str()`` gives the canonical lower-case form."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.name}".lower()


def parse_ref(
    ref: str,
    *,
    default_kind: str | None = None,
    default_namespace: str | None = None,
) -> CompoundRef:
    """Parse ``ref``, filling in what it leaves out from the defaults.

    Raises :class:`RefError` when the reference is malformed or a part is missing and has no
    default (for example ``dependsOn: my-lib`` without a kind, as Backstage does).
    """
    if not isinstance(ref, str):
        raise RefError(f"Entity reference must be a string, got {type(ref).__name__}")
    text = ref.strip()
    if not text:
        raise RefError("Entity reference must not be empty")
    kind: str | None
    rest: str
    colon = text.find(":")
    slash = text.find("/")
    if colon != -1 and (slash == -1 or colon < slash):
        kind, rest = text[:colon], text[colon + 1 :]
    else:
        kind, rest = None, text
    namespace: str | None
    if "/" in rest:
        namespace, name = rest.split("/", 1)
    else:
        namespace, name = None, rest
    if kind == "" or namespace == "" or not name or ":" in rest or "/" in name:
        raise RefError(
            f'Entity reference "{ref}" was not on the form [<kind>:][<namespace>/]<name>'
        )
    kind = kind or default_kind
    if not kind:
        raise RefError(
            f'Entity reference "{ref}" had missing or empty kind (e.g. did not start '
            'with "component:" or similar)'
        )
    namespace = namespace or default_namespace or DEFAULT_NAMESPACE
    return CompoundRef(kind, namespace, name)


def format_ref(kind: str, namespace: str | None, name: str) -> str:
    """The canonical lower-case reference of an entity's kind, namespace and name."""
    return str(CompoundRef(kind, namespace or DEFAULT_NAMESPACE, name))
