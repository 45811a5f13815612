"""The final entity flattened into ``key = value`` rows, as Backstage's ``buildEntitySearch``.

Keys are dotted paths, lower-cased; values are lower-cased strings. Arrays repeat their key per
item, and an array of strings also yields ``path.<item> = true`` so that ``metadata.tags.java``
can be filtered on. Keys over 200 characters are skipped and values over 200 characters are
stored as NULL, as Backstage does, so that the index stays small.

Backstage also writes a row ``relations.<type> = <targetRef>`` per relation. Greenroom does not:
those pairs are ``catalog_relations`` itself (a quarter of all search rows, and the only rows
a peer's stitch would rewrite), and ``relation_search.py`` answers filters, facets, full text
and order on ``relations.*`` keys from that table, with the same answers.

``original_value`` keeps the spelling for facets, but only where it differs from ``value``: it
is NULL for a value written in lower case, as nearly all are (Backstage stores both always).
The filter index ``(key, value, ref, original_value)`` then answers facets by itself without
holding a second copy of every value, and the table keeps one copy instead of two.
"""

from __future__ import annotations

from typing import Any

MAX_KEY = 200
MAX_VALUE = 200
#: ref, key, value, original_value (None when the same as value), the entity's id.
Row = tuple[str, str, str | None, str | None, int]
SKIPPED = frozenset(
    {
        "attachments",
        "relations",
        "status",
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "metadata.etag",
    }
)


def _traverse(root: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    append = out.append  # this and _rows run for every entity written: kept to the bone

    def visit(path: str, current: Any) -> None:
        if path in SKIPPED:
            return
        if isinstance(current, dict):
            prefix = f"{path}." if path else ""
            for key, value in current.items():
                visit(f"{prefix}{key}", value)
        elif isinstance(current, list):
            seen: set[str] = set()
            for item in current:
                visit(path, item)
                if isinstance(item, str):
                    folded = item.lower()
                    if folded not in seen:
                        seen.add(folded)
                        append((f"{path}.{item}", True))
        elif current is None or isinstance(current, (str, int, float)):  # bool is an int
            append((path, current))

    visit("", root)
    return out


def _text(value: Any) -> str:
    """``String(value)`` as JavaScript writes it, so that ``1.0`` matches ``1``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def search_rows(ref: str, entity: dict[str, Any], entity_id: int) -> list[Row]:
    """The search rows of one final entity, whose ref and id are ``ref`` and ``entity_id``:
    ``(ref, key, value, original_value, entity_id)``."""
    meta = entity.get("metadata") or {}
    raw = _traverse(entity)
    raw.append(("metadata.name", meta.get("name")))
    raw.append(("metadata.namespace", meta.get("namespace") or "default"))
    raw.append(("metadata.uid", meta.get("uid")))
    return _rows(ref, entity_id, raw)


def _rows(ref: str, entity_id: int, raw: list[tuple[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    append = rows.append
    seen: set[tuple[str, str | None]] = set()
    for raw_key, raw_value in raw:
        key = raw_key.lower()
        if len(key) > MAX_KEY:
            continue
        if raw_value is None:
            value = original = None
        else:
            original = raw_value if type(raw_value) is str else _text(raw_value)
            value = original.lower()
            if len(value) > MAX_VALUE:
                value = original = None
            elif original == value:
                original = None
        pair = (key, value)
        if pair in seen:
            continue
        seen.add(pair)
        append((ref, key, value, original, entity_id))
    return rows
