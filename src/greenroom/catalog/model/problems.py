"""Processing problems, kept with the entity they concern or the Location that read them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STATUS_TYPE = "backstage.io/catalog-processing"


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found while processing: what, and where it came from.

    ``file``/``line``/``column`` name the place in the source; ``entity`` names the entity
    (or ``document N`` when the document has no valid name yet).
    """

    message: str
    name: str = "InputError"
    file: str | None = None
    line: int | None = None
    column: int | None = None
    entity: str | None = None
    level: str = "error"

    def where(self) -> str:
        """``file:line:column``, as far as known."""
        parts = [self.file or "<unknown>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def text(self) -> str:
        """The one-line form used by the CLI and in status items: place, entity, message."""
        subject = f"{self.entity}: " if self.entity else ""
        return f"{self.where()}: {subject}{self.message}"

    def status_item(self) -> dict[str, Any]:
        """The ``status.items`` entry Backstage's API shape expects."""
        return {
            "type": STATUS_TYPE,
            "level": self.level,
            "message": f"{self.name}: {self.text()}",
            "error": {"name": self.name, "message": self.text()},
        }

    def as_json(self) -> dict[str, Any]:
        """A JSON object for storage."""
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Problem:
        """The inverse of :meth:`as_json`."""
        return cls(**data)
