"""Walk one root location: files, documents, nested Locations, into entities and problems.

The walk reads and processes but writes nothing; :mod:`greenroom.catalog.ingest.engine` decides
what to store. Failures are isolated as narrowly as the input allows: a bad document costs that
document, an unreadable file costs that file (its entities stay as they were), and a processing
error on a known entity keeps its last good version. Problems with no entity to hold them go to
the Location entity that read the file, naming the file, the line and the entity.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from greenroom.catalog.ingest.parsing import Document, parse_documents
from greenroom.catalog.ingest.reading import (
    Reader,
    ReadError,
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


@dataclass
class Emitted:
    """An entity a walk produced, with its relations and problems.

    ``failed`` means this version must not be served: the stored one (if any) stays.
    ``reader`` is the Location entity that read its file, where its problems go if it has no
    stored version to carry them.
    """

    ref: str
    entity: dict[str, Any]
    location_key: str
    reader: str | None
    relations: list[Relation] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    failed: bool = False


@dataclass
class WalkResult:
    """What one walk of a root produced."""

    root_key: str
    root_ref: str
    emitted: dict[str, Emitted] = field(default_factory=dict)
    failed_keys: set[str] = field(default_factory=set)
    orphan_problems: dict[str, list[Problem]] = field(default_factory=dict)

    def add_problem(self, location_ref: str, problem: Problem) -> None:
        """Attach a problem to the Location entity ``location_ref`` (the reader of a file)."""
        target = self.emitted.get(location_ref)
        if target is not None:
            target.problems.append(problem)
        else:
            self.orphan_problems.setdefault(location_ref, []).append(problem)


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


@dataclass
class _Walk:
    """The state of one walk of one root."""

    root: RootLocation
    result: WalkResult
    confine: str | None
    queue: deque[_Target] = field(default_factory=deque)
    seen: set[str] = field(default_factory=set)


class Walker:
    """Walks roots with a reader, a validator, rules and the registered processors."""

    def __init__(
        self,
        reader: Reader,
        validator: Validator,
        rules: RulesEnforcer,
        processors: Sequence[Processor],
    ) -> None:
        self.reader = reader
        self.validator = validator
        self.rules = rules
        self.processors = sorted(processors, key=lambda p: p.priority)

    def walk(self, root: RootLocation) -> WalkResult:
        """Read ``root`` and everything it leads to."""
        root_key = location_key(root.type, root.target)
        root_entity = generated_location_entity(root)
        root_ref = str(CompoundRef("Location", DEFAULT_NAMESPACE, root_entity["metadata"]["name"]))
        result = WalkResult(root_key, root_ref)
        result.emitted[root_ref] = Emitted(root_ref, root_entity, root_key, None)
        walk = _Walk(root, result, _glob_root(root.target) if root.type == "file" else None)
        walk.queue.append(_Target(root.type, root.target, root_ref, frozenset()))
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
                elif key not in walk.seen:
                    walk.seen.add(key)
                    self._read_file(walk, key, target)
        return result

    def _expand(self, target: _Target, result: WalkResult) -> list[str]:
        if target.type == "file":
            return [location_key("file", f) for f in Reader.expand_file_target(target.target)]
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

    def _read_file(self, walk: _Walk, key: str, target: _Target) -> None:
        type_, path = split_key(key)
        result = walk.result
        try:
            raw = self.reader.read(key)
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
        if (
            type_ == "file"
            and confine is not None
            and os.path.commonpath([os.path.normpath(confine), path]) != os.path.normpath(confine)
        ):
            confine = os.path.dirname(path)
        ancestry = target.ancestry | {key}
        for doc in parse_documents(raw.decode("utf-8", errors="replace")):
            self._document(walk, doc, key, target.reader, confine, ancestry)

    def _document(
        self,
        walk: _Walk,
        doc: Document,
        key: str,
        reader_ref: str,
        confine: str | None,
        ancestry: frozenset[str],
    ) -> None:
        result, root_key = walk.result, walk.result.root_key
        path = split_key(key)[1]
        label = f"document {doc.index + 1}"
        if doc.error is not None:
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
        previous = result.emitted.get(ref)
        if previous is not None:
            if previous.location_key != key or ref == result.root_ref:
                result.add_problem(
                    reader_ref,
                    Problem(
                        f"Detected conflicting entityRef {ref} already referenced by "
                        f"{previous.location_key} and now also {key}",
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
        emitted = Emitted(ref, data, key, reader_ref)
        result.emitted[ref] = emitted
        context = ProcessContext(
            ref=ref, location_key=key, origin_key=root_key, reader=self.reader, confine_to=confine
        )
        entity = data  # freshly parsed and owned by this walk: processors may change it in place
        try:
            for processor in self.processors:
                entity = processor.process(entity, context)
        except ProcessingError as exc:
            emitted.failed = True
            line = doc.line_of(exc.field) if exc.field else doc.line
            emitted.problems.append(Problem(str(exc), file=path, line=line, entity=ref))
            return
        emitted.entity = entity
        emitted.relations = context.relations
        if str(entity.get("kind", "")).lower() == "location":
            self._enqueue_targets(walk, entity, key, ref, ancestry)

    def _enqueue_targets(
        self, walk: _Walk, entity: dict[str, Any], key: str, ref: str, ancestry: frozenset[str]
    ) -> None:
        spec = entity.get("spec") or {}
        base_type = split_key(key)[0]
        type_ = spec.get("type") or base_type
        targets = list(spec.get("targets") or [])
        if spec.get("target"):
            targets.insert(0, spec["target"])
        required = spec.get("presence", "required") == "required"
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
