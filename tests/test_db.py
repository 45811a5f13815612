"""The database layer: migrations on both databases, planner statistics, the write lock."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from greenroom import db


def test_migrations_and_statistics(database_url: str) -> None:
    engine = db.create_engine(database_url)
    db.upgrade(engine)
    db.upgrade(engine)  # a second upgrade is a no-op
    db.refresh_statistics(engine)  # VACUUM must run outside a transaction on PostgreSQL
    with engine.connect() as conn:
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        assert version == "0004"
        if conn.dialect.name == "postgresql":
            names = conn.execute(sa.text("SELECT stxname FROM pg_statistic_ext")).scalars().all()
            assert "catalog_search_key_value_stats" in names
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
