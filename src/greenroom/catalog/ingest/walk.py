"""Walk one root location: files, documents, nested Locations, into entities and problems.

The walk reads and processes but writes nothing; :mod:`greenroom.catalog.ingest.engine` decides
what to store. Failures are isolated as narrowly as the input allows: a bad document costs that
document, an unreadable file costs that file (its entities stay as they were), and a processing
error on a known entity keeps its last good version. Problems with no entity to hold them go to
the Location entity that read the file, naming the file, the line and the entity.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import itertools
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from greenroom.catalog.ingest.parsing import Document, Parser, parse_document, split_documents
from greenroom.catalog.ingest.reading import (
    Reader,
    ReadError,
    is_inside,
    location_key,
    resolve_relative,
    split_key,
)
from greenroom.catalog.ingest.rules import RulesEnforcer
from greenroom.catalog.model.problems import Problem
from greenroom.catalog.model.refs import DEFAULT_NAMESPACE, CompoundRef
from greenroom.catalog.model.relations import Relation
from greenroom.catalog.model.validation import Validator
from greenroom.contracts import ProcessContext, ProcessingError, Processor, RootLocation

MANAGED_BY_LOCATION = "backstage.io/managed-by-location"
MANAGED_BY_ORIGIN = "backstage.io/managed-by-origin-location"


class Prepared(NamedTuple):
    """What the writer needs of an entity, computed where it was walked (see
    :func:`greenroom.catalog.ingest.engine.prepare`): a walk in a process of its own sends this
    instead of the entity's objects, cheaper to pass between processes and to write."""

    kind: str
    name: str
    processed: str  # the processed entity's canonical JSON
    relations: list[tuple[str, str, str]]  # (source, type, target), sorted, without repeats
    problems: str  # the problems' JSON
    process_hash: str


@dataclass
class Emitted:
    """An entity a walk produced, with its relations and problems.

    ``failed`` means this version must not be served: the stored one (if any) stays.
    ``reader`` is the Location entity that read its file, where its problems go if it has no
    stored version to carry them. ``source_hash`` identifies the document it came from, so that
    an unchanged document can be skipped on the next pass.
    """

    ref: str
    entity: dict[str, Any]
    location_key: str
    reader: str | None
    relations: list[Relation] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    failed: bool = False
    source_hash: str = ""
    prepared: Prepared | None = None  # see engine.make_ready; walked apart, ``entity`` is {}


@dataclass
class WalkResult:
    """What one walk of a root found, beside the entities it streams out in batches.

    Location entities are kept here rather than streamed, because problems found later in the
    walk (a file one of them names cannot be read) are attached to them; the engine writes them
    last. ``seen`` maps every entity reference of the walk to the file it came from, including
    entities whose document was unchanged and not processed again.
    """

    root_key: str
    root_ref: str
    locations: dict[str, Emitted] = field(default_factory=dict)
    seen: dict[str, str] = field(default_factory=dict)
    failed_keys: set[str] = field(default_factory=set)
    failed_globs: list[str] = field(default_factory=list)
    failed_refs: set[str] = field(default_factory=set)
    # Problems for a Location this result does not hold (yet): a walk in another process sends
    # its Locations when it ends, and the writer finds conflicts before that (see ``merge``).
    unplaced: list[tuple[str, Problem]] = field(default_factory=list)

    def add_problem(self, location_ref: str, problem: Problem) -> None:
        """Attach a problem to the Location entity ``location_ref`` (the reader of a file),
        or to the root's generated Location when that one is not part of this walk."""
        target = self.locations.get(location_ref) or self.locations.get(self.root_ref)
        if target is not None:
            target.problems.append(problem)
        else:
            self.unplaced.append((location_ref, problem))

    def merge(self, other: WalkResult) -> None:
        """Take what a walk in another process found, then the problems added here meanwhile."""
        self.locations = other.locations
        self.seen = other.seen
        self.failed_keys = other.failed_keys
        self.failed_globs = other.failed_globs
        self.failed_refs = other.failed_refs
        unplaced, self.unplaced = self.unplaced, []
        for location_ref, problem in unplaced:
            self.add_problem(location_ref, problem)

    def keeps(self, location_key: str) -> bool:
        """True when entities read from ``location_key`` must stay as they are this time."""
        if location_key in self.failed_keys:
            return True
        type_, path = split_key(location_key)
        return type_ == "file" and any(fnmatch.fnmatchcase(path, g) for g in self.failed_globs)


def location_targets(spec: dict[str, Any]) -> list[Any]:
    """What a Location entity names: its ``spec.target``, then its ``spec.targets``."""
    listed = spec.get("targets") or []
    targets = list(listed) if isinstance(listed, list) else []
    if spec.get("target"):
        targets.insert(0, spec["target"])
    return targets


def generated_location_name(type_: str, target: str) -> str:
    """Backstage's name for the Location entity of a registered or configured location."""
    digest = hashlib.sha1(f"{type_}:{target}".encode()).hexdigest()
    return f"generated-{digest}"


def generated_location_entity(root: RootLocation) -> dict[str, Any]:
    """The Location entity that stands for a root location, as Backstage generates it."""
    key = location_key(root.type, root.target)
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Location",
        "metadata": {
            "name": generated_location_name(root.type, root.target),
            "namespace": DEFAULT_NAMESPACE,
            "annotations": {MANAGED_BY_LOCATION: key, MANAGED_BY_ORIGIN: key},
        },
        "spec": {"type": root.type, "target": root.target},
    }


def new_result(root: RootLocation) -> WalkResult:
    """An empty result for a walk of ``root``."""
    name = generated_location_name(root.type, root.target)
    return WalkResult(
        location_key(root.type, root.target), str(CompoundRef("Location", DEFAULT_NAMESPACE, name))
    )


def _source_hash(chunk: str, key: str, fingerprint: str) -> str:
    return hashlib.sha1(f"{fingerprint}\0{key}\0{chunk}".encode()).hexdigest()


def _glob_root(target: str) -> str:
    """The folder above the first wildcard of a path, where confinement starts."""
    parts = target.split(os.sep)
    for i, part in enumerate(parts):
        if glob.has_magic(part):
            return os.sep.join(parts[:i]) or os.sep
    return os.path.dirname(target)


@dataclass(frozen=True)
class _Target:
    """A location to read in a walk: where, who asked for it, and the path that led there."""

    type: str
    target: str
    reader: str  # the Location entity whose spec names it
    ancestry: frozenset[str]  # file keys on the way here, to detect cycles
    required: bool = True


Lookup = Callable[[str, list[str]], dict[str, str]]
"""``(origin_key, source hashes) -> {hash: ref}`` of stored entities to keep as they are."""

# Entities per write transaction (and documents per parsed group). Everything a batch holds
# (documents, entities, their rows) is alive at once, a few batches deep, and freed memory goes
# back to the system only in part: 10,000 entities at 2,500 a batch peaked at 204 MiB and kept
# 147-167 MiB after the pass, at 1,500 at 171 and 141-146 MiB, as fast (7.1 s against 7.6 s;
# 50,000: 43.5 s against 43.8 s, median of four, peak 230 MiB against 300). Below the parser's
# ``min_group`` parsing moves into this process and a load slows by a third.
BATCH = 1500
PARSE_AHEAD = 1  # groups of documents being parsed while one is processed
_Entry = tuple[int, int, str, str, str | None]  # index, lines before, text, source hash, stored ref


@dataclass
class _Walk:
    """The state of one walk of one root."""

    root: RootLocation
    result: WalkResult
    confine: str | None
    fingerprint: str
    lookup: Lookup | None
    queue: deque[_Target] = field(default_factory=deque)
    seen_keys: set[str] = field(default_factory=set)
    batch: list[Emitted] = field(default_factory=list)


class Walker:
    """Walks roots with a reader, a validator, rules and the registered processors."""

    def __init__(
        self,
        reader: Reader,
        validator: Validator,
        rules: RulesEnforcer,
        processors: Sequence[Processor],
        *,
        batch_size: int | None = None,
        parser: Parser | None = None,
    ) -> None:
        self.reader = reader
        self.parser = parser or Parser(workers=0)
        self.validator = validator
        self.rules = rules
        self.processors = sorted(processors, key=lambda p: p.priority)
        self.batch_size = batch_size or BATCH

    def walk(
        self, root: RootLocation, result: WalkResult, lookup: Lookup | None = None
    ) -> Iterator[list[Emitted]]:
        """Read ``root`` and everything it leads to, yielding entities in batches.

        ``result`` collects what is not streamed (Locations, unreadable files). With ``lookup``,
        documents whose text, file and processing are unchanged since they were stored are not
        parsed again: their entities are kept as stored, so a pass costs in proportion to what
        changed.
        """
        root_entity = generated_location_entity(root)
        result.locations[result.root_ref] = Emitted(
            result.root_ref, root_entity, result.root_key, None
        )
        result.seen[result.root_ref] = result.root_key
        fingerprint = hashlib.sha1(
            repr(
                (
                    [p.name for p in self.processors],
                    root.allow_kinds,
                    [r.model_dump() for r in self.rules.rules],
                )
            ).encode()
        ).hexdigest()
        walk = _Walk(
            root,
            result,
            _glob_root(root.target) if root.type == "file" else None,
            fingerprint,
            lookup,
        )
        walk.queue.append(_Target(root.type, root.target, result.root_ref, frozenset()))
        while walk.queue:
            target = walk.queue.popleft()
            for key in self._expand(target, result):
                if key in target.ancestry:
                    result.add_problem(
                        target.reader,
                        Problem(
                            f"Location cycle: {key} leads back to itself",
                            file=split_key(key)[1],
                        ),
                    )
                elif key not in walk.seen_keys:
                    walk.seen_keys.add(key)
                    yield from self._read_file(walk, key, target)
        if walk.batch:
            yield walk.batch

    def walk_all(self, root: RootLocation) -> tuple[WalkResult, list[Emitted]]:
        """The whole walk in memory, Locations first (for dry runs and analysis)."""
        result = new_result(root)
        entities = [e for batch in self.walk(root, result) for e in batch]
        return result, [*result.locations.values(), *entities]

    def _expand(self, target: _Target, result: WalkResult) -> list[str]:
        if target.type == "file":
            files = Reader.expand_file_target(target.target)
            if not files and target.required:
                # A folder renamed or a volume not mounted yet: say so, and keep what the
                # pattern produced before instead of deleting it.
                result.failed_globs.append(target.target)
                result.add_problem(
                    target.reader,
                    Problem(
                        f"{target.target} matches no file",
                        name="NotFoundError",
                        file=target.target,
                    ),
                )
            return [location_key("file", f) for f in files]
        if target.type == "url":
            return [location_key("url", target.target)]
        result.add_problem(
            target.reader,
            Problem(
                f"Unsupported location type '{target.type}' for target {target.target}",
                file=target.target,
            ),
        )
        return []

    def _read_file(self, walk: _Walk, key: str, target: _Target) -> Iterator[list[Emitted]]:
        type_, path = split_key(key)
        result = walk.result
        try:
            lines = self.reader.read_lines(key)
        except ReadError as exc:
            if exc.not_found and not target.required:
                return  # an optional target that is absent is no problem, and produces nothing
            name = "NotFoundError" if exc.not_found else "InputError"
            result.add_problem(target.reader, Problem(str(exc), name=name, file=path))
            result.failed_keys.add(key)
            return
        confine = walk.confine
        # A file reached outside the root's folder (through a nested Location) is confined to
        # its own folder instead.
        if type_ == "file" and confine is not None and not is_inside(path, confine):
            confine = os.path.dirname(path)
        ancestry = target.ancestry | {key}
        chunks = enumerate(split_documents(lines))
        # Groups are parsed (in the parser's process) one group ahead of their processing here.
        pending: deque[tuple[list[_Entry], Callable[[], list[Document]]]] = deque()
        while True:
            group = list(itertools.islice(chunks, self.batch_size))
            if group:
                pending.append(self._prepare(walk, key, group))
                if len(pending) <= PARSE_AHEAD:
                    continue
            if not pending:
                break
            entries, parsed = pending.popleft()
            docs = iter(parsed())
            for index, offset, chunk, source_hash, known in entries:
                if known is not None:
                    if known not in result.seen:
                        result.seen[known] = key  # unchanged since stored: kept as it is
                        continue
                    doc = parse_document(index, offset, chunk)  # a duplicate: reported below
                else:
                    doc = next(docs)
                self._document(walk, doc, key, target.reader, confine, ancestry, source_hash)
                if len(walk.batch) >= self.batch_size:
                    yield walk.batch
                    walk.batch = []

    def _prepare(
        self, walk: _Walk, key: str, group: list[tuple[int, tuple[int, str]]]
    ) -> tuple[list[_Entry], Callable[[], list[Document]]]:
        """Hash a group of documents, look up the unchanged ones, and start parsing the rest."""
        hashes = [_source_hash(chunk, key, walk.fingerprint) for _, (_, chunk) in group]
        known = {} if walk.lookup is None else walk.lookup(walk.result.root_key, hashes)
        entries: list[_Entry] = []
        for (index, (offset, chunk)), source_hash in zip(group, hashes, strict=True):
            entries.append((index, offset, chunk, source_hash, known.get(source_hash)))
        todo = [(index, offset, chunk) for index, offset, chunk, _, ref in entries if ref is None]
        return entries, self.parser.submit(todo)

    def _document(
        self,
        walk: _Walk,
        doc: Document,
        key: str,
        reader_ref: str,
        confine: str | None,
        ancestry: frozenset[str],
        source_hash: str,
    ) -> None:
        result, root_key = walk.result, walk.result.root_key
        path = split_key(key)[1]
        label = f"document {doc.index + 1}"
        if doc.error is not None:
            # The document cannot be identified, so whatever this file produced before stays as
            # it was: a typo must not delete an entity (and everything a Location leads to).
            result.failed_keys.add(key)
            result.add_problem(
                reader_ref,
                Problem(
                    doc.error,
                    file=path,
                    line=doc.error_line or doc.line,
                    column=doc.error_column,
                    entity=label,
                ),
            )
            return
        data = doc.data
        if not isinstance(data, dict):
            result.failed_keys.add(key)
            kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
            result.add_problem(
                reader_ref,
                Problem(
                    f"Expected an entity (a mapping of keys), got {kind}",
                    file=path,
                    line=doc.line,
                    entity=label,
                ),
            )
            return
        envelope = self.validator.envelope_errors(data)
        if envelope:
            result.failed_keys.add(key)
            for err in envelope:
                result.add_problem(
                    reader_ref,
                    Problem(err.message, file=path, line=doc.line_of(err.field), entity=label),
                )
            return
        meta = data["metadata"]
        ref_obj = CompoundRef(
            str(data["kind"]), str(meta.get("namespace") or DEFAULT_NAMESPACE), str(meta["name"])
        )
        ref = str(ref_obj)
        if not self.rules.allows(str(data["kind"]), root_key, walk.root.allow_kinds):
            result.add_problem(
                reader_ref,
                Problem(
                    f"Entity {ref} at {key}, originated at {root_key}, is not of an allowed kind "
                    "for that location (see catalog.rules)",
                    name="NotAllowedError",
                    file=path,
                    line=doc.line,
                    entity=ref,
                ),
            )
            return
        previous = result.seen.get(ref)
        if previous is not None:
            if previous != key or ref == result.root_ref:
                result.add_problem(
                    reader_ref,
                    Problem(
                        f"Detected conflicting entityRef {ref} already referenced by "
                        f"{previous} and now also {key}",
                        name="ConflictError",
                        file=path,
                        line=doc.line,
                        entity=ref,
                    ),
                )
            else:
                result.add_problem(
                    reader_ref,
                    Problem(
                        f"Entity {ref} appears twice in {path}",
                        name="ConflictError",
                        file=path,
                        line=doc.line,
                        entity=ref,
                    ),
                )
            return
        emitted = Emitted(ref, data, key, reader_ref, source_hash=source_hash)
        result.seen[ref] = key
        is_location = str(data["kind"]).lower() == "location"
        if is_location:
            result.locations[ref] = emitted
        else:
            walk.batch.append(emitted)
        context = ProcessContext(
            ref=ref, location_key=key, origin_key=root_key, reader=self.reader, confine_to=confine
        )
        entity = data  # freshly parsed and owned by this walk: processors may change it in place
        try:
            for processor in self.processors:
                entity = processor.process(entity, context)
        except ProcessingError as exc:
            emitted.failed = True
            result.failed_refs.add(ref)
            line = doc.line_of(exc.field) if exc.field else doc.line
            emitted.problems.append(Problem(str(exc), file=path, line=line, entity=ref))
            return
        except (Exception, RecursionError) as exc:  # a hostile document must not stop the pass
            emitted.failed = True
            result.failed_refs.add(ref)
            emitted.problems.append(
                Problem(
                    f"Processing failed: {type(exc).__name__}: {exc}",
                    name="ProcessingError",
                    file=path,
                    line=doc.line,
                    entity=ref,
                )
            )
            return
        emitted.entity = entity
        emitted.relations = context.relations
        if context.volatile:
            emitted.source_hash = ""  # depends on more than its text: never skipped
        if is_location:
            self._enqueue_targets(walk, entity, key, ref, ancestry)

    def _enqueue_targets(
        self, walk: _Walk, entity: dict[str, Any], key: str, ref: str, ancestry: frozenset[str]
    ) -> None:
        spec = entity.get("spec") or {}
        base_type = split_key(key)[0]
        type_ = spec.get("type") or base_type
        targets = location_targets(spec)
        required = spec.get("presence", "required") == "required"
        if type_ == "file" and base_type != "file":
            walk.result.add_problem(
                ref,
                Problem(
                    f"A Location read from {key} cannot name file targets; only a file "
                    "location can lead to files on this server",
                    name="NotAllowedError",
                    file=split_key(key)[1],
                    entity=ref,
                ),
            )
            return
        for target in targets:
            if type_ == base_type:
                try:
                    resolved = split_key(resolve_relative(key, target))[1]
                except ReadError as exc:
                    walk.result.add_problem(
                        ref, Problem(str(exc), file=split_key(key)[1], entity=ref)
                    )
                    continue
            else:
                resolved = target
            walk.queue.append(_Target(type_, resolved, ref, ancestry, required))
