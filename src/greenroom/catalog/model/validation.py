"""Backstage's entity validation rules, written for Greenroom.

The envelope and ``metadata`` rules are plain functions with Backstage's messages (FieldFormat,
NoForeignRootFields and the schema policies of ``@backstage/catalog-model``); each kind's ``spec``
is checked by a compiled JSON Schema (jsonschema-rs), so a third-party kind only has to provide a
schema. Validation never raises for bad input: it returns every problem it finds, each naming the
field, so that a file with three mistakes is fixed in one go.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs

from greenroom.catalog.model.kinds import BUILTIN_KINDS, KindSpec

_DOCS = (
    "To learn more about catalog file format, visit: "
    "https://github.com/backstage/backstage/blob/master/docs/architecture-decisions/"
    "adr002-default-catalog-file-format.md"
)
_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_LABEL = re.compile(r"^[a-z0-9]+(?:-+[a-z0-9]+)*$")
_KIND = re.compile(r"^[a-zA-Z][a-z0-9A-Z]*$")
_API_VERSION_SUFFIX = re.compile(r"^[a-z0-9A-Z]+$")
_TAG = re.compile(r"^[a-z0-9:+#]+(?:-[a-z0-9:+#]+)*$")
ROOT_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec"})

NAME_EXPECTATION = (
    "a string that is sequences of [a-zA-Z0-9] separated by any of [-_.], "
    "at most 63 characters in total"
)
DNS_EXPECTATION = (
    "a string that is sequences of [a-z0-9] separated by [-], at most 63 characters in total"
)
KIND_EXPECTATION = (
    "a string that is a sequence of [a-zA-Z][a-z0-9A-Z], at most 63 characters in total"
)
TAG_EXPECTATION = (
    "a string that is sequences of [a-z0-9+#] separated by [-], at most 63 characters in total"
)


@dataclass(frozen=True, slots=True)
class EntityError:
    """One problem with an entity: the dotted field it concerns, and what is wrong."""

    field: str
    message: str

    def __str__(self) -> str:
        return self.message


def is_valid_object_name(value: object) -> bool:
    """Names and label values: ``[a-zA-Z0-9]`` runs separated by ``-_.``, 1 to 63 characters."""
    return isinstance(value, str) and 1 <= len(value) <= 63 and bool(_NAME.match(value))


def is_valid_dns_label(value: object) -> bool:
    """Namespaces: lower-case DNS labels of 1 to 63 characters."""
    return isinstance(value, str) and 1 <= len(value) <= 63 and bool(_DNS_LABEL.match(value))


def is_valid_dns_subdomain(value: object) -> bool:
    """Prefixes of label keys and apiVersions: dot-separated DNS labels, at most 253 long."""
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 253
        and all(is_valid_dns_label(part) for part in value.split("."))
    )


def is_valid_kind(value: object) -> bool:
    """Kinds: a letter followed by letters and digits, 1 to 63 characters."""
    return isinstance(value, str) and 1 <= len(value) <= 63 and bool(_KIND.match(value))


def is_valid_api_version(value: object) -> bool:
    """``group/version`` or ``version``, where group is a DNS subdomain."""
    if not isinstance(value, str):
        return False
    return _prefix_suffix(
        value,
        is_valid_dns_subdomain,
        lambda s: 1 <= len(s) <= 63 and bool(_API_VERSION_SUFFIX.match(s)),
    )


def is_valid_key(value: object) -> bool:
    """Label and annotation keys: ``[prefix/]name`` with a DNS-subdomain prefix."""
    return isinstance(value, str) and _prefix_suffix(
        value, is_valid_dns_subdomain, is_valid_object_name
    )


def is_valid_tag(value: object) -> bool:
    """Tags: lower-case ``[a-z0-9:+#]`` runs separated by single dashes, 1 to 63 characters."""
    return isinstance(value, str) and 1 <= len(value) <= 63 and bool(_TAG.match(value))


def _prefix_suffix(value: str, prefix_ok: Any, suffix_ok: Any) -> bool:
    parts = value.split("/")
    if len(parts) == 1:
        return bool(suffix_ok(parts[0]))
    if len(parts) == 2:
        return bool(prefix_ok(parts[0])) and bool(suffix_ok(parts[1]))
    return False


def _format_error(path: str, expectation: str, value: object) -> EntityError:
    shown = value if isinstance(value, str) else repr(value)
    return EntityError(
        path, f'"{path}" is not valid; expected {expectation} but found "{shown}". {_DOCS}'
    )


class Validator:
    """Validates entities against a set of kinds; build once, reuse for every entity."""

    def __init__(self, kinds: Iterable[KindSpec] = BUILTIN_KINDS) -> None:
        self._kinds: dict[str, KindSpec] = {}
        self._schemas: dict[str, Any] = {}
        for spec in kinds:
            self._kinds[spec.kind.lower()] = spec
            self._schemas[spec.kind.lower()] = jsonschema_rs.validator_for(spec.spec_schema)

    @property
    def kinds(self) -> list[str]:
        """The names of the kinds this validator accepts."""
        return [spec.kind for spec in self._kinds.values()]

    def validate(self, entity: object) -> list[EntityError]:
        """Every problem of ``entity``; an empty list means it is valid."""
        if not isinstance(entity, Mapping):
            return [EntityError("", f"Entity must be an object, got {_type_name(entity)}")]
        errors = self.envelope_errors(entity)
        if errors:
            return errors
        errors.extend(self._metadata(entity["metadata"]))
        kind = str(entity["kind"])
        spec = self._kinds.get(kind.lower())
        if spec is None:
            errors.append(
                EntityError(
                    "kind",
                    f"Unsupported kind {kind}; expected one of {', '.join(self.kinds)}",
                )
            )
            return errors
        if entity["apiVersion"] not in spec.api_versions:
            errors.append(
                EntityError(
                    "apiVersion",
                    f'Unsupported apiVersion "{entity["apiVersion"]}" for kind {spec.kind}; '
                    f"expected one of {', '.join(spec.api_versions)}",
                )
            )
        if kind != spec.kind:
            errors.append(
                EntityError("kind", f'Unsupported kind "{kind}"; did you mean "{spec.kind}"?')
            )
        spec_value = entity.get("spec")
        if spec_value is None and spec.spec_schema.get("required"):
            errors.append(EntityError("spec", f"{spec.kind} entity must have a spec"))
        elif spec_value is not None:
            for err in self._schemas[kind.lower()].iter_errors(spec_value):
                errors.append(_schema_error(["spec", *map(str, err.instance_path)], err.message))
        return errors

    def envelope_errors(self, entity: Mapping[str, Any]) -> list[EntityError]:
        """Problems with what identifies an entity: apiVersion, kind, metadata.name, namespace.

        An entity that passes has a reference, so later problems can be kept on it.
        """
        errors = list(self._envelope(entity))
        if not errors:
            meta = entity["metadata"]
            if not is_valid_object_name(meta["name"]):
                errors.append(_format_error("metadata.name", NAME_EXPECTATION, meta["name"]))
            if meta.get("namespace") is not None and not is_valid_dns_label(meta["namespace"]):
                errors.append(
                    _format_error("metadata.namespace", DNS_EXPECTATION, meta["namespace"])
                )
        return errors

    def _envelope(self, entity: Mapping[str, Any]) -> Iterable[EntityError]:
        for key in entity:
            if key not in ROOT_FIELDS:
                yield EntityError(str(key), f"Unknown field {key}")
        # The same check for both fields, with Backstage's expectations.
        for field, valid, expectation in (
            ("apiVersion", is_valid_api_version, "a valid prefix and/or suffix"),
            ("kind", is_valid_kind, KIND_EXPECTATION),
        ):
            value = entity.get(field)
            if value is None:
                yield EntityError(field, f'"{field}" must have a value')
            elif not valid(value):
                yield _format_error(field, expectation, value)
        meta = entity.get("metadata")
        if not isinstance(meta, Mapping):
            yield EntityError("metadata", "Entity metadata must be an object")
        elif meta.get("name") is None:
            yield EntityError("metadata.name", '"metadata.name" must have a value')
        if (
            "spec" in entity
            and entity["spec"] is not None
            and not isinstance(entity["spec"], Mapping)
        ):
            yield EntityError(
                "spec", f"Entity spec must be an object, got {_type_name(entity['spec'])}"
            )

    def _metadata(self, meta: Mapping[str, Any]) -> Iterable[EntityError]:
        for key in ("title", "description", "uid", "etag"):
            if meta.get(key) is not None and not isinstance(meta[key], str):
                yield EntityError(
                    f"metadata.{key}",
                    f'"metadata.{key}" must be a string, got {_type_name(meta[key])}',
                )
        yield from self._mapping(meta, "labels", is_valid_object_name_or_empty, NAME_EXPECTATION)
        yield from self._mapping(meta, "annotations", lambda v: isinstance(v, str), "a string")
        tags = meta.get("tags")
        if tags is not None:
            if not isinstance(tags, list):
                yield EntityError("metadata.tags", '"metadata.tags" must be an array of strings')
            else:
                for i, tag in enumerate(tags):
                    if not is_valid_tag(tag):
                        yield _format_error(f"metadata.tags.{i}", TAG_EXPECTATION, tag)
        links = meta.get("links")
        if links is not None:
            if not isinstance(links, list):
                yield EntityError("metadata.links", '"metadata.links" must be an array')
            else:
                for i, link in enumerate(links):
                    if not isinstance(link, Mapping) or not isinstance(link.get("url"), str):
                        yield EntityError(
                            f"metadata.links.{i}",
                            f'"metadata.links.{i}" must be an object with a string "url"',
                        )
                        continue
                    if not _is_url(link["url"]):
                        yield _format_error(
                            f"metadata.links.{i}.url", "a string that is a valid url", link["url"]
                        )
                    for key in ("title", "icon", "type"):
                        value = link.get(key)
                        if value is not None and (not isinstance(value, str) or not value.strip()):
                            yield _format_error(
                                f"metadata.links.{i}.{key}", "a non empty string", value
                            )

    @staticmethod
    def _mapping(
        meta: Mapping[str, Any], field: str, value_ok: Any, expectation: str
    ) -> Iterable[EntityError]:
        value = meta.get(field)
        if value is None:
            return
        if not isinstance(value, Mapping):
            yield EntityError(f"metadata.{field}", f'"metadata.{field}" must be an object')
            return
        for key, item in value.items():
            if not is_valid_key(key):
                yield _format_error(f"metadata.{field}", "a valid prefix and/or suffix", key)
            elif not value_ok(item):
                yield _format_error(f"metadata.{field}.{key}", expectation, item)


def _is_url(value: str) -> bool:
    """What WHATWG ``new URL()`` accepts, near enough: a scheme and something after it."""
    parts = urlsplit(value)
    return bool(parts.scheme) and bool(parts.netloc or parts.path) and " " not in value.strip()


def is_valid_object_name_or_empty(value: object) -> bool:
    """Label values may be empty strings in Kubernetes and Backstage."""
    return value == "" or is_valid_object_name(value)


_REQUIRED = re.compile(r'^"(?P<prop>[^"]+)" is a required property$')


def _schema_error(path: list[str], message: str) -> EntityError:
    """Name the field itself for a missing property, as a reader looks for it."""
    missing = _REQUIRED.match(message)
    if missing:
        where = ".".join([*path, missing["prop"]])
        return EntityError(where, f'"{where}" is required but missing')
    where = ".".join(path)
    return EntityError(where, f'"{where}" is not valid: {message}'.replace("\n", " "))


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__


_DEFAULT = Validator()


def validate_entity(entity: object) -> list[EntityError]:
    """Validate against the built-in kinds (a convenience for callers with no plugins)."""
    return _DEFAULT.validate(entity)
