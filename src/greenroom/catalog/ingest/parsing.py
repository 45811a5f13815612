"""YAML documents with their line numbers, safe against hostile files.

Each ``---`` document is parsed on its own, so that a syntax error in one document costs only
that document (Backstage fails the whole file). The loader is PyYAML's C safe loader with YAML 1.2
scalars as Backstage's ``yaml`` package reads them: dates stay strings and only ``true``/``false``
are booleans (``on``, ``yes`` and ``no`` stay strings). Aliases are counted as they would expand so
that an alias bomb is refused instead of exhausting memory when the entity is serialised.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from typing import Any

import yaml

MAX_EXPANDED_NODES = 100_000
_DOC_MARKER = re.compile(r"^(---|\.\.\.)(?=\s|$)")


class _Loader(yaml.CSafeLoader):
    """Safe loader with YAML 1.2 core-schema scalars."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass
class Document:
    """One YAML document of a file: its data or its error, and where it starts."""

    index: int
    line: int  # 1-based line of the document's first content
    data: Any = None
    error: str | None = None
    error_line: int | None = None
    error_column: int | None = None
    source: str = field(default="", repr=False)  # the document's text, to find lines on demand
    offset: int = 0  # lines before the document in its file
    _lines: dict[str, int] | None = field(default=None, repr=False)

    def line_of(self, path: str) -> int:
        """The line of a field, or of its closest known parent, or of the document.

        Lines are only needed for error messages, so they are found when first asked for, by
        composing the document again, instead of for every document of every pass.
        """
        if self._lines is None:
            self._lines = {}
            if self.source:
                loader = _Loader(self.source)
                try:
                    node = loader.get_single_node()
                    if node is not None:
                        self._lines = _field_lines(node, self.offset)
                except yaml.YAMLError:
                    pass
                finally:
                    loader.dispose()
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path.rpartition(".")[0]
        return self.line


def split_documents(source: str | Iterable[str]) -> Iterator[tuple[int, str]]:
    """Yield ``(lines_before, text)`` for each non-empty document of a YAML stream.

    ``source`` is the text or its lines; reading lines lets a large file be walked without
    holding it whole in memory. A line starting with ``---`` or ``...`` ends a document (YAML
    allows no content at column 0 of a block scalar at the top level, so this is exact); what
    follows ``---`` on its line belongs to the next document.
    """
    lines = source.splitlines(keepends=True) if isinstance(source, str) else source
    buffer: list[str] = []
    start = 0
    for number, line in enumerate(lines):
        if line.startswith(("---", "...")) and _DOC_MARKER.match(line):
            chunk = "".join(buffer)
            if not _blank(chunk):
                yield start, chunk
            rest = line[3:] if line.startswith("---") else ""
            buffer = [rest] if rest.strip() else []
            start = number if buffer else number + 1
            continue
        buffer.append(line)
    chunk = "".join(buffer)
    if not _blank(chunk):
        yield start, chunk


def _blank(chunk: str) -> bool:
    """Nothing but whitespace and comments."""
    return all(not ln.strip() or ln.lstrip().startswith("#") for ln in chunk.splitlines())


def parse_document(index: int, offset: int, chunk: str) -> Document:
    """Parse one document; a bad one carries an error instead of data."""
    doc = Document(
        index=index, line=offset + _first_content_line(chunk), source=chunk, offset=offset
    )
    loader = _Loader(chunk)
    try:
        node = loader.get_single_node()
        if node is not None:
            if "*" in chunk:  # only aliases can expand, and an alias is written with a star
                _check_expansion(node)
            doc.line = node.start_mark.line + offset + 1
            doc.data = _construct(loader, node, aliased="*" in chunk)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        doc.error = f"YAML syntax error: {exc.problem or exc.context}"
        if mark is not None:
            doc.error_line = mark.line + offset + 1
            doc.error_column = mark.column + 1
    except yaml.YAMLError as exc:
        doc.error = f"YAML error: {exc}"
    except _TooManyNodes:
        doc.error = (
            f"YAML document expands to more than {MAX_EXPANDED_NODES} nodes through its "
            "aliases (an alias bomb?); refusing to read it"
        )
    except Exception as exc:  # the document fails, not the whole walk
        # PyYAML's constructors raise plain exceptions for a value that does not fit its tag
        # (``!!int xyz``, ``!!bool maybe``, ``!!timestamp x``).
        doc.error = f"YAML error: cannot read a tagged value ({type(exc).__name__}: {exc})"
    finally:
        loader.dispose()
    return doc


def watch_parent(parent: int, every: float = 1.0) -> None:
    """In a worker process: end it when ``parent`` is no longer its parent.

    A server stopped or killed in the middle of a pass does not shut its pool down, and the
    workers wait on their queue for ever (each holds the queue's writing end too, so it never
    ends), with multiprocessing's resource tracker waiting on them. A thread of the worker
    looks each second; the kernel's parent-death signal would not do, since it follows the
    thread that started the worker, which may end long before the server.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="greenroom-watch-parent", daemon=True).start()


_STR, _SEQ, _MAP = (f"tag:yaml.org,2002:{name}" for name in ("str", "seq", "map"))


def _construct(loader: _Loader, node: yaml.Node, *, aliased: bool) -> Any:
    """The Python value of a composed document: what ``loader.construct_document`` gives.

    PyYAML's constructor handles every tag, aliases and recursive structures through a
    generator per collection and several lookups per node: it was half of the parsing of a
    large catalog. A document without aliases is built here instead, directly, for the nodes
    that make up catalogs (strings, sequences, mappings); every other node (numbers, booleans,
    nulls, merge keys, other tags, unhashable keys) is handed to PyYAML's constructor, so the
    values and the errors are PyYAML's (in a document with several errors, the first found may
    be another: this goes depth first). A document with aliases, or nested too deep for this
    recursion, is constructed by PyYAML whole.
    """
    if not aliased:
        try:
            return _build(loader, node)
        except RecursionError:
            # PyYAML's constructor, called deep for a subtree, may have been the one to run out:
            # its half-done state would make the whole document look recursive.
            loader.constructed_objects = {}
            loader.recursive_objects = {}
            loader.state_generators = []
            loader.deep_construct = False
    return loader.construct_document(node)


def _build(loader: _Loader, node: yaml.Node) -> Any:
    tag = node.tag
    kind = type(node)
    if kind is yaml.ScalarNode and tag == _STR:
        return node.value
    if kind is yaml.SequenceNode and tag == _SEQ:
        return [_build(loader, item) for item in node.value]
    if kind is yaml.MappingNode and tag == _MAP:
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag != _STR or type(key_node) is not yaml.ScalarNode:
                break  # a merge key, or a key that is not a string: PyYAML's own rules
            mapping[key_node.value] = _build(loader, value_node)
        else:
            return mapping
    return loader.construct_object(node, deep=True)


def parse_group(items: Iterable[tuple[int, int, str]]) -> list[Document]:
    """Parse ``(index, lines_before, text)`` documents, in order."""
    return [parse_document(index, offset, chunk) for index, offset, chunk in items]


class Parser:
    """Parses groups of documents in a worker process, so that parsing runs beside the rest.

    YAML parsing is most of the Python work of a first ingestion. In a thread it shares the GIL
    with the writer, whose every row handed to the database driver then waits for the parser;
    in another process it uses another core and costs the writer nothing. Groups smaller than
    ``min_group`` are parsed in the calling thread: a process is worth it for a large file, not
    for a catalog-info.yaml. The pool is shared by the process and started on first use; if a
    worker dies, the group is parsed here instead.
    """

    _pool: ProcessPoolExecutor | None = None
    _pool_lock = threading.Lock()
    _children = 0  # other spawned processes of ours alive (walks apart): they hold the tracker

    def __init__(self, workers: int | None = None, min_group: int = 1500) -> None:
        cores = os.cpu_count() or 1
        self.workers = max(0, min(2, cores - 1)) if workers is None else workers
        self.min_group = min_group

    def submit(self, items: list[tuple[int, int, str]]) -> Callable[[], list[Document]]:
        """Start parsing ``items``; the returned function waits for the documents."""
        if self.workers == 0 or len(items) < self.min_group:
            return lambda: parse_group(items)
        try:
            future = self._executor().submit(parse_group, items)
        except (BrokenProcessPool, RuntimeError):
            self._reset()
            return lambda: parse_group(items)

        def wait() -> list[Document]:
            try:
                return future.result()
            except CancelledError:  # the pool was closed by another pass of this process
                return parse_group(items)
            except BrokenProcessPool:
                self._reset()
                return parse_group(items)

        return wait

    def _executor(self) -> ProcessPoolExecutor:
        cls = type(self)
        with cls._pool_lock:
            if cls._pool is None:
                # spawn: a fork of a process with threads (a server) can inherit held locks.
                cls._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=watch_parent,
                    initargs=(os.getpid(),),
                )
            return cls._pool

    @classmethod
    def close(cls) -> None:
        """Stop the worker process, if there is one (after a pass: an idle worker holds tens of
        megabytes, and a pass that changes little does not need it), and multiprocessing's
        resource tracker with it."""
        with cls._pool_lock:
            if cls._pool is not None:
                cls._pool.shutdown(wait=True, cancel_futures=True)
                cls._pool = None
                cls._stop_tracker_if_unused()

    @classmethod
    @contextmanager
    def child(cls) -> Iterator[None]:
        """Around the life of another spawned process of ours (a walk apart): spawning starts
        the resource tracker, and stopping it waits for every process that inherited it, so
        it is stopped when the last of them (and the pool) is gone, not before."""
        with cls._pool_lock:
            cls._children += 1
        try:
            yield
        finally:
            with cls._pool_lock:
                cls._children -= 1
                cls._stop_tracker_if_unused()

    @classmethod
    def _stop_tracker_if_unused(cls) -> None:
        """Under ``_pool_lock``: stop the resource tracker once no pool and no child of ours
        needs it (stopping waits for every process that inherited it)."""
        if cls._pool is None and cls._children == 0:
            _stop_resource_tracker()

    @classmethod
    def _reset(cls) -> None:
        with cls._pool_lock:
            if cls._pool is not None:
                cls._pool.shutdown(wait=False, cancel_futures=True)
            cls._pool = None


def _stop_resource_tracker() -> None:
    """Stop the process that ``spawn`` starts to clean up after workers (12 MiB, for the rest
    of the server's life). Its one job is semaphores that a dead process leaked; once the pool
    is shut down there are none of ours, and the next pool starts it again. Private API: where a
    Python lacks it, the tracker stays."""
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    stop = getattr(tracker, "_stop", None)
    # Only a tracker this process started (a spawned server worker inherits its parent's).
    if callable(stop) and getattr(tracker, "_pid", None) is not None:
        try:
            stop()
        except Exception:
            return


def parse_documents(text: str) -> list[Document]:
    """Parse every document of ``text``; a bad one carries an error, the others their data."""
    return [
        parse_document(index, offset, chunk)
        for index, (offset, chunk) in enumerate(split_documents(text))
    ]


def _first_content_line(chunk: str) -> int:
    for i, ln in enumerate(chunk.splitlines()):
        if ln.strip() and not ln.lstrip().startswith("#"):
            return i + 1
    return 1


class _TooManyNodes(Exception):
    pass


def _check_expansion(root: yaml.Node) -> None:
    """Count nodes as if every alias were expanded; stop at the limit, not after expanding."""
    budget = MAX_EXPANDED_NODES
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        nonlocal budget
        key = id(node)
        if key in sizes:
            total = sizes[key]
        else:
            total = 1
            sizes[key] = 1  # guards recursive structures
            if isinstance(node, yaml.SequenceNode):
                total += sum(size(child) for child in node.value)
            elif isinstance(node, yaml.MappingNode):
                total += sum(size(k) + size(v) for k, v in node.value)
            sizes[key] = total
        return total

    if size(root) > budget:
        raise _TooManyNodes


def _field_lines(node: yaml.Node, offset: int, prefix: str = "", depth: int = 0) -> dict[str, int]:
    """Lines of the keys of a document, a few levels deep, for error messages."""
    lines: dict[str, int] = {}
    if not isinstance(node, yaml.MappingNode) or depth > 3:
        return lines
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue
        path = f"{prefix}{key_node.value}"
        lines[path] = key_node.start_mark.line + offset + 1
        lines.update(_field_lines(value_node, offset, path + ".", depth + 1))
        if isinstance(value_node, yaml.SequenceNode):
            for i, item in enumerate(value_node.value[:200]):
                lines[f"{path}.{i}"] = item.start_mark.line + offset + 1
                lines.update(_field_lines(item, offset, f"{path}.{i}.", depth + 1))
    return lines
