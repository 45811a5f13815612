"""Alembic environment: runs on the connection Greenroom hands it (see ``greenroom.db``)."""

from __future__ import annotations

from alembic import context

from greenroom.db import declare_tables, metadata

declare_tables()

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
