"""What SQLite's migrations share: it changes neither a primary key nor a column's constraints
in place, so a migration copies the table into its new shape."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from alembic import op


def copy_table(name: str, new: sa.Table, fill: str, indexes: Iterable[sa.Index]) -> None:
    """Replace table ``name`` with ``new`` (a table of another name, created here), filled by
    the ``INSERT ... SELECT`` statement ``fill``; then create ``indexes`` (dropped with the old
    table) and, when the database has statistics, analyse the table again: the copy lost its
    rows of ``sqlite_stat1``, without which SQLite planned ordered pages 20-50 times slower,
    and nothing analyses a catalog that does not change."""
    bind = op.get_bind()
    new.create(bind)
    op.execute(fill)
    op.execute(f"DROP TABLE {name}")
    op.execute(f"ALTER TABLE {new.name} RENAME TO {name}")
    for index in indexes:
        index.create(bind)
    if bind.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first():
        op.execute(f"ANALYZE {name}")
