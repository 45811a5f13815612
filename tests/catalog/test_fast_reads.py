"""Full text and facets give the answers of the plain definitions, whatever path serves them.

Full text: every answer of ``/entities/by-query`` with a term is compared with the definition
computed in Python from the served entities (Backstage's search rows, substring match, order
by the smallest value, ties by ref in the same direction), matched in the process's memory
and by the database, with and without the trigram indexes; the copy in memory never outlives
a write. Facets: the per-process
cache never outlives a write, also one made by another app on the same database.
"""

from __future__ import annotations

import itertools
from array import array
from typing import Any

import pytest
import sqlalchemy as sa

from greenroom.catalog.model.refs import format_ref
from greenroom.catalog.queries import full_text_refs
from greenroom.catalog.tables import DEFERRED_INDEXES
from greenroom.catalog.text_index import create_text_indexes, drop_text_indexes
from greenroom.catalog.text_memory import SEPARATOR, TextMatcher, TextSnapshot, _Column
from greenroom.db import read_generation
from tests.catalog.oracle import backstage_rows, values_by_key

COMPONENT = """
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: {name}
  title: "{title}"
  description: "{description}"
  tags: [{tags}]
spec: {{type: {type}, lifecycle: production, owner: {owner}}}
"""
USER = """
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {{name: {name}}}
spec: {{profile: {{displayName: "{display}"}}, memberOf: [team-a]}}
"""
GROUP = """
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: team-a, title: "Team A"}
spec: {type: team, children: []}
"""
TITLES = [
    "Billing Service",
    "100% Uptime",
    "snake_case Tool",
    "Back\\\\slash",
    "Ümlaut Größe",
    "SVC one",
    "svc_two",
    "Service 10",
]


def documents() -> dict[str, str]:
    docs = [GROUP]
    for i in range(24):
        docs.append(
            COMPONENT.format(
                name=f"svc-{i:02d}" if i % 3 else f"Svc_{i:02d}.core",
                title=TITLES[i % len(TITLES)] + ("" if i < 8 else f" {i}"),
                description=f"Handles {'billing' if i % 2 else 'payments'} at 50% load",
                tags="python, tier-1" if i % 2 else "java",
                type="service" if i % 4 else "website",
                owner="team-b" if i % 5 == 1 else "team-a",
            )
        )
    for i, display in enumerate(["Ada Lovelace", "Bob_Builder", "Zoë %Percent"]):
        docs.append(USER.format(name=f"user-{i}", display=display))
    return {"all.yaml": "\n---\n".join(docs)}


TERMS = [
    "s",
    "Sv",
    "svc",
    "SERVICE 1",
    "%",
    "_",
    "100%",
    "e_c",
    "\\",
    "größe",
    "zz",
    " bill ",
]
FIELDS = [
    "metadata.name",
    "metadata.title",
    "metadata.name,metadata.title",
    "metadata.name,metadata.title,spec.profile.displayName",
    "metadata.description",
    "metadata.tags,spec.type",
]
FILTERS: list[list[str]] = [
    [],
    ["kind=component"],
    ["kind=component,spec.type=website"],
]
ORDERS = [
    ["metadata.name,asc"],
    ["metadata.name,desc"],
    ["metadata.title,asc"],
    [],
]


# Keys ``relations.*``, read from the relations (``relation_search.py``), in fewer combinations.
RELATION_CASES = list(
    itertools.product(
        ["s", "user:default/user-1", "m-b", "%"],  # user-1: a relation's target only (hasMember)
        ["relations.ownedby", "relations.hasmember,metadata.name", ""],  # "": the order's field
        [[], ["relations.ownedby=group:default/team-b"], ["kind=group,relations.hasmember"]],
        [["relations.ownedby,desc"], ["relations.hasmember,asc"], ["metadata.name,asc"], []],
    )
)


def expected(
    entities: list[dict[str, Any]],
    term: str,
    fields: str,
    filters: list[str],
    order: list[str],
) -> list[str]:
    """The definition: refs in order (Backstage's semantics on its search table)."""
    wanted = term.strip().lower()
    keys = [f.lower() for f in fields.split(",") if f]
    if not keys:  # Backstage: the order's field, else the uid
        keys = [order[0].partition(",")[0].lower()] if order else ["metadata.uid"]
    out: list[tuple[str | None, str]] = []
    for entity in entities:
        ref = format_ref(
            entity["kind"], entity["metadata"].get("namespace"), entity["metadata"]["name"]
        )
        values = values_by_key(entity)
        if not any(wanted in v for k in keys for v in values.get(k, [])):
            continue
        if filters and not any(
            all(
                value.lower() in values.get(key.lower(), []) if eq else key.lower() in values
                for key, eq, value in (cond.partition("=") for cond in f.split(","))
            )
            for f in filters
        ):
            continue
        if not order:
            out.append(("", ref))
            continue
        found = values.get(order[0].partition(",")[0].lower())
        out.append((min(found) if found else None, ref))
    descending = bool(order) and order[0].endswith(",desc")
    # Ties, and entities without a value (last), by ref in the order's direction.
    present = sorted(((v, r) for v, r in out if v is not None), reverse=descending)
    missing = sorted((ref for value, ref in out if value is None), reverse=descending)
    return [ref for _, ref in present] + missing


def all_pages(catalog: Any, params: list[tuple[str, str]]) -> tuple[list[str], int]:
    """Every page of a by-query, in order, and the total of the first page."""
    first = catalog.get("/entities/by-query", params=[*params, ("limit", "4")])
    total = first["totalItems"]
    page = first
    refs: list[str] = []
    while True:
        refs += [
            format_ref(e["kind"], e["metadata"].get("namespace"), e["metadata"]["name"])
            for e in page["items"]
        ]
        cursor = page["pageInfo"].get("nextCursor")
        if not cursor:
            return refs, total
        page = catalog.get("/entities/by-query", params={"cursor": cursor, "limit": "4"})


def check_all(catalog: Any) -> None:
    entities = catalog.get("/entities")
    cases = itertools.product(TERMS, FIELDS, FILTERS, ORDERS)
    for term, fields, filters, order in itertools.chain(cases, RELATION_CASES):
        params = [("fullTextFilterTerm", term), ("fullTextFilterFields", fields)]
        params += [("filter", f) for f in filters] + [("orderField", o) for o in order]
        refs, total = all_pages(catalog, params)
        want = expected(entities, term, fields, filters, order)
        if not order:
            refs, want = sorted(refs), sorted(want)  # Backstage leaves that order open
        assert (refs, total) == (want, len(want)), params


@pytest.fixture
def catalog(make_catalog: Any) -> Any:
    catalog = make_catalog(documents())
    catalog.refresh()
    return catalog


def test_full_text_gives_the_definition_from_memory_and_from_the_database(
    catalog: Any, make_catalog: Any
) -> None:
    check_all(catalog)  # names, titles and display names from the process's copy
    # Another app on the same database, matching every term in SQL.
    database = make_catalog(config={"catalog": {"fullTextInMemory": False}})
    check_all(database)
    with catalog.context.engine.begin() as conn:
        indexed = create_text_indexes(conn)  # already there: a no-op
        assert indexed == (conn.dialect.name == "postgresql")
        drop_text_indexes(conn)
    if indexed:
        check_all(database)  # the plain plan: same answers


LIST_ORDERS = [
    ["asc:spec.type"],
    ["desc:spec.type", "asc:metadata.title"],
    ["asc:metadata.tags"],  # several values: the smallest
    ["desc:spec.profile.displayname"],  # users only: the rest last
    ["desc:kind", "desc:metadata.description", "asc:metadata.name"],
    ["desc:relations.ownedby", "asc:metadata.name"],  # relations: catalog_relations
    ["asc:relations.hasmember"],
]


def expected_list(entities: list[dict[str, Any]], orders: list[str]) -> list[str]:
    """The definition of ``/entities?order=``: each order's smallest value of its key (nulls
    last in either direction), then ``ref`` ascending."""
    keyed: list[tuple[str, dict[str, str]]] = []
    for entity in entities:
        ref = format_ref(
            entity["kind"], entity["metadata"].get("namespace"), entity["metadata"]["name"]
        )
        smallest: dict[str, str] = {}
        for key, value, _ in backstage_rows(entity):
            if value is not None and (key not in smallest or value < smallest[key]):
                smallest[key] = value
        keyed.append((ref, smallest))
    keyed.sort(key=lambda item: item[0])
    for order in reversed(orders):  # stable sorts, the last order first
        direction, _, key = order.partition(":")
        present = [item for item in keyed if key in item[1]]
        present.sort(key=lambda item: item[1][key], reverse=direction == "desc")
        keyed = present + [item for item in keyed if key not in item[1]]
    return [ref for ref, _ in keyed]


def listed_refs(catalog: Any, orders: list[str], **params: str) -> list[str]:
    items = catalog.get("/entities", params=[("order", o) for o in orders] + list(params.items()))
    return [
        format_ref(e["kind"], e["metadata"].get("namespace"), e["metadata"]["name"]) for e in items
    ]


def test_listings_in_order_give_the_definition_with_and_without_the_search_indexes(
    catalog: Any,
) -> None:
    """``/entities?order=`` as defined, whole and by page, also while a first load has dropped
    the search indexes it builds at its end."""
    entities = catalog.get("/entities")

    def check() -> None:
        for orders in LIST_ORDERS:
            want = expected_list(entities, orders)
            assert listed_refs(catalog, orders) == want, orders
            assert listed_refs(catalog, orders, limit="7", offset="5") == want[5:12], orders

    check()
    with catalog.context.engine.begin() as conn:
        for index in DEFERRED_INDEXES:
            index.drop(conn)
    check()
    assert catalog.service.ingestion.ensure_indexes()


def test_full_text_from_memory_follows_writes_of_any_app_on_the_database(
    catalog: Any, make_catalog: Any
) -> None:
    other = make_catalog()  # another replica, no locations of its own
    params = {"fullTextFilterTerm": "uptime", "fullTextFilterFields": "metadata.title"}

    def names(app: Any) -> list[str]:
        found = app.get("/entities/by-query", params={**params, "orderField": "metadata.name"})
        return [e["metadata"]["name"] for e in found["items"]]

    both = ["svc-01", "svc-17", "Svc_09.core"]
    assert names(catalog) == names(other) == both  # both copies built
    (catalog.root / "all.yaml").write_text(
        (catalog.root / "all.yaml").read_text().replace('"100% Uptime 17"', '"Downtime"')
    )
    catalog.refresh()
    assert names(catalog) == names(other) == ["svc-01", "Svc_09.core"]
    uid = catalog.entity("component", "Svc_09.core")["metadata"]["uid"]
    assert other.client.delete(f"/api/catalog/entities/by-uid/{uid}").status_code == 204
    assert names(catalog) == names(other) == ["svc-01"]


def test_a_match_in_memory_never_spans_two_values(catalog: Any) -> None:
    with catalog.context.engine.connect() as conn:
        snapshot = TextSnapshot.read(conn)
        # The separator lies between every two values, and inside none.
        assert snapshot.refs_matching(SEPARATOR, ["metadata.name", "metadata.title"]) == []
        assert snapshot.refs_matching("svc_00.core", ["metadata.name"]) == [
            "component:default/svc_00.core"
        ]
        user = snapshot.refs_matching("ë %p", ["spec.profile.displayname"])
        assert user == ["user:default/user-2"]

    column = _Column(
        text=SEPARATOR.join(["ab", "b\nc", "c"]),  # "ab|b\nc|c", with "\n" between
        starts=array("q", [0, 3, 7]),
        owners=array("q", [0, 1, 2]),
    )
    # A separator inside a value matches there; the same text across two values does not.
    assert column.owners_matching("b\nc") == {1}
    assert column.owners_matching("b\n") == {1}
    assert column.owners_matching("c\nc") == set()
    assert column.owners_matching("c") == {1, 2}


def test_full_text_is_answered_by_the_database_while_the_copy_is_being_built(
    catalog: Any,
) -> None:
    matcher = TextMatcher()
    fields = ["metadata.name"]
    with catalog.context.engine.connect() as conn:
        with matcher._building:  # another thread is building the copy
            assert matcher.refs(conn, "svc_1", fields) is None
        assert matcher.refs(conn, "svc_1", fields) == [
            "component:default/svc_12.core",
            "component:default/svc_15.core",
            "component:default/svc_18.core",
        ]
        assert matcher.refs(conn, "svc", ["metadata.description"]) is None  # not a text key
        assert matcher.refs(conn, "svc", []) is None  # every key
        assert TextMatcher(enabled=False).refs(conn, "svc", fields) is None


def test_terms_without_a_trigram_do_not_scan_the_trigram_indexes(catalog: Any) -> None:
    """pg_trgm answers a term it takes no trigram from with every entry of the index (a
    two-letter term took 280 ms at 50,000 entities): such terms must plan without it."""
    engine = catalog.context.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("trigram indexes are PostgreSQL's")
    fields = ["metadata.name", "metadata.title"]
    with engine.connect() as conn:
        # Leave the planner nothing but the trigram indexes (rolled back at the end): it looks
        # a term up in them whenever the query lets it.
        conn.exec_driver_sql("DROP INDEX ix_catalog_search_key_value, ix_catalog_search_entity_key")
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")

        def plan(term: str) -> str:
            """EXPLAIN of the statement and parameters the query sends."""
            sent: list[tuple[str, Any]] = []

            def capture(*args: Any) -> None:
                sent.append((args[2], args[3]))

            query = sa.select(full_text_refs(term, fields).c.ref)  # type: ignore[union-attr]
            sa.event.listen(conn, "before_cursor_execute", capture)
            try:
                conn.execute(query).all()
            finally:
                sa.event.remove(conn, "before_cursor_execute", capture)
            statement, parameters = sent[0]
            return "\n".join(conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars())

        trigram_lookup = "Index Cond: ((value)::text ~~"
        assert trigram_lookup in plan("svc")
        for term in ["sv", "e_c", "1%", "a b"]:
            assert trigram_lookup not in plan(term), term


def test_full_text_total_past_the_end_and_without_total(catalog: Any) -> None:
    params = {"fullTextFilterTerm": "svc", "fullTextFilterFields": "metadata.name"}
    everything = catalog.get("/entities/by-query", params=params)
    assert everything["totalItems"] == 24
    past = catalog.get("/entities/by-query", params={**params, "offset": "50", "limit": "5"})
    assert (past["items"], past["totalItems"]) == ([], 24)
    without = catalog.get("/entities/by-query", params={**params, "totalItems": "exclude"})
    assert without["totalItems"] == 0 and len(without["items"]) == 24


def test_facets_follow_writes_of_any_app_on_the_database(make_catalog: Any) -> None:
    first = make_catalog(documents())
    first.refresh()
    second = make_catalog()  # another replica on the same database, no locations of its own
    params = {"facet": "spec.type", "filter": "kind=component"}
    before = {
        "facets": {
            "spec.type": [{"value": "service", "count": 18}, {"value": "website", "count": 6}]
        }
    }
    assert first.get("/entity-facets", params=params) == before
    assert second.get("/entity-facets", params=params) == before  # now cached in both
    with first.context.engine.connect() as conn:
        cached_at = read_generation(conn)
    first.refresh()  # nothing changed: the cached facets stay good
    with first.context.engine.connect() as conn:
        assert read_generation(conn) == cached_at

    (first.root / "all.yaml").write_text(
        (first.root / "all.yaml").read_text().replace("type: website", "type: library")
    )
    first.refresh()
    after = {
        "facets": {
            "spec.type": [{"value": "library", "count": 6}, {"value": "service", "count": 18}]
        }
    }
    assert first.get("/entity-facets", params=params) == after
    assert second.get("/entity-facets", params=params) == after

    uid = first.entity("component", "svc-01")["metadata"]["uid"]
    assert second.client.delete(f"/api/catalog/entities/by-uid/{uid}").status_code == 204
    gone = {
        "facets": {
            "spec.type": [{"value": "library", "count": 6}, {"value": "service", "count": 17}]
        }
    }
    assert first.get("/entity-facets", params=params) == gone
    assert second.get("/entity-facets", params=params) == gone


def test_facets_count_each_spelling_apart(make_catalog: Any) -> None:
    """As Backstage: ``Service`` and ``service`` are two facet values, though a filter matches
    both. The spelling is stored only where it differs from the lower-cased value, so this
    also checks that a value written in lower case comes back as written."""
    spellings = ["service", "Service", "service", "SERVICE", "website", "Service"]
    docs = [GROUP] + [
        COMPONENT.format(
            name=f"c-{i}",
            title="t",
            description="d",
            tags="java" if i % 2 else "go",
            type=t,
            owner="team-a",
        )
        for i, t in enumerate(spellings)
    ]
    catalog = make_catalog({"all.yaml": "\n---\n".join(docs)})
    catalog.refresh()
    params = [("facet", "spec.type"), ("facet", "kind"), ("filter", "kind=component")]
    assert catalog.get("/entity-facets", params=params)["facets"] == {
        "spec.type": [
            {"value": "SERVICE", "count": 1},
            {"value": "Service", "count": 2},
            {"value": "service", "count": 2},
            {"value": "website", "count": 1},
        ],
        "kind": [{"value": "Component", "count": 6}],
    }
    filtered = [("facet", "spec.type"), ("filter", "spec.type=SERVICE,metadata.tags=java")]
    assert catalog.get("/entity-facets", params=filtered)["facets"] == {
        "spec.type": [{"value": "SERVICE", "count": 1}, {"value": "Service", "count": 2}]
    }
    (catalog.root / "all.yaml").write_text(
        (catalog.root / "all.yaml").read_text().replace("type: Service", "type: service")
    )
    catalog.refresh()
    assert catalog.get("/entity-facets", params=[("facet", "spec.type")])["facets"] == {
        "spec.type": [
            {"value": "SERVICE", "count": 1},
            {"value": "file", "count": 1},
            {"value": "service", "count": 4},
            {"value": "team", "count": 1},
            {"value": "website", "count": 1},
        ]
    }


def test_by_query_reads_in_one_round_trip_each_unless_the_database_matches(
    catalog: Any, make_catalog: Any
) -> None:
    """On PostgreSQL a by-query answered from the copy in memory (or without a term and
    without an order) sends its statements alone, no BEGIN and ROLLBACK around them; matching
    in SQL, and an ordered page read from the index, need a transaction for their planner
    settings (``SET LOCAL``), which must then hold."""
    if catalog.context.engine.dialect.name != "postgresql":
        pytest.skip("SQLite reads make no round trips")
    from psycopg.pq import TransactionStatus

    def statuses(app: Any, params: dict[str, str]) -> tuple[list[bool], list[str]]:
        """Whether a transaction was open when each statement was sent; the found names."""
        seen: list[bool] = []

        def record(conn: sa.Connection, *_: Any) -> None:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            seen.append(raw.info.transaction_status == TransactionStatus.INTRANS)

        engine = app.context.engine
        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            found = app.get("/entities/by-query", params=params)
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)
        return seen, [e["metadata"]["name"] for e in found["items"]]

    term = {
        "fullTextFilterTerm": "uptime",
        "fullTextFilterFields": "metadata.title",
        "orderField": "metadata.name",
    }
    uptime = ["svc-01", "svc-17", "Svc_09.core"]
    statuses(catalog, term)  # the copy in memory is built
    sent, names = statuses(catalog, term)
    # (The generation is read through the driver's cursor, which the events do not see.)
    assert names == uptime and len(sent) >= 1 and not any(sent)
    sent, names = statuses(catalog, {"filter": "kind=user"})
    assert names == ["user-0", "user-1", "user-2"] and not any(sent)
    sent, names = statuses(catalog, {"filter": "kind=user", "orderField": "metadata.name,desc"})
    assert names == ["user-2", "user-1", "user-0"] and sent[1:] and all(sent[1:])
    database = make_catalog(config={"catalog": {"fullTextInMemory": False}})
    sent, names = statuses(database, term)
    assert names == uptime and sent[1:] and all(sent[1:])  # SET LOCAL, then in its transaction
