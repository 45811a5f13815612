"""What SQLite's migrations share: it changes neither a primary key nor a column's constraints
in place, so a migration copies the table into its new shape."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def copy_table(table: sa.Table, fill: str) -> None:
    """Replace the table of ``table``'s name with ``table`` (its new shape, indexes included).

    The rows go through a copy named ``<name>_new``, created here without indexes (index
    names are the database's, and the old table still holds them) and filled by the
    ``INSERT ... SELECT`` statement ``fill``; the old table is dropped, the copy renamed, and
    ``table``'s indexes created. When the database has statistics the table is analysed
    again: the copy lost its rows of ``sqlite_stat1``, without which SQLite planned ordered
    pages 20-50 times slower, and nothing analyses a catalog that does not change."""
    bind = op.get_bind()
    name = table.name
    new = table.to_metadata(sa.MetaData(), name=f"{name}_new")
    new.indexes.clear()
    new.create(bind)
    op.execute(fill)
    op.execute(f"DROP TABLE {name}")
    op.execute(f"ALTER TABLE {new.name} RENAME TO {name}")
    for index in table.indexes:
        index.create(bind)
    if bind.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first():
        op.execute(f"ANALYZE {name}")
