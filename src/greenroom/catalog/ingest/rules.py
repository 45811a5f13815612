"""``catalog.rules``: which kinds may come from which locations.

Backstage's default, when no rules are configured, allows only Component, API and Location.
A rule with ``locations`` applies to entities whose *origin* (the configured or registered root
location) matches, by exact ``target`` or case-insensitive glob ``pattern``, as in Backstage; a
config location's own ``rules`` apply to everything read under it.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from greenroom.catalog.ingest.reading import split_key
from greenroom.config import Rule


class RulesEnforcer:
    """Answers whether an entity of a kind may come from a location."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    def allows(self, kind: str, origin_key: str, root_kinds: tuple[str, ...] | None) -> bool:
        """True when ``kind`` coming from the root ``origin_key`` is allowed by the rules."""
        kind_l = kind.lower()
        if root_kinds is not None and kind_l in (k.lower() for k in root_kinds):
            return True
        type_, target = split_key(origin_key)
        for rule in self.rules:
            if kind_l not in (k.lower() for k in rule.allow):
                continue
            if rule.locations is None:
                return True
            for loc in rule.locations:
                if loc.type != type_:
                    continue
                if loc.target is not None and loc.target == target:
                    return True
                if loc.pattern is not None and fnmatchcase(target.lower(), loc.pattern.lower()):
                    return True
                if loc.target is None and loc.pattern is None:
                    return True
        return False
