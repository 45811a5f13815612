"""Answers cached per process for as long as the catalog has not changed.

Every write transaction that wrote a row increases the database's generation
(``greenroom.db``), in the same commit as its writes. A reader reads the generation (one row
by primary key), and reuses what was computed at that generation, by this process. Replicas on
one database never serve a stale answer: a write by any of them changes the number that all of
them read. An answer computed after reading generation ``g`` reflects at least ``g`` (on
PostgreSQL a later commit may be seen too), so caching it under ``g`` is never stale either.

A miss is computed once: requests that ask for the same answer while it is being computed wait
for it instead of computing it again (after a write, every open catalog page asks for the same
facets at once; eight clients on a cold cache made eight identical counts of the whole
catalog, each slower for the others).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future


class GenerationCache:
    """At most ``size`` answers, all of one generation; a newer generation clears them."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._generation = -1
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._computing: dict[tuple[int, Hashable], Future[bytes]] = {}
        self._lock = threading.Lock()

    def peek(self, generation: int, key: Hashable) -> bytes | None:
        """The answer for ``key`` at ``generation`` if it is cached, else None."""
        with self._lock:
            if generation == self._generation:
                return self._items.get(key)
        return None

    def get_or_compute(self, generation: int, key: Hashable, compute: Callable[[], bytes]) -> bytes:
        """The answer for ``key`` at ``generation``, computing it on a miss; a miss already
        being computed by another thread is waited for (its error, too, is raised here)."""
        with self._lock:
            if generation == self._generation and key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            flight = self._computing.get((generation, key))
            if flight is None:
                mine = self._computing[(generation, key)] = Future()
        if flight is not None:
            return flight.result()
        try:
            value = compute()  # outside the lock: readers of other keys do not wait
        except BaseException as exc:
            with self._lock:
                del self._computing[(generation, key)]
            mine.set_exception(exc)
            raise
        with self._lock:
            del self._computing[(generation, key)]
            if generation > self._generation:
                self._generation = generation
                self._items.clear()
            if generation == self._generation:
                self._items[key] = value
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        mine.set_result(value)
        return value
