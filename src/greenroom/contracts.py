"""The typed objects hooks return: small protocols that plugins implement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from greenroom.catalog.model.relations import Relation

BackgroundTask = Callable[[], Awaitable[None]]


class ProcessingError(Exception):
    """Raised by a processor: the entity is not updated, and the message is kept on it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class ProcessContext:
    """What a processor knows about the entity in hand, and where it emits relations."""

    ref: str
    location_key: str
    origin_key: str
    reader: Any = None  # the Reader of this pass, for processors that read (placeholders)
    confine_to: str | None = None  # folder that relative file reads must stay inside
    relations: list[Relation] = field(default_factory=list)
    # Set by a processor whose output depends on more than the document's text (it read another
    # file or a URL): such a document is processed again on every pass, never skipped.
    volatile: bool = False

    def emit(self, relation: Relation) -> None:
        """Add a relation that this entity emits."""
        self.relations.append(relation)


class Processor(Protocol):
    """A step of entity processing; lower ``priority`` runs first (built-ins use 0-100)."""

    name: str
    priority: int

    def process(self, entity: dict[str, Any], context: ProcessContext) -> dict[str, Any]:
        """Return the entity, changed or not; raise ProcessingError to reject this version."""
        ...


@dataclass(frozen=True)
class RootLocation:
    """A root of ingestion: a location read on every refresh, with optional kind rules."""

    type: str
    target: str
    allow_kinds: tuple[str, ...] | None = None  # per-location ``rules``; None = global rules


class EntityProvider(Protocol):
    """Provides root locations; called on every refresh pass."""

    name: str

    def roots(self) -> list[RootLocation]:
        """The root locations to read now."""
        ...
