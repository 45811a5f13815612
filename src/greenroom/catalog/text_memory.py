"""Full text on the keys of ``TEXT_KEYS``, matched in this process's memory.

``fullTextFilterTerm`` is a case-insensitive substring match. No B-tree serves a pattern that
starts with ``%``, so a database reads every value of the searched keys: 95,000 index entries
for ``metadata.name`` and ``metadata.title`` at 50,000 entities, 13-20 ms of SQLite for each
request, most of a full-text request. (PostgreSQL's trigram indexes help less than one would
hope: common words match a thousand rows, each read again to be rechecked.)

The values of the keys people search (:data:`~greenroom.catalog.text_index.TEXT_KEYS`: names,
titles, display names) are small: about 2 MB of text at 50,000 entities. Held in memory as one
string per key, ``str.find`` scans names and titles in 1-2 ms (2-3 ms with a thousand matches
to map to their entities), and the refs it finds are handed to the same page query as before
(:func:`queries.listed_refs`), so order, filters, pages and totals are computed exactly as for
the database's own match: the page query and the rest of the request then take 5-7 ms.

The copy is taken at one write generation (``greenroom.db``) and used while the database is at
that generation; the first full-text request after a write builds a new one (about 350 ms at
50,000 entities, 8 MB held). While one thread builds, the others answer from the database, so a busy
ingestion never makes requests wait for it. Like the facet cache, a copy taken at generation
``g`` reflects at least ``g``: replicas on one database never answer from a stale copy.
``catalog.fullTextInMemory: false`` turns it off (every term is matched by the database).
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from greenroom.catalog.queries import searched_keys, searched_text
from greenroom.catalog.tables import search
from greenroom.catalog.text_index import TEXT_KEYS
from greenroom.db import read_generation

SEPARATOR = "\n"  # between values; a match that spans one is rejected, so any character does


@dataclass(frozen=True)
class _Column:
    """The values of one key: joined into ``text``; value ``i`` starts at ``starts[i]`` and
    belongs to entity ``owners[i]`` (an index into the snapshot's refs)."""

    text: str
    starts: array[int]
    owners: array[int]

    def owners_matching(self, term: str) -> set[int]:
        """The owners of every value that contains ``term``."""
        found: set[int] = set()
        text, starts, owners = self.text, self.starts, self.owners
        last = len(starts) - 1
        width = len(term)
        at = text.find(term)
        while at >= 0:
            i = bisect_right(starts, at) - 1
            end = starts[i + 1] - len(SEPARATOR) if i < last else len(text)
            if at + width <= end:
                found.add(owners[i])
                at = end + len(SEPARATOR)  # one match per value is enough
            else:
                at += 1  # the match spans a separator: look again inside the next value
            at = text.find(term, at)  # -1 once past the end
        return found


class TextSnapshot:
    """The values of the text keys of every served entity, at one generation."""

    def __init__(self, generation: int, refs: list[str], columns: dict[str, _Column]) -> None:
        self.generation = generation
        self.refs = refs
        self.columns = columns

    @classmethod
    def read(cls, connection: sa.Connection) -> TextSnapshot:
        """Read the values of :data:`TEXT_KEYS` (search rows exist for served entities only)."""
        generation = read_generation(connection)
        refs: list[str] = []
        index: dict[str, int] = {}
        parts: dict[str, tuple[list[str], array[int]]] = {}
        rows = connection.execute(
            sa.select(search.c.key, search.c.value, search.c.ref).where(
                search.c.key.in_(list(TEXT_KEYS)), search.c.value.is_not(None)
            )
        )
        for key, value, ref in rows:
            owner = index.get(ref)
            if owner is None:
                owner = index[ref] = len(refs)
                refs.append(ref)
            values, owners = parts.setdefault(key, ([], array("q")))
            values.append(value)
            owners.append(owner)
        columns = {}
        for key, (values, owners) in parts.items():
            starts, at = array("q"), 0
            for value in values:
                starts.append(at)
                at += len(value) + len(SEPARATOR)
            columns[key] = _Column(SEPARATOR.join(values), starts, owners)
        return cls(generation, refs, columns)

    def refs_matching(self, term: str, keys: Sequence[str]) -> list[str]:
        """Refs (sorted, each once) of the entities where one of ``keys`` contains ``term``
        (already lower-cased, as the stored values are)."""
        found: set[int] = set()
        for key in keys:
            column = self.columns.get(key)
            if column is not None:
                found |= column.owners_matching(term)
        return sorted(self.refs[i] for i in found)


class TextMatcher:
    """The current :class:`TextSnapshot` of a process, rebuilt after writes."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._snapshot: TextSnapshot | None = None
        self._building = threading.Lock()

    def refs(self, connection: sa.Connection, term: str, fields: Sequence[str]) -> list[str] | None:
        """The refs matching ``term`` in ``fields``, or ``None`` when the database must answer:
        turned off, a key outside :data:`TEXT_KEYS` (or none: every key), or the copy is out of
        date while another thread is building the next one."""
        keys = searched_keys(fields)
        wanted = searched_text(term)
        if not self.enabled or not keys or not wanted or any(k not in TEXT_KEYS for k in keys):
            return None
        snapshot = self._snapshot
        if snapshot is None or snapshot.generation < read_generation(connection):
            if not self._building.acquire(blocking=False):
                return None
            try:
                snapshot = self._snapshot = None  # the old copy's memory goes before the new
                snapshot = self._snapshot = TextSnapshot.read(connection)
            finally:
                self._building.release()
        return snapshot.refs_matching(wanted, keys)
