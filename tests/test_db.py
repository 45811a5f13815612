"""The database layer: migrations on both databases, planner statistics, the write lock."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

from greenroom import db
from greenroom.catalog.text_index import TEXT_KEYS


def test_migrations_and_statistics(database_url: str) -> None:
    engine = db.create_engine(database_url)
    db.upgrade(engine)
    db.upgrade(engine)  # a second upgrade is a no-op
    db.refresh_statistics(engine)  # VACUUM must run outside a transaction on PostgreSQL
    with engine.connect() as conn:
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        assert version == "0008"
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


def test_stitch_marks_survive_the_move_to_their_own_table(database_url: str) -> None:
    """A mark left by a replica that died before the upgrade is still stitched after it."""
    engine = db.create_engine(database_url)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0004")
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
