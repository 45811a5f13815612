"""The database layer: migrations on both databases, planner statistics, the write lock."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

from greenroom import db
from greenroom.catalog import queries
from greenroom.catalog.tables import lz4_available
from greenroom.catalog.text_index import TEXT_KEYS

#: ``catalog_search`` before migration 0014 (no ``entity_id``), for tests of older revisions.
OLD_SEARCH_COLUMNS = ("ref", "key", "value", "original_value")
old_search = sa.table("catalog_search", *(sa.column(name) for name in OLD_SEARCH_COLUMNS))


def test_migrations_and_statistics(database_url: str) -> None:
    engine = db.create_engine(database_url)
    db.upgrade(engine)
    db.upgrade(engine)  # a second upgrade is a no-op
    db.refresh_statistics(engine)  # VACUUM must run outside a transaction on PostgreSQL
    with engine.connect() as conn:
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        assert version == "0016"
        if conn.dialect.name == "postgresql":
            names = conn.execute(sa.text("SELECT stxname FROM pg_statistic_ext")).scalars().all()
            assert "catalog_search_key_value_stats" in names
            indexes = set(
                conn.execute(
                    sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'catalog_search'")
                ).scalars()
            )
            assert set(TEXT_KEYS.values()) <= indexes
    engine.dispose()


def _definition(kind: str, sql: str | None) -> str | list[str]:
    """SQLite's text of a definition without quotes or the parentheses Alembic puts around
    defaults; a table's as its clauses in any order (columns that migrations added come
    last), an index's as written (its columns' order matters)."""
    text = " ".join((sql or "").replace('"', "").replace("DEFAULT ('')", "DEFAULT ''").split())
    if kind != "table":
        return text
    head, _, body = text.partition("(")
    return [head, *sorted(part.strip() for part in body.rsplit(")", 1)[0].split(","))]


def schema_of(engine: sa.Engine) -> dict[str, Any]:
    """Everything of a database's schema that a query or a migration could notice (indexes
    and SQLite's constraints as each database writes their definitions: SQLAlchemy does not
    reflect SQLite's indexes on expressions)."""
    described: dict[str, Any] = {}
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        for table in sorted(inspector.get_table_names()):
            described[table] = {
                # By name: a column added by a later migration comes last in its table.
                "columns": sorted(
                    (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                    for c in inspector.get_columns(table)
                ),
                "primary key": inspector.get_pk_constraint(table),
                "foreign keys": inspector.get_foreign_keys(table),
            }
        described["rows"] = [
            conn.exec_driver_sql("SELECT * FROM greenroom_generation").all(),
            conn.exec_driver_sql("SELECT * FROM alembic_version").all(),
        ]
        if conn.dialect.name == "sqlite":
            described["sql"] = sorted(
                (kind, name, _definition(kind, sql))
                for kind, name, sql in conn.exec_driver_sql(
                    "SELECT type, name, sql FROM sqlite_master"
                )
            )
        else:
            schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
            described["unique and check"] = {
                table: sorted(
                    (u["name"], tuple(u["column_names"]))
                    for u in inspector.get_unique_constraints(table)
                )
                + sorted((c["name"], c["sqltext"]) for c in inspector.get_check_constraints(table))
                for table in inspector.get_table_names()
            }
            described["column types"] = conn.exec_driver_sql(
                "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), "
                "a.attnotnull, coalesce(co.collname, ''), a.attcompression::text "
                "FROM pg_attribute a "
                "JOIN pg_class c ON c.oid = a.attrelid "
                "LEFT JOIN pg_collation co ON co.oid = a.attcollation "
                "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' "
                "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2"
            ).all()
            described["table options"] = conn.exec_driver_sql(
                "SELECT relname, coalesce(reloptions::text, '') FROM pg_class "
                "WHERE relnamespace = current_schema()::regnamespace ORDER BY 1"
            ).all()
            described["index definitions"] = sorted(
                definition.replace(f"{schema}.", "")
                for definition in conn.exec_driver_sql(
                    "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()"
                ).scalars()
            )
            described["statistics"] = conn.exec_driver_sql(
                "SELECT stxname, stxkind::text, stxkeys::text FROM pg_statistic_ext "
                "WHERE stxnamespace = current_schema()::regnamespace ORDER BY stxname"
            ).all()
            described["column options"] = conn.exec_driver_sql(
                "SELECT c.relname, a.attname, option FROM pg_attribute a "
                "JOIN pg_class c ON c.oid = a.attrelid, unnest(a.attoptions) option "
                "WHERE c.relnamespace = current_schema()::regnamespace "
                "AND NOT a.attisdropped AND starts_with(option, 'n_distinct') ORDER BY 1, 2"
            ).all()
    return described


def test_a_new_database_is_created_as_the_migrations_build_it(
    database_url: str, other_database_url: str
) -> None:
    """A new database is created from the tables' metadata in one step (``db.upgrade``), not by
    replaying every migration: both ways must give the same schema, down to PostgreSQL's
    statistics objects and column options, and the created one must take later migrations
    (its stamp, then a downgrade and upgrade through Alembic)."""
    migrated, created = db.create_engine(database_url), db.create_engine(other_database_url)
    migrate(migrated, "head")
    db.upgrade(created)
    assert db.is_current(created)
    expected = schema_of(migrated)
    assert schema_of(created) == expected
    assert "catalog_search" in expected and expected["rows"][0] == [(1, 0)]
    if created.dialect.name == "postgresql":
        assert expected["statistics"] and len(expected["column options"]) == 5
        with created.connect() as conn:
            lz4 = lz4_available(conn)
        compressed = {
            column: method
            for table, column, *_, method in expected["column types"]
            if table == "catalog_entities" and method
        }
        assert compressed == ({"final": "l", "processed": "l"} if lz4 else {})
    migrate(created, "0008", down=True)
    migrate(created, "head")
    assert schema_of(created) == expected
    migrated.dispose()
    created.dispose()


def test_replicas_starting_together_create_a_new_database_once(database_url: str) -> None:
    """Processes starting at once on an empty database: one creates it under the write lock,
    the others find it current (before the lock, one failed on tables that already existed)."""
    code = (
        "import sys, alembic.command, greenroom.catalog.tables; from greenroom import db; "
        f"engine = db.create_engine({database_url!r}); print('ready', flush=True); "
        "sys.stdin.readline(); db.upgrade(engine); print('ok')"
    )
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    for start in starts:  # imported: now all at once
        assert start.stdout is not None and start.stdout.readline().strip() == "ready"
    for start in starts:
        assert start.stdin is not None
        start.stdin.write("go\n")
        start.stdin.flush()
    assert [start.communicate(timeout=60)[0].strip() for start in starts] == ["ok"] * 4
    assert all(start.returncode == 0 for start in starts)
    engine = db.create_engine(database_url)
    assert db.is_current(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT * FROM greenroom_generation").all() == [(1, 0)]
    engine.dispose()


def test_a_current_database_starts_without_alembic(database_url: str) -> None:
    """Start-up recognises a database at the newest migration without importing Alembic (a
    tenth of a second of every start); the newest is read from the file names, which must
    agree with Alembic's own history."""
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    assert db.head_revision() == ScriptDirectory.from_config(cfg).get_current_head()
    engine = db.create_engine(database_url)
    assert not db.is_current(engine)
    db.upgrade(engine)
    assert db.is_current(engine)
    engine.dispose()
    code = (
        "import sys; from greenroom import db; "
        f"db.upgrade(db.create_engine({database_url!r})); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_data_write_changes_the_generation(database_url: str) -> None:
    engine = db.create_engine(database_url)
    db.upgrade(engine)
    with engine.connect() as conn:
        before = db.read_generation(conn)
    stitch_queue = db.metadata.tables["catalog_stitch_queue"]
    with db.write_transaction(engine) as conn:
        conn.execute(stitch_queue.insert().values(ref="component:default/a"))
    with db.write_transaction(engine) as conn:
        conn.execute(stitch_queue.delete().where(stitch_queue.c.ref == "component:default/zz"))
        conn.execute(sa.select(stitch_queue.c.ref)).all()  # wrote nothing: same generation
    with db.write_transaction(engine, changes_data=False) as conn:
        conn.execute(stitch_queue.delete())  # leases: bookkeeping that no answer depends on
    with engine.connect() as conn:
        assert db.read_generation(conn) == before + 1
    with db.write_transaction(engine) as conn:  # COPY on PostgreSQL
        db.bulk_insert(conn, stitch_queue, ["ref"], [("component:default/b",)])
    with engine.connect() as conn:
        assert db.read_generation(conn) == before + 2
    try:
        with db.write_transaction(engine) as conn:
            conn.execute(stitch_queue.delete())
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    with engine.connect() as conn:
        assert db.read_generation(conn) == before + 2  # a rolled-back write changed nothing
    engine.dispose()


def migrate(engine: sa.Engine, to: str, *, down: bool = False) -> None:
    """Upgrade (or downgrade) the database of ``engine`` to revision ``to``."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(cfg, to)


def test_stitch_marks_survive_the_move_to_their_own_table(database_url: str) -> None:
    """A mark left by a replica that died before the upgrade is still stitched after it."""
    engine = db.create_engine(database_url)
    migrate(engine, "0004")
    with engine.begin() as connection:
        for ref, mark in (("component:default/a", "true"), ("component:default/b", "false")):
            connection.exec_driver_sql(
                "INSERT INTO catalog_entities (ref, uid, kind, namespace, name, origin_key, "
                f"location_key, needs_stitch, updated_at) VALUES ('{ref}', '{ref}', 'Component', "
                f"'default', 'x', 'o', 'l', {mark}, '2026-01-01 00:00:00')"
            )
    db.upgrade(engine)
    with engine.connect() as conn:
        queued = conn.exec_driver_sql("SELECT ref FROM catalog_stitch_queue").scalars().all()
        columns = {c["name"] for c in sa.inspect(conn).get_columns("catalog_entities")}
    assert queued == ["component:default/a"]
    assert "needs_stitch" not in columns
    engine.dispose()


def test_writers_wait_for_each_other(database_url: str) -> None:
    engine = db.create_engine(database_url)
    db.upgrade(engine)
    order: list[str] = []
    inside = threading.Event()

    def first() -> None:
        with db.write_transaction(engine):
            order.append("first in")
            inside.set()
            time.sleep(0.3)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait(5)
    with db.write_transaction(engine):
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"]
    engine.dispose()


def test_a_pooled_connection_that_died_while_idle_is_replaced(database_url: str) -> None:
    """PostgreSQL ended the pooled connection (a restart, an idle-socket timeout): after
    ``ping_after_idle`` the pool checks it and hands out a new one; before, it is used as is."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite connections are files, not sockets")
    admin = db.create_engine(database_url)

    def kill(engine: sa.Engine) -> int:
        """Return one connection to ``engine``'s pool, ended by the server; its backend pid."""
        with engine.connect() as conn:
            pid = int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        time.sleep(0.2)
        return pid

    checked = db.create_engine(database_url, ping_after_idle=0, pool_size=1)
    pid = kill(checked)
    with checked.connect() as conn:  # a new connection, and no error
        assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() != pid

    trusted = db.create_engine(database_url, ping_after_idle=3600, pool_size=1)
    kill(trusted)
    with pytest.raises(sa.exc.OperationalError), trusted.connect() as conn:
        conn.execute(sa.text("SELECT 1"))  # not idle long enough to be checked: it fails
    with trusted.connect() as conn:  # and the pool has let the dead connection go
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1

    # The same through the driver's cursor (by-name, by-refs, the generation of cached answers)
    db.upgrade(admin)
    kill(trusted)
    with db.reader(trusted).connect() as conn:
        with pytest.raises(sa.exc.OperationalError) as failed:
            db.read_generation(conn)
        assert failed.value.connection_invalidated and conn.invalidated
    with db.reader(trusted).connect() as conn:
        assert db.read_generation(conn) >= 0
    for engine in (admin, checked, trusted):
        engine.dispose()


def test_reads_on_postgresql_need_no_transaction_and_leave_none_behind(database_url: str) -> None:
    """A read through ``reader`` is its statement alone (no BEGIN, no ROLLBACK: one round
    trip); the same pooled connection taken from the engine afterwards is transactional again."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite reads make no round trips")
    from psycopg.pq import TransactionStatus

    engine = db.create_engine(database_url, pool_size=1, max_overflow=0)
    with (  # a write through the reader would hold no lock and commit statement by statement
        pytest.raises(RuntimeError, match="needs the engine"),
        db.write_transaction(db.reader(engine)),
    ):
        pass
    with db.reader(engine).connect() as conn:
        conn.execute(sa.text("SELECT 1")).all()
        raw = conn.connection.dbapi_connection
        assert raw is not None and raw.info.transaction_status == TransactionStatus.IDLE
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1")).all()
        assert conn.connection.dbapi_connection is raw  # the same connection, from the pool
        assert raw.info.transaction_status == TransactionStatus.INTRANS
    engine.dispose()


def test_search_rows_keep_through_the_foreign_key_migration(database_url: str) -> None:
    """0009 drops the foreign key of ``catalog_search`` (SQLite by copying the table): rows
    and indexes stay, and a search row no longer needs its entity; downgrading restores it."""
    engine = db.create_engine(database_url)

    def state() -> tuple[list[tuple[str, str, str]], set[tuple[Any, tuple[Any, ...]]], int]:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT ref, key, value FROM catalog_search").all()
            inspector = sa.inspect(conn)
            indexes = {
                (ix["name"], tuple(ix["column_names"]))
                for ix in inspector.get_indexes("catalog_search")
            }
            keys = len(inspector.get_foreign_keys("catalog_search"))
        return [(r[0], r[1], r[2]) for r in rows], indexes, keys

    migrate(engine, "0008")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO catalog_entities (ref, uid, kind, namespace, name, origin_key, "
            "location_key, updated_at) VALUES ('component:default/a', 'u', 'Component', "
            "'default', 'a', 'o', 'l', '2026-01-01 00:00:00')"
        )
        conn.exec_driver_sql(
            "INSERT INTO catalog_search (ref, key, value, original_value) "
            "VALUES ('component:default/a', 'kind', 'component', 'Component')"
        )
    rows, indexes, keys = state()
    wanted = {
        ("ix_catalog_search_key_value", ("key", "value", "ref")),
        ("ix_catalog_search_ref_key", ("ref", "key", "value")),
    }
    assert keys == 1 and wanted <= indexes
    migrate(engine, "0010")
    assert state() == (rows, indexes, 0)
    with engine.begin() as conn:  # no entity behind it: accepted now
        conn.exec_driver_sql("INSERT INTO catalog_search (ref, key) VALUES ('x:default/y', 'k')")
    migrate(engine, "0008", down=True)  # the row the key would refuse goes first
    assert state() == (rows, indexes, 1)
    engine.dispose()


def test_original_spellings_keep_through_the_facets_migration(database_url: str) -> None:
    """0011 keeps ``original_value`` only where it differs from ``value`` and indexes it: the
    facets a user sees are the same before and after (and with rows of both kinds, as a
    replica not yet upgraded writes them), and downgrading restores every row."""
    engine = db.create_engine(database_url)
    migrate(engine, "0010")
    rows = [
        ("component:default/a", "kind", "component", "Component"),
        ("component:default/a", "spec.type", "service", "service"),
        ("component:default/b", "spec.type", "service", "Service"),
        ("component:default/b", "metadata.description", None, None),
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.insert(old_search),
            [dict(zip(OLD_SEARCH_COLUMNS, row, strict=True)) for row in rows],
        )
    expected = {
        "spec.type": [{"value": "Service", "count": 1}, {"value": "service", "count": 1}],
        "kind": [{"value": "Component", "count": 1}],
    }
    with engine.connect() as conn:  # rows as 0010 wrote them (and a replica not yet upgraded)
        assert queries.facets(conn, ["spec.type", "kind"], queries.SERVED) == expected

    def state() -> tuple[set[tuple[Any, ...]], tuple[str | None, ...]]:
        with engine.connect() as conn:
            stored = {tuple(r) for r in conn.execute(sa.select(*old_search.c)).all()}
            indexes = {
                ix["name"]: tuple(ix["column_names"])
                for ix in sa.inspect(conn).get_indexes("catalog_search")
            }
        return stored, indexes["ix_catalog_search_key_value"]

    migrate(engine, "0011")
    stored, index = state()
    assert index == ("key", "value", "ref", "original_value")
    assert stored == {
        ("component:default/a", "kind", "component", "Component"),
        ("component:default/a", "spec.type", "service", None),
        ("component:default/b", "spec.type", "service", "Service"),
        ("component:default/b", "metadata.description", None, None),
    }
    with engine.connect() as conn:
        assert queries.facets(conn, ["spec.type", "kind"], queries.SERVED) == expected
        conn.execute(  # a replica still on 0010's code writes the spelling again
            sa.insert(old_search).values(
                ref="component:default/c",
                key="spec.type",
                value="service",
                original_value="service",
            )
        )
        assert queries.facets(conn, ["spec.type"], queries.SERVED)["spec.type"] == [
            {"value": "Service", "count": 1},
            {"value": "service", "count": 2},
        ]
        conn.rollback()
    migrate(engine, "0010", down=True)
    assert state() == (set(rows), ("key", "value", "ref"))
    engine.dispose()


def test_roots_known_before_0012_count_as_walked(database_url: str) -> None:
    """A root that an older version walked is refreshed, not first-loaded, after the upgrade:
    its lease does not hold back a first load's deferred indexes; a new root's does."""
    from datetime import UTC, datetime, timedelta

    from greenroom.catalog.leases import Leases
    from greenroom.catalog.tables import roots

    engine = db.create_engine(database_url)
    migrate(engine, "0011")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO catalog_roots (root_key, next_refresh_at) VALUES ('file:/old', :t)"
            ),
            {"t": now},
        )
    migrate(engine, "head")
    with engine.connect() as conn:
        assert conn.execute(sa.select(roots.c.walked_at)).scalar_one() is not None
    leases = Leases(engine, "replica", timedelta(seconds=60))
    assert leases.claim("file:/old")
    assert leases.any_held() and not leases.first_walk_held()
    assert leases.claim("file:/new")
    assert leases.first_walk_held()
    leases.release("file:/new", None, walked=True)
    assert not leases.first_walk_held()
    migrate(engine, "0011", down=True)
    with engine.connect() as conn:
        assert "walked_at" not in {c["name"] for c in sa.inspect(conn).get_columns("catalog_roots")}
    engine.dispose()


def test_entities_known_before_0013_get_ids_and_new_ones_follow(database_url: str) -> None:
    """The upgrade numbers the stored entities (their rows otherwise the same, each ref still
    unique); the writer then gives new entities the next ids, in the order it writes them; a
    downgrade takes the ids away again."""
    from greenroom.catalog.ingest.engine import _give_ids
    from greenroom.catalog.tables import entities, search

    engine = db.create_engine(database_url)
    migrate(engine, "0012")
    with engine.begin() as conn:
        for name in ("b", "a", "c"):
            conn.exec_driver_sql(
                "INSERT INTO catalog_entities (ref, uid, kind, namespace, name, origin_key, "
                f"location_key, final, updated_at) VALUES ('component:default/{name}', "
                f"'uid-{name}', 'Component', 'default', '{name}', 'o', 'l', '{{}}', "
                "'2026-01-01 00:00:00')"
            )
        conn.execute(
            sa.insert(old_search),
            [
                {"ref": f"component:default/{n}", "key": "kind", "value": "component"}
                for n in ("a", "b", "c", "gone")  # "gone": a row of no entity
            ],
        )
    db.refresh_statistics(engine)
    migrate(engine, "head")
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(entities.c.id, entities.c.ref, entities.c.uid, entities.c.final)
        ).all()
        rows = conn.execute(sa.select(search.c.ref, search.c.entity_id)).all()
        if conn.dialect.name == "sqlite":  # the copies keep the planner's statistics
            analysed = conn.exec_driver_sql("SELECT DISTINCT tbl FROM sqlite_stat1").scalars()
            assert {"catalog_entities", "catalog_search"} <= set(analysed)
        else:  # analysed by the migration, with entity_id's rows per entity
            assert (
                conn.exec_driver_sql(
                    "SELECT n_distinct FROM pg_stats WHERE schemaname = current_schema() "
                    "AND tablename = 'catalog_search' AND attname = 'entity_id'"
                ).scalar_one()
                == -0.03
            )
    ids = {row.ref: row.id for row in stored}
    assert sorted(rows) == sorted((ref, ids[ref]) for ref in ids)
    assert sorted(ids.values()) == [1, 2, 3]
    assert sorted((row.ref, row.uid, row.final) for row in stored) == [
        (f"component:default/{name}", f"uid-{name}", "{}") for name in "abc"
    ]
    new: list[dict[str, Any]] = [{"ref": "component:default/d"}, {"ref": "component:default/e"}]
    with db.write_transaction(engine) as conn:
        _give_ids(conn, new)
    assert [row["id"] for row in new] == [4, 5] and new[0]["uid"] != new[1]["uid"]
    with pytest.raises(sa.exc.IntegrityError), db.write_transaction(engine) as conn:
        conn.exec_driver_sql(
            "INSERT INTO catalog_entities (id, ref, uid, kind, namespace, name, origin_key, "
            "location_key, updated_at) VALUES (9, 'component:default/a', 'other', 'Component', "
            "'default', 'a', 'o', 'l', '2026-01-01 00:00:00')"
        )
    migrate(engine, "0012", down=True)
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("catalog_entities")}
        refs = conn.exec_driver_sql("SELECT ref FROM catalog_entities ORDER BY ref").scalars()
        assert "id" not in columns and list(refs) == [f"component:default/{n}" for n in "abc"]
    engine.dispose()


def test_sqlite_commits_leave_their_pages_in_the_log_until_it_is_large(database_url: str) -> None:
    """A commit larger than SQLite's default threshold (1,000 pages, 4 MiB) is not copied back
    into the database file at once: batches of a load share one copy (``WAL_CHECKPOINT_BYTES``).
    Every connection of the pool has the setting, since any writer's commit may copy."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's write-ahead log")
    engine = db.create_engine(database_url)
    db.upgrade(engine)
    path = Path(database_url.removeprefix("sqlite:///"))
    before = path.stat().st_size
    with db.write_transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE scratch (b BLOB)")
        conn.exec_driver_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
            "INSERT INTO scratch SELECT randomblob(4000) FROM n"
        )
    log = path.with_name(path.name + "-wal").stat().st_size
    assert log > 10_000_000  # 3,000 blobs of 4,000 bytes: in the log
    assert path.stat().st_size - before < 1_000_000  # and not yet in the file
    with engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
        page = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
    assert pages * page == db.WAL_CHECKPOINT_BYTES >= 64 * 1024 * 1024
    engine.dispose()


def test_new_sqlite_files_have_large_pages_and_older_files_keep_theirs(tmp_path: Path) -> None:
    """A new database file gets pages of ``PAGE_BYTES`` (an entity's row fits in one); a file
    made before with SQLite's 4 KiB pages keeps them, and its log is copied back at the same
    size in bytes, so in four times as many pages."""

    def pages(url: str) -> tuple[int, int]:
        engine = db.create_engine(url)
        db.upgrade(engine)
        with engine.connect() as conn:
            size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
            threshold = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
        engine.dispose()
        return size, threshold

    assert pages(f"sqlite:///{tmp_path / 'new.db'}") == (
        db.PAGE_BYTES,
        db.WAL_CHECKPOINT_BYTES // db.PAGE_BYTES,
    )
    older = tmp_path / "older.db"
    made = sqlite3.connect(older)
    made.executescript("PRAGMA journal_mode=WAL; CREATE TABLE t (x);")
    made.close()
    assert pages(f"sqlite:///{older}") == (4096, db.WAL_CHECKPOINT_BYTES // 4096)


def test_sqlite_ingestion_transactions_have_a_large_page_cache_only_while_they_run(
    database_url: str,
) -> None:
    """An ingestion transaction (``durable=False``) reads index pages all over the file: SQLite
    gives it a page cache of ``INGEST_CACHE_KIB``. The pooled connection goes back with its
    default cache, committed or not, so that the pages are freed instead of staying in every
    connection that ever wrote a batch (each would keep up to 64 MiB)."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's page cache")
    engine = db.create_engine(database_url, pool_size=1, max_overflow=0)
    db.upgrade(engine)

    def cache(conn: sa.Connection) -> int:
        return int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())

    with db.write_transaction(engine) as conn:
        assert cache(conn) == -db.CACHE_KIB
    with db.write_transaction(engine, durable=False) as conn:
        assert cache(conn) == -db.INGEST_CACHE_KIB < -db.CACHE_KIB
    with pytest.raises(ZeroDivisionError), db.write_transaction(engine, durable=False) as conn:
        _ = 1 / 0
    with engine.connect() as conn:  # the pool's one connection, both times
        assert cache(conn) == -db.CACHE_KIB
    engine.dispose()


def test_a_sqlite_log_grown_by_one_large_transaction_shrinks_back(database_url: str) -> None:
    """One transaction larger than the checkpoint threshold (a first load's index build) makes
    the write-ahead log as large; once it is copied back and a write starts it over, the file
    is cut back to the threshold instead of staying that large on disk."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's write-ahead log")
    engine = db.create_engine(database_url)
    db.upgrade(engine)
    log = Path(database_url.removeprefix("sqlite:///") + "-wal")
    limit = db.WAL_FILE_LIMIT
    with db.write_transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE scratch (b BLOB)")
        conn.exec_driver_sql(  # a reader, held open, would stop the copy: none is
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 36000) "
            "INSERT INTO scratch SELECT randomblob(4000) FROM n"
        )
    assert log.stat().st_size > limit  # the commit copied it back, the file is as large
    with db.write_transaction(engine) as conn:  # the next write starts the log over
        conn.exec_driver_sql("DELETE FROM scratch WHERE rowid = 1")
    assert log.stat().st_size <= limit
    engine.dispose()


def test_sqlite_reads_open_no_transaction_and_reuse_pooled_connections(
    database_url: str,
) -> None:
    """On SQLite a read through ``reader`` sends no ``BEGIN`` (each statement is its own read
    transaction), the engine's own connections still do, and eight threads reading at once
    keep reusing the pool's connections instead of opening one per request."""
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's reader is covered by the round-trip test")
    engine = db.create_engine(database_url)
    db.upgrade(engine)
    with db.reader(engine).connect() as conn:
        conn.execute(sa.text("SELECT 1")).all()
        raw = conn.connection.dbapi_connection
        assert raw is not None and not raw.in_transaction
    with db.write_transaction(engine) as conn:  # the same connection, a transaction again
        assert conn.connection.dbapi_connection is raw
        conn.execute(sa.text("SELECT 1")).all()
        assert raw.in_transaction
    # A write through the reader would have no transaction: refused.
    with (
        pytest.raises(RuntimeError, match="needs the engine"),
        db.write_transaction(db.reader(engine)),
    ):
        pass
    opened: list[int] = []
    sa.event.listen(engine, "connect", lambda *_: opened.append(1))
    together = threading.Barrier(8)

    failures: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(5):  # five rounds of eight requests in flight at once
                with db.reader(engine).connect() as conn:
                    conn.execute(sa.text("SELECT count(*) FROM catalog_entities")).all()
                    together.wait(10)
                together.wait(10)  # every connection back in the pool before the next round
        except BaseException as exc:  # reported below, from the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert len(opened) <= 8  # at most one per thread, kept in the pool: not one per read
    engine.dispose()


def test_a_first_load_interrupted_before_0007_does_not_stop_the_upgrade(
    database_url: str,
) -> None:
    """A first load drops ``ix_catalog_search_key_value`` and builds it at its end: a database
    left without it (the load was killed) must still upgrade, and gets the index back."""
    engine = db.create_engine(database_url)
    migrate(engine, "0006")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_catalog_search_key_value")
    migrate(engine, "head")
    with engine.connect() as conn:
        indexes = {
            ix["name"]: tuple(ix["column_names"])
            for ix in sa.inspect(conn).get_indexes("catalog_search")
        }
    assert indexes["ix_catalog_search_key_value"] == (
        "key",
        "value",
        "ref",
        "original_value",
        "entity_id",
    )
    migrate(engine, "0006", down=True)
    engine.dispose()


def test_stitch_deletes_by_entity_use_the_index_while_a_load_outgrows_its_statistics(
    database_url: str,
) -> None:
    """A small catalog, analysed, takes in twenty times its size in one pass. An entity's rows
    sit together on disk, so PostgreSQL stores the distinct refs its sample saw as a count, not
    a fraction, and took each ref for hundreds of rows once the table had grown: it planned the
    stitch's ``DELETE ... WHERE ref IN (500 refs)`` as a scan of the whole table (over a second
    a statement at 250,000 entities). Migration 0010 gives it rows per ref as a fraction, 0014
    the same for the entity ids that the stitch deletes by now, and an existing database gets
    both on upgrade. SQLite keeps the table sizes of its last ``ANALYZE`` as counts, planned
    that delete as a scan here, and needs ingestion's samples."""
    from greenroom.catalog.ingest.engine import RELATION_COLUMNS
    from greenroom.catalog.stitch import SEARCH_COLUMNS
    from greenroom.catalog.tables import relations, search

    engine = db.create_engine(database_url)
    postgresql = engine.dialect.name == "postgresql"
    migrate(engine, "0009")
    refs = [f"component:default/service-{i:05d}" for i in range(6000)]
    some = list(range(1, 6001))[::12][:500]  # ids, as given in ref order below
    statements = {  # a full stitch's delete of its entities' rows; their peers' relations
        "ix_catalog_search_entity_key": search.delete().where(search.c.entity_id.in_(some)),
        "ix_catalog_relations_source": sa.select(
            relations.c.source_ref, relations.c.type, relations.c.target_ref
        ).where(relations.c.source_ref.in_([refs[i - 1] for i in some])),
    }

    def load(part: list[str], first_id: int | None) -> None:
        with engine.begin() as conn:  # as ingestion writes them: an entity's rows together
            rows = ((ref, f"spec.field{k}", f"v{k}", f"V{k}") for ref in part for k in range(36))
            if first_id is None:  # before 0014: no ids
                db.bulk_insert(conn, old_search, OLD_SEARCH_COLUMNS, rows)  # type: ignore[arg-type]
            else:
                db.bulk_insert(
                    conn,
                    search,
                    SEARCH_COLUMNS,
                    ((*row, first_id + i // 36) for i, row in enumerate(rows)),
                )
            db.bulk_insert(
                conn,
                relations,
                RELATION_COLUMNS,
                (
                    (ref, ref, "dependsOn", f"component:default/lib-{k}")
                    for ref in part
                    for k in range(10)
                ),
            )

    def check_plans(*, estimates_only: tuple[str, ...] = ()) -> None:
        """Each statement reads its index; or, for those of ``estimates_only``, PostgreSQL
        expects the rows there are within a factor of three (500 entities, 36 rows each):
        at this size a scan of the whole table is its fair choice for the ids, whose
        ``(entity_id, key, value)`` entries cost more to read than refs' did; what the
        fraction must keep is the estimate, which decides once the table is large."""
        with engine.connect() as conn:
            for index, statement in statements.items():
                sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
                explain = "EXPLAIN " if postgresql else "EXPLAIN QUERY PLAN "
                plan = " ".join(str(row) for row in conn.exec_driver_sql(explain + sql))
                if index in estimates_only:
                    estimated = [int(n) for n in re.findall(r"rows=(\d+)", plan)]
                    assert 6000 <= max(estimated) <= 54000, plan
                    continue
                assert "Seq Scan" not in plan and "SCAN catalog" not in plan, plan
                assert index in plan, plan
            conn.rollback()

    with engine.begin() as conn:  # the small catalog's entities: 0013 numbers them in ref order
        for ref in refs[:300]:
            conn.exec_driver_sql(
                "INSERT INTO catalog_entities (ref, uid, kind, namespace, name, origin_key, "
                f"location_key, updated_at) VALUES ('{ref}', '{ref}', 'Component', 'default', "
                "'x', 'o', 'l', '2026-01-01 00:00:00')"
            )
    load(refs[:300], None)
    db.refresh_statistics(engine)  # the pass that loaded the small catalog
    if not postgresql:
        with engine.connect() as conn:  # the statistics were committed (10,800 rows, 36 a ref)
            stat = conn.exec_driver_sql(
                "SELECT stat FROM sqlite_stat1 WHERE idx = 'ix_catalog_search_ref_key'"
            ).scalar()
        assert stat is not None and stat.startswith("10800 36 ")
    migrate(engine, "head")
    with engine.connect() as conn:  # the small catalog's rows kept their entities' ids
        kept = conn.execute(sa.select(search.c.ref, search.c.entity_id).distinct()).all()
    assert sorted(kept) == [(ref, i) for i, ref in enumerate(refs[:300], start=1)]
    if postgresql:
        db.refresh_statistics(engine)  # as before the upgrade: counts of the small catalog
    load(refs[300:], 301)  # twenty times the rows, no statistics since
    if postgresql:  # the fraction holds however far the table grew
        check_plans(estimates_only=("ix_catalog_search_entity_key",))
        with engine.connect() as conn:
            distinct: dict[str, float] = dict(
                conn.exec_driver_sql(
                    "SELECT tablename || '.' || attname, n_distinct FROM pg_stats "
                    "WHERE schemaname = current_schema() "
                    "AND attname IN ('ref', 'entity_id', 'source_ref') "
                    "AND tablename IN ('catalog_search', 'catalog_relations')"
                ).all()
            )
        assert distinct == {
            "catalog_search.ref": -0.03,
            "catalog_search.entity_id": -0.03,
            "catalog_relations.source_ref": -0.1,
        }
    db.sample_statistics(engine)  # what ingestion runs each time the entities written double
    check_plans()
    engine.dispose()


def test_a_postgresql_server_that_never_answers_fails_a_connection_in_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that accepts the TCP connection and says nothing (a hung host behind a proxy)
    fails a new connection after ``db.CONNECT_TIMEOUT`` instead of holding the request (and,
    for a lookup on the event loop, the whole process) for the system's TCP timeout; a
    ``connect_timeout`` written in the URL wins."""
    import socket

    def seconds_to_fail(url: str) -> float:
        engine = db.create_engine(url)
        started = time.monotonic()
        failed: list[BaseException] = []

        def connect() -> None:
            try:
                engine.connect()
            except sa.exc.OperationalError as exc:
                failed.append(exc)

        attempt = threading.Thread(target=connect, daemon=True)
        attempt.start()
        attempt.join(timeout=10)  # without a timeout it would wait for ever: fail instead
        assert failed, "the connection attempt neither failed nor gave up"
        engine.dispose()
        return time.monotonic() - started

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts; nobody ever reads or writes
        url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/test"
        monkeypatch.setattr(db, "CONNECT_TIMEOUT", 1)
        assert 0.9 < seconds_to_fail(url) < 4
        monkeypatch.setattr(db, "CONNECT_TIMEOUT", 60)
        assert 1.9 < seconds_to_fail(url + "?connect_timeout=2") < 5


def test_relation_search_rows_go_with_0016_and_come_back_with_its_downgrade(
    database_url: str,
) -> None:
    """0016 deletes the search rows of relations (filters read ``catalog_relations``), stale
    ones included, writes again those of an entity's own field called ``relations.x`` from its
    served JSON, lower-cases a plugin's refs (Unicode's capitals too) and queues their sources
    to be stitched; filters then answer from the relations. The downgrade writes the rows of
    served entities' relations again from their JSON, each once."""
    import json

    from greenroom.catalog.tables import entities, relations, search, stitch_queue

    engine = db.create_engine(database_url)
    migrate(engine, "0015")
    long_ref = "component:default/" + "x" * 250
    finals = {
        "a": {
            "kind": "Component",
            "metadata": {"name": "a"},
            "relations": [{"type": "ownedBy", "targetRef": "group:default/team"}],
        },
        "b": {
            "kind": "Component",
            "metadata": {"name": "b"},
            "relations.ownedBy": "group:default/Other",  # b's own field, not a relation
            "relations": [{"type": "dependsOn", "targetRef": long_ref}],
        },
    }
    with engine.begin() as conn:
        for entity_id, name in ((1, "a"), (2, "b"), (3, "z")):
            final = json.dumps(finals[name]) if name in finals else None
            conn.execute(
                entities.insert().values(
                    id=entity_id,
                    ref=f"component:default/{name}",
                    uid=f"uid-{name}",
                    kind="Component",
                    namespace="default",
                    name=name,
                    origin_key="o",
                    location_key="l",
                    final=final,
                    source_hash=f"h-{name}",
                    updated_at=sa.func.now(),
                )
            )
        conn.execute(
            relations.insert(),
            [
                dict(zip(("originating_ref", "source_ref", "type", "target_ref"), r, strict=True))
                for r in (
                    ("component:default/a", "component:default/a", "ownedBy", "group:default/team"),
                    ("component:default/a", "group:default/team", "ownerOf", "component:default/a"),
                    ("component:default/b", "component:default/b", "dependsOn", long_ref),
                    (
                        "component:default/z",
                        "component:default/z",
                        "dependsOn",
                        "component:default/a",
                    ),
                    # A type now refused: its entity is processed again (and fails, named).
                    ("component:default/b", "component:default/b", "überOrdnet", "x:y/z"),
                    # A plugin's relation, with a capital only Unicode lower-cases.
                    (
                        "component:default/a",
                        "component:default/a",
                        "ownedBy",
                        "group:default/Ärger",
                    ),
                )
            ],
        )
        conn.execute(
            search.insert(),
            [
                dict(zip(("ref", "key", "value", "original_value", "entity_id"), r, strict=True))
                for r in (
                    ("component:default/a", "kind", "component", "Component", 1),
                    ("component:default/a", "relations.ownedby", "group:default/team", None, 1),
                    # Stale: a's relation to gone was dropped, a's stitch still queued.
                    (
                        "component:default/a",
                        "relations.dependson",
                        "component:default/gone",
                        None,
                        1,
                    ),
                    ("component:default/b", "relations.dependson", None, None, 2),
                    (
                        "component:default/b",
                        "relations.ownedby",
                        "group:default/other",
                        "group:default/Other",
                        2,
                    ),
                )
            ],
        )

    def answers() -> dict[str, list[str]]:
        filters = {
            "team": "relations.ownedby=group:default/team",
            "other": "relations.ownedby=group:default/other",
            "ärger": "relations.ownedby=group:default/ärger",
            "depends": "relations.dependson",
            "gone": "relations.dependson=component:default/gone",
        }
        found = {}
        with engine.connect() as conn:
            for name, text in filters.items():
                where = queries.filter_clause(queries.parse_filters([text]))
                refs = conn.execute(sa.select(entities.c.ref).where(where).order_by("ref"))
                found[name] = list(refs.scalars())
        return found

    def rows() -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            columns = (search.c.ref, search.c.key, search.c.value, search.c.original_value)
            return sorted((tuple(r) for r in conn.execute(sa.select(*columns))), key=repr)

    migrate(engine, "head")
    assert answers() == {
        "team": ["component:default/a"],
        "other": ["component:default/b"],
        "ärger": ["component:default/a"],
        "depends": ["component:default/b"],
        "gone": [],
    }
    assert rows() == sorted(
        [
            ("component:default/a", "kind", "component", "Component"),
            (
                "component:default/b",
                "relations.ownedby",
                "group:default/other",
                "group:default/Other",
            ),
        ],
        key=repr,
    )
    with engine.connect() as conn:
        targets = set(conn.execute(sa.select(relations.c.target_ref)).scalars())
        assert "group:default/ärger" in targets and "group:default/Ärger" not in targets
        assert set(conn.execute(sa.select(stitch_queue.c.ref)).scalars()) == {"component:default/a"}
        hashes = dict(conn.execute(sa.select(entities.c.name, entities.c.source_hash)).all())
        assert hashes == {"a": "h-a", "b": "", "z": "h-z"}
        assert db.index_names(conn, ["catalog_relations"]) >= {
            "ix_catalog_relations_type_target",
            "ix_catalog_relations_source_type",
        }
    migrate(engine, "0015", down=True)
    assert rows() == sorted(
        [
            ("component:default/a", "kind", "component", "Component"),
            ("component:default/a", "relations.ownedby", "group:default/team", None),
            ("component:default/b", "relations.dependson", None, None),
            # b's own field first, with its spelling; no second row for the same value
            (
                "component:default/b",
                "relations.ownedby",
                "group:default/other",
                "group:default/Other",
            ),
        ],
        key=repr,
    )
    with engine.connect() as conn:
        names = db.index_names(conn, ["catalog_relations"])
        assert "ix_catalog_relations_type_target" not in names
        assert "ix_catalog_relations_source_type" not in names
        assert "ix_catalog_relations_source" in names
    engine.dispose()
