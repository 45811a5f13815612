"""``$text``, ``$json`` and ``$yaml`` placeholders, resolved against the file that holds them.

A mapping with a single key that starts with ``$`` is a placeholder, as in Backstage. Unlike
Backstage, a relative path inside a *file* location works (it is joined to that file's folder and
must stay inside the location's folder); a relative path inside a URL location is joined to the
URL and read only from an allowed host.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from greenroom.catalog.ingest.parsing import parse_documents
from greenroom.catalog.ingest.reading import Reader, ReadError, resolve_relative, split_key


class PlaceholderError(Exception):
    """A placeholder that could not be resolved; ``path`` is the dotted field that holds it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


def _text(raw: bytes, _: str) -> Any:
    return raw.decode("utf-8", errors="replace")


def _json(raw: bytes, where: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{where} is not valid JSON: {exc}") from exc


def _yaml(raw: bytes, where: str) -> Any:
    docs = parse_documents(raw.decode("utf-8", errors="replace"))
    if len(docs) != 1:
        raise ValueError(f"{where} must hold exactly one YAML document, found {len(docs)}")
    if docs[0].error:
        raise ValueError(f"{where}: {docs[0].error}")
    return docs[0].data


RESOLVERS: dict[str, Callable[[bytes, str], Any]] = {"text": _text, "json": _json, "yaml": _yaml}


class PlaceholderResolver:
    """Resolves the placeholders of one document, reading through ``reader``."""

    def __init__(self, reader: Reader, base_key: str, confine_to: str | None) -> None:
        self.reader = reader
        self.base_key = base_key
        self.confine_to = confine_to
        self.read_keys: list[str] = []

    def resolve(self, data: Any, path: str = "") -> Any:
        """``data`` with every placeholder replaced by what it points at, in place: the
        document was parsed for this walk alone, and copying every entity costs more than
        resolving the few placeholders there are."""
        if isinstance(data, dict):
            if len(data) == 1:
                ((key, value),) = data.items()
                if isinstance(key, str) and key.startswith("$"):
                    return self._substitute(key[1:], value, path)
            for key, value in data.items():
                if isinstance(value, (dict, list)):
                    data[key] = self.resolve(value, f"{path}.{key}" if path else str(key))
            return data
        if isinstance(data, list):
            for i, value in enumerate(data):
                if isinstance(value, (dict, list)):
                    data[i] = self.resolve(value, f"{path}.{i}")
            return data
        return data

    def _substitute(self, name: str, value: Any, path: str) -> Any:
        resolver = RESOLVERS.get(name)
        if resolver is None:
            raise PlaceholderError(path, f"Encountered unknown placeholder ${name} at {path}")
        if not isinstance(value, str) or not value:
            raise PlaceholderError(path, f"Placeholder ${name} at {path} expected a string value")
        try:
            key = resolve_relative(self.base_key, value, confine_to=self._confinement())
            self.read_keys.append(key)
            raw = self.reader.read(key)
            return resolver(raw, split_key(key)[1])
        except ReadError as exc:
            raise PlaceholderError(
                path, f"Placeholder ${name} at {path} could not read location {value}: {exc}"
            ) from exc
        except ValueError as exc:
            raise PlaceholderError(path, f"Placeholder ${name} at {path}: {exc}") from exc

    def _confinement(self) -> str | None:
        return self.confine_to if split_key(self.base_key)[0] == "file" else None


__all__ = ["PlaceholderError", "PlaceholderResolver"]
