"""Answers cached per generation: a miss is computed once, however many ask at the same time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from greenroom.catalog.answers import GenerationCache


def test_concurrent_misses_share_one_computation() -> None:
    """Eight requests for the same cold facets make one count, not eight; another generation
    or another key is computed on its own."""
    cache = GenerationCache()
    calls: list[str] = []
    lock = threading.Lock()

    def count(label: str) -> bytes:
        with lock:
            calls.append(label)
        time.sleep(0.3)  # a count long enough for every request to arrive meanwhile
        return label.encode()

    with ThreadPoolExecutor(max_workers=10) as pool:
        same = [
            pool.submit(cache.get_or_compute, 7, "spec.type", lambda: count("a")) for _ in range(8)
        ]
        other = pool.submit(cache.get_or_compute, 7, "kind", lambda: count("b"))
        answers = {f.result() for f in same}
    assert answers == {b"a"} and other.result() == b"b"
    assert sorted(calls) == ["a", "b"]
    assert cache.get_or_compute(7, "spec.type", lambda: count("c")) == b"a"  # cached now
    assert cache.get_or_compute(8, "spec.type", lambda: count("d")) == b"d"  # after a write
    assert sorted(calls) == ["a", "b", "d"]


def test_a_failed_computation_fails_its_waiters_and_is_not_kept() -> None:
    cache = GenerationCache()
    started = threading.Event()

    def broken() -> bytes:
        started.set()
        time.sleep(0.5)  # the waiter below arrives meanwhile
        raise RuntimeError("database went away")

    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(cache.get_or_compute, 1, "k", broken)
        started.wait()
        waiter = pool.submit(cache.get_or_compute, 1, "k", lambda: b"never")
        for future in (first, waiter):
            with pytest.raises(RuntimeError, match="database went away"):
                future.result()
    assert cache.get_or_compute(1, "k", lambda: b"again") == b"again"
