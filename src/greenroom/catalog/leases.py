"""Which replica refreshes which root location, and when: claims with leases in the database.

Every replica runs the same loop: claim the root that is most overdue and not leased (or whose
lease has expired), walk it while renewing the lease after each batch, then release it with its
next due time. A replica that dies stops renewing; once its lease expires another replica claims
the root and walks it again, and since writes compare hashes, what the dead one had written
costs nothing twice. On PostgreSQL the claim skips rows another replica is claiming at the same
moment (``FOR UPDATE SKIP LOCKED``); on SQLite the write transaction is exclusive anyway.

See ``README.md`` beside this file for the tables, the locks and the reasoning.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from greenroom.catalog.tables import roots
from greenroom.db import write_transaction


def replica_id() -> str:
    """A name for this process, unique across replicas: host, pid and a random suffix."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leases:
    """Claims, renews and releases root locations for one replica."""

    def __init__(self, engine: sa.Engine, owner: str, lease: timedelta) -> None:
        self.engine = engine
        self.owner = owner
        self.lease = lease
        # Roots this process is walking, and when each was claimed: its refresh loop and its
        # API (``POST /refresh``) share one owner, and the database alone would let the second
        # walk what the first is walking, and release the lease under it.
        self._walking: dict[str, datetime] = {}
        # Held across a claim's transaction, so that the loop's claim_due and a request's claim
        # cannot both take one root between checking and recording it.
        self._claims = threading.Condition()

    def sync(self, keys: Iterable[str]) -> None:
        """Make sure every current root has a row (due now when new)."""
        wanted = set(keys)
        with self.engine.connect() as conn:
            known = set(conn.execute(sa.select(roots.c.root_key)).scalars())
        missing = wanted - known
        gone = known - wanted
        if not missing and not gone:
            return
        now = datetime.now(UTC)
        with write_transaction(self.engine, changes_data=False) as conn:
            known = set(conn.execute(sa.select(roots.c.root_key)).scalars())
            rows = [{"root_key": k, "next_refresh_at": now} for k in sorted(wanted - known)]
            if rows:
                conn.execute(roots.insert(), rows)
            if gone:
                conn.execute(roots.delete().where(roots.c.root_key.in_(sorted(gone))))

    def claim_due(self) -> str | None:
        """Claim the most overdue root that nobody holds; ``None`` when none is due."""
        with self._claims:  # see __init__: this process's claims one at a time
            now = datetime.now(UTC)
            with write_transaction(self.engine, changes_data=False) as conn:
                due = (
                    sa.select(roots.c.root_key)
                    .where(
                        roots.c.next_refresh_at <= now,
                        sa.or_(roots.c.lease_until.is_(None), roots.c.lease_until < now),
                    )
                    .order_by(roots.c.next_refresh_at)
                    .limit(1)
                )
                if conn.dialect.name == "postgresql":
                    due = due.with_for_update(skip_locked=True)
                key = conn.execute(due).scalar()
                if key is None:
                    return None
                conn.execute(
                    roots.update()
                    .where(roots.c.root_key == key)
                    .values(
                        lease_owner=self.owner, lease_until=now + self.lease, next_refresh_at=now
                    )
                )
            self._walking[str(key)] = now
            return str(key)

    def claim(self, key: str) -> bool:
        """Claim one root now, due or not (``POST /refresh``, a new location); ``False`` when
        another replica holds it, in which case it is marked due for that one to redo.

        When this process is walking it already (its refresh loop, another request), the claim
        waits for that walk to end (the caller is about to read what it walks), for at most a
        lease's length; after that it marks the root due instead."""
        deadline = time.monotonic() + self.lease.total_seconds()
        with self._claims:
            while key in self._walking:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._mark_due(key)
                    return False
                self._claims.wait(left)
            now = datetime.now(UTC)
            with write_transaction(self.engine, changes_data=False) as conn:
                row = conn.execute(
                    sa.select(roots.c.lease_owner, roots.c.lease_until).where(
                        roots.c.root_key == key
                    )
                ).first()
                held = (
                    row is not None
                    and row.lease_owner not in (None, self.owner)
                    and _aware(row.lease_until) > now
                )
                if held:
                    conn.execute(
                        roots.update().where(roots.c.root_key == key).values(next_refresh_at=now)
                    )
                    return False
                lease = {"lease_owner": self.owner, "lease_until": now + self.lease}
                if row is None:
                    conn.execute(roots.insert().values(root_key=key, next_refresh_at=now, **lease))
                else:
                    conn.execute(
                        roots.update()
                        .where(roots.c.root_key == key)
                        .values(next_refresh_at=now, **lease)
                    )
            self._walking[key] = now
            return True

    def _mark_due(self, key: str) -> None:
        with write_transaction(self.engine, changes_data=False) as conn:
            conn.execute(
                roots.update()
                .where(roots.c.root_key == key)
                .values(next_refresh_at=datetime.now(UTC))
            )

    def renew(self, key: str) -> None:
        """Extend this replica's lease on ``key`` (called after every batch)."""
        with write_transaction(self.engine, changes_data=False) as conn:
            conn.execute(
                roots.update()
                .where(roots.c.root_key == key, roots.c.lease_owner == self.owner)
                .values(lease_until=datetime.now(UTC) + self.lease)
            )

    def release(self, key: str, next_in: timedelta | None, *, walked: bool = False) -> None:
        """Give ``key`` up; it is due again after ``next_in`` (now when ``None``), or at once
        if it was marked due while held (a ``POST /refresh`` during the walk, which may have
        changes the walk read past). A claim sets the due time to the claim's own time, so any
        other value found here is a mark, whatever the marking replica's clock. ``walked``: a
        walk of it ended (failed or not), so its next one is a refresh."""
        claimed = self._walking.get(key)
        column = roots.c.next_refresh_at
        try:
            with write_transaction(self.engine, changes_data=False) as conn:
                now = datetime.now(UTC)  # after the lock: a mark made while waiting for it counts
                due: Any = sa.literal(now + (next_in or timedelta(0)), column.type)
                if claimed is not None:
                    unmarked = column == sa.literal(claimed, column.type)
                    due = sa.case((unmarked, due), else_=sa.literal(now, column.type))
                values: dict[str, object] = {
                    "lease_owner": None,
                    "lease_until": None,
                    "next_refresh_at": due,
                }
                if walked:
                    values["walked_at"] = now
                conn.execute(
                    roots.update()
                    .where(roots.c.root_key == key, roots.c.lease_owner == self.owner)
                    .values(**values)
                )
        finally:
            with self._claims:
                self._walking.pop(key, None)
                self._claims.notify_all()

    def forget_walks(self) -> None:
        """Every root's next walk is a first walk (the catalog is empty: a first load)."""
        with write_transaction(self.engine, changes_data=False) as conn:
            conn.execute(
                roots.update().where(roots.c.walked_at.is_not(None)).values(walked_at=None)
            )

    def any_held(self) -> bool:
        """Whether any replica (this one included) holds a live lease: a walk is under way."""
        return self._live(roots.c.lease_owner.is_not(None))

    def first_walk_held(self) -> bool:
        """Whether any replica holds a live lease on a root never walked (to an end): a first
        load (or a new root's first walk) is under way. Refreshes do not count: with many roots
        and several replicas some lease is nearly always held, and a deferred index waiting
        for none would never be built."""
        return self._live(roots.c.lease_owner.is_not(None), roots.c.walked_at.is_(None))

    def _live(self, *where: sa.ColumnElement[bool]) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(roots.c.root_key)
                .where(*where, roots.c.lease_until > datetime.now(UTC))
                .limit(1)
            ).first()
        return row is not None

    def holder(self, key: str) -> str | None:
        """Who holds ``key`` now, if anyone (for tests and diagnostics)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(roots.c.lease_owner, roots.c.lease_until).where(roots.c.root_key == key)
            ).first()
        if row is None or row.lease_owner is None or _aware(row.lease_until) <= datetime.now(UTC):
            return None
        return str(row.lease_owner)


def _aware(value: datetime | None) -> datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    if value is None:
        return datetime.min.replace(tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
