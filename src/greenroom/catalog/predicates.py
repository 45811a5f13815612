"""Filter predicates: the ``query`` of ``POST /entities/by-query`` and ``POST /entity-facets``.

Backstage's catalog (4.0) takes a JSON predicate besides the ``filter`` parameters::

    {"$all": [{"kind": "component"},
              {"$not": {"spec.lifecycle": {"$in": ["deprecated", "experimental"]}}},
              {"metadata.tags": {"$hasPrefix": "java"}},
              {"relations": {"$contains": {"type": "ownedBy", "targetRef": "group:default/a"}}}]}

An object of fields means all of them hold; ``$all``, ``$any`` and ``$not`` combine predicates;
a field's value is a string, number or boolean (equal, case-insensitively, to one of the field's
values), or ``{"$exists": bool}``, ``{"$in": [...]}``, ``{"$hasPrefix": "..."}``, or
``{"$contains": value}`` (on ``relations``: ``{"type": ..., "targetRef": ... or {"$in": [...]}}``).
The rules are those of ``@backstage/filter-predicates`` (its schema) and of the catalog's
``applyPredicateEntityFilterToQuery`` (what each form matches, and its errors).

A predicate is parsed into a small tree (:data:`Node`) that :func:`greenroom.catalog.queries
.filter_conditions` turns into SQL. The ``filter`` parameters become the same tree (an
``$any`` of ``$all``\\ s, as Backstage converts them too), so both are answered by one piece of
code, with the same indexes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from greenroom.exceptions import InvalidInput

#: Bounds of one predicate, so that a request cannot ask for a statement of unbounded size or
#: nest deeper than the parser recurses (Backstage sets none; its body limit is 100 kB). SQLite
#: refuses an expression more than 1,000 levels deep, and ``a OR b OR ...`` is one level per
#: term: the field conditions are bounded well below that, whatever wraps them (a page, a
#: count, facets). ``$in`` values sit in one ``IN`` list each, bounded by the parameters a
#: statement may have.
MAX_DEPTH = 32
MAX_CONDITIONS = 200
MAX_VALUES = 5000


@dataclass(frozen=True)
class Match:
    """A search key with a value among ``values`` (lower-cased), or, when ``values`` is
    ``None``, any row of the key (``prefix``: a value starting with it)."""

    key: str
    values: tuple[str, ...] | None = None
    prefix: str | None = None


@dataclass(frozen=True)
class All:
    """Every part holds (none: always true)."""

    parts: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    """At least one part holds (none: never true)."""

    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """The part does not hold."""

    part: Node


Node = Match | All | AnyOf | Not

T = TypeVar("T")
#: What ``.`` in a JavaScript pattern does not match: a field name holding one is refused.
LINE_BREAKS = ("\n", "\r", "\u2028", "\u2029")
_COMBINATORS = ("$all", "$any", "$not")
# In the order the schema tries them: an object with two of them is read as the first valid.
_OPERATORS = ("$exists", "$in", "$contains", "$hasPrefix")


def from_filters(sets: Sequence[dict[str, list[str] | None]]) -> Node | None:
    """The tree of ``filter`` parameters: each is ``{key: values or None}`` (all must hold);
    several are alternatives. ``None`` when there is no filter.

    Alternatives that are each one value of one key (``filter=metadata.name=a&filter=
    metadata.name=b``, as a client fetching entities by name sends) become one condition with
    every value, as within one parameter: one ``IN`` rather than an ``OR`` per parameter, which
    SQLite refused past a few hundred. What remains is bounded as predicates are (a 400).
    """
    if not sets:
        return None
    merged: dict[str, list[str]] = {}
    parts: list[Node] = []
    for fset in sets:
        if len(fset) == 1:
            key, values = next(iter(fset.items()))
            if values is not None:
                if key not in merged:
                    merged[key] = []
                    parts.append(Match(key))  # its place; the values come below
                merged[key].extend(values)
                continue
        parts.append(
            All(
                tuple(
                    Match(key, None if values is None else tuple(values))
                    for key, values in fset.items()
                )
            )
        )
    tree = AnyOf(
        tuple(
            Match(part.key, tuple(dict.fromkeys(merged[part.key])))
            if isinstance(part, Match)
            else part
            for part in parts
        )
    )
    matches = _matches(tree)
    if len(matches) > MAX_CONDITIONS or sum(len(m.values or ()) for m in matches) > MAX_VALUES:
        raise InvalidInput(
            f"Invalid filter: more than {MAX_CONDITIONS} conditions or {MAX_VALUES} values in all"
        )
    return tree


def _matches(node: Node) -> list[Match]:
    if isinstance(node, Match):
        return [node]
    if isinstance(node, Not):
        return _matches(node.part)
    return [match for part in node.parts for match in _matches(part)]


def parse(data: Any) -> Node:
    """The tree of a ``query`` from a request body; anything malformed is a 400 that names
    where (``query.$all[1].spec.type``)."""
    if not isinstance(data, dict):
        raise InvalidInput(f"Invalid query: query must be an object, got {_show(data)}")
    parser = _Parser()
    return parser.predicate(data, "query", 0)


class _Reader(Generic[T]):
    """What both kinds of predicate share: the structure that ``@backstage/filter-predicates``'s
    schema allows (an object of fields, or one of ``$all``, ``$any``, ``$not`` alone), its
    bounds, and which value operator an object is read as. What a part means is the
    subclass's."""

    def __init__(self) -> None:
        self.conditions = 0
        self.values = 0

    def predicate(self, data: Any, where: str, depth: int) -> T:
        if depth > MAX_DEPTH:
            raise InvalidInput(f"Invalid query: {where}: nested more than {MAX_DEPTH} levels deep")
        if not isinstance(data, dict):
            raise InvalidInput(f"Invalid query: {where}: expected an object, got {_show(data)}")
        combinator = [key for key in data if key in _COMBINATORS]
        if not combinator:
            self.check_keys(data, where)
            fields = []
            for key, value in data.items():
                self.conditions += 1
                if self.conditions > MAX_CONDITIONS:
                    raise InvalidInput(
                        f"Invalid query: more than {MAX_CONDITIONS} field conditions"
                    )
                fields.append(self.field(key, value, f"{where}.{key}"))
            return self.every(fields)
        op = combinator[0]
        if len(data) != 1:
            others = ", ".join(sorted(repr(k) for k in data if k != op))
            raise InvalidInput(f"Invalid query: {where}: {op} cannot stand beside {others}")
        if op == "$not":
            return self.negate(self.predicate(data[op], f"{where}.$not", depth + 1))
        if not isinstance(data[op], list):
            raise InvalidInput(f"Invalid query: {where}.{op}: expected an array")
        parts = [
            self.predicate(item, f"{where}.{op}[{i}]", depth + 1) for i, item in enumerate(data[op])
        ]
        return self.every(parts, listed=True) if op == "$all" else self.some(parts)

    @staticmethod
    def operator(value: dict[str, Any]) -> tuple[str, Any] | None:
        """The operator an object of a field is read as, and its operand; ``None``: none (the
        schema tries each form in turn, so the first well-formed one wins)."""
        for op in _OPERATORS:
            if op not in value:
                continue
            operand = value[op]
            if (
                (op == "$exists" and isinstance(operand, bool))
                or (op == "$in" and isinstance(operand, list) and all(map(_is_primitive, operand)))
                or (op == "$hasPrefix" and isinstance(operand, str))
                or (op == "$contains" and (_is_primitive(operand) or isinstance(operand, dict)))
            ):
                return op, operand
        return None

    def counted(self, values: list[Any], where: str) -> list[Any]:
        """``values`` of an ``$in``, counted against :data:`MAX_VALUES`."""
        self.values += len(values)
        if self.values > MAX_VALUES:
            raise InvalidInput(f"Invalid query: {where}: more than {MAX_VALUES} values in all")
        return values

    def check_keys(self, data: dict[str, Any], where: str) -> None:
        raise NotImplementedError

    def field(self, key: str, value: Any, where: str) -> T:
        raise NotImplementedError

    def every(self, parts: list[T], *, listed: bool = False) -> T:
        """All of ``parts`` (the fields of an object, or the items of ``$all`` when
        ``listed``)."""
        raise NotImplementedError

    def some(self, parts: list[T]) -> T:
        raise NotImplementedError

    def negate(self, part: T) -> T:
        raise NotImplementedError


class _Parser(_Reader[Node]):
    """Entity predicates, as trees for :func:`greenroom.catalog.queries.filter_conditions`."""

    def check_keys(self, data: dict[str, Any], where: str) -> None:
        for key in data:
            if key.startswith("$"):
                raise InvalidInput(f"Invalid query: {where}: unknown operator {key!r}")
            if any(c in key for c in LINE_BREAKS):  # the schema's pattern, in JavaScript
                raise InvalidInput(f"Invalid query: {where}: a field cannot hold a line break")
            _utf8(key, where)

    def every(self, parts: list[Node], *, listed: bool = False) -> Node:
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def some(self, parts: list[Node]) -> Node:
        return AnyOf(tuple(parts))

    def negate(self, part: Node) -> Node:
        return Not(part)

    def field(self, key: str, value: Any, where: str) -> Node:
        key = key.lower()
        if _is_primitive(value):
            return Match(key, (_text(value, where),))
        found = self.operator(value) if isinstance(value, dict) else None
        if found is not None:
            op, operand = found
            if op == "$exists":
                return Match(key) if operand else Not(Match(key))
            if op == "$in":
                values = self.counted(operand, where)
                return Match(key, tuple(_text(v, f"{where}.$in") for v in values))
            if op == "$hasPrefix":
                return Match(key, prefix=_utf8(operand, where).lower())
            return self.contains(key, operand, f"{where}.$contains")
        raise InvalidInput(
            f'Invalid filter predicate value for field "{key}": expected a primitive value, '
            f"$exists, $in, $hasPrefix, or $contains operator, but got {_show(value)}"
        )

    def contains(self, key: str, target: Any, where: str) -> Node:
        if _is_primitive(target):
            return Match(key, (_text(target, where),))
        if not isinstance(target, dict):
            raise InvalidInput(f'Unsupported $contains target for field "{key}": {_show(target)}')
        if key != "relations":
            raise InvalidInput(f'Object form of $contains is not supported for field "{key}"')
        type_: str | None = None
        targets: tuple[str, ...] | None = None
        seen: set[str] = set()
        for raw_key, value in target.items():
            name = raw_key.lower()
            if name in seen:
                raise InvalidInput(f'Duplicate key "{raw_key}" in $contains for "relations"')
            seen.add(name)
            if name == "type":
                if not isinstance(value, str):
                    break  # reported below, as a missing type
                type_ = value
            elif name == "targetref":
                targets = self.target_refs(value, where)
            else:
                raise InvalidInput(
                    f'Unsupported key "{raw_key}" in $contains for "relations". '
                    'Only "type" and "targetRef" are supported'
                )
        if not type_:
            raise InvalidInput(
                'The $contains operator for "relations" requires a "type" string property'
            )
        return Match(f"relations.{type_.lower()}", targets)

    def target_refs(self, value: Any, where: str) -> tuple[str, ...]:
        """The ``targetRef`` of a relations ``$contains``: one ref, or ``{"$in": [refs]}``
        (counted with every other ``$in``)."""
        if isinstance(value, str):
            return (_utf8(value, "targetRef").lower(),)
        if (
            isinstance(value, dict)
            and list(value) == ["$in"]
            and isinstance(value["$in"], list)
            and all(isinstance(v, str) for v in value["$in"])
        ):
            if not value["$in"]:
                raise InvalidInput('Empty "$in" array for $contains on "relations" is not allowed')
            refs = self.counted(value["$in"], where)
            return tuple(_utf8(v, "targetRef").lower() for v in refs)
        raise InvalidInput(
            'Unsupported value in $contains for "relations": expected a string or '
            f'{{ "$in": [strings] }}, but got {_show(value)}'
        )


def _is_primitive(value: Any) -> bool:
    return isinstance(value, str | int | float)  # bool is an int


def _text(value: str | int | float, where: str) -> str:
    """A primitive as JavaScript's ``String(value).toLowerCase()`` writes it, which is what
    Backstage compares with the lower-cased search values (``1.0`` is ``"1"``)."""
    return _js_text(value, where).lower()


def _js_text(value: str | int | float, where: str) -> str:
    """A primitive as JavaScript's ``String(value)`` writes it (JSON numbers are doubles
    there: ``1.0`` is ``"1"``, ``1e-5`` is ``"0.00001"``, ``10**22`` is ``"1e+22"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _utf8(value, where)
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a double: JavaScript reads Infinity
        return "Infinity" if value > 0 else "-Infinity"
    if not math.isfinite(number):
        raise InvalidInput(f"Invalid query: {where}: {value} is not a JSON number")
    return _js_number(number)


def _js_number(number: float) -> str:
    """ECMAScript's Number::toString: the shortest digits that read back as ``number`` (as
    ``repr``), written without an exponent from 1e-7 up to 1e21."""
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    mantissa, _, exponent = repr(abs(number)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    point = len(whole) + int(exponent or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        rest = f".{digits[1:]}" if k > 1 else ""
        text = f"{digits[0]}{rest}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + text


def _utf8(text: str, where: str) -> str:
    """``text``, refused when it cannot be stored (a lone surrogate from a ``\\ud800`` escape)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise InvalidInput(f"Invalid query: {where}: not valid Unicode text") from None
    return text


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- registered locations ----------------------------------------------------------------

#: The fields of ``POST /locations/by-query`` predicates, by their lower-cased names.
LOCATION_FIELDS = {"id": "id", "type": "type", "target": "target", "entityref": "entityRef"}

LocationTest = Callable[[dict[str, str]], bool]
#: A location test, or ``None`` for a part that sets no condition (``{}``, or ``$not`` or
#: ``$any`` of only such parts): Backstage's query builder drops empty groups, so such a part
#: neither matches nor fails, it is left out.
MaybeTest = LocationTest | None


def location_test(data: Any) -> MaybeTest:
    """A test of registered locations (``{"id", "type", "target", "entityRef"}``) for the
    ``query`` of ``POST /locations/by-query``.

    Backstage answers these from its locations table with its own rules, which differ from
    the entities' (``applyLocationFilterToQuery``): values compare case-insensitively but ``id``
    in ``$in`` exactly, ``$contains`` matches nothing, and so does ``$all: []``. Registered
    locations are few (each is a root the catalog reads), so they are tested here one by one.
    """
    if not isinstance(data, dict):
        raise InvalidInput("Query must be an object")
    return _LocationParser().predicate(data, "query", 0)


class _LocationParser(_Reader[MaybeTest]):
    """Location predicates, as tests of each location."""

    def check_keys(self, data: dict[str, Any], where: str) -> None:
        if any(key.startswith("$") for key in data):
            raise InvalidInput(
                f"Invalid filter predicate, unknown logic operator '{', '.join(data)}'"
            )

    def every(self, parts: list[MaybeTest], *, listed: bool = False) -> MaybeTest:
        if listed and not parts:  # Backstage's locations: an empty $all matches nothing
            return lambda location: False
        tests = [part for part in parts if part is not None]
        if not tests:
            return None
        return lambda location: all(test(location) for test in tests)

    def some(self, parts: list[MaybeTest]) -> MaybeTest:
        if not parts:
            return lambda location: False
        tests = [part for part in parts if part is not None]
        if not tests:
            return None
        return lambda location: any(test(location) for test in tests)

    def negate(self, part: MaybeTest) -> MaybeTest:
        if part is None:
            return None
        return lambda location: not part(location)

    def field(self, key: str, value: Any, where: str) -> LocationTest:
        name = LOCATION_FIELDS.get(key.lower())
        if name is None:
            raise InvalidInput(
                "Invalid filter predicate, expected key to be 'id', 'type', 'target', or "
                f"'entityRef', got '{key}'"
            )
        if _is_primitive(value):
            wanted = _js_text(value, where).upper()
            return lambda location: location[name].upper() == wanted
        found = self.operator(value) if isinstance(value, dict) else None
        if found is not None:
            op, operand = found
            if op == "$exists":
                return lambda location: bool(operand)  # every field of a location has a value
            if op == "$in":
                texts = {_js_text(v, f"{where}.$in") for v in self.counted(operand, where)}
                if name == "id":
                    return lambda location: location["id"] in texts
                upper = {text.upper() for text in texts}
                return lambda location: location[name].upper() in upper
            if op == "$hasPrefix":
                prefix = operand.upper()
                return lambda location: location[name].upper().startswith(prefix)
            return lambda location: False  # $contains, on locations
        raise InvalidInput(f"Invalid filter predicate, got unknown matcher object '{_show(value)}'")
