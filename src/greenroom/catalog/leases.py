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
        self._mine = threading.Lock()

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
                .values(lease_owner=self.owner, lease_until=now + self.lease)
            )
        with self._mine:
            self._walking[str(key)] = now
        return str(key)

    def claim(self, key: str) -> bool:
        """Claim one root now, due or not (``POST /refresh``, a new location); ``False`` when
        another replica holds it, or this process is walking it already (its refresh loop),
        in which case it is marked due for the holder to redo."""
        now = datetime.now(UTC)
        with self._mine:
            walking_here = key in self._walking
            if not walking_here:
                self._walking[key] = now
        if walking_here:  # by this process's loop, or another request: marked due, as below
            with write_transaction(self.engine, changes_data=False) as conn:
                conn.execute(
                    roots.update().where(roots.c.root_key == key).values(next_refresh_at=now)
                )
            return False
        try:
            claimed = self._claim(key, now)
        except BaseException:
            self._forget(key)
            raise
        if not claimed:
            self._forget(key)
        return claimed

    def _claim(self, key: str, now: datetime) -> bool:
        with write_transaction(self.engine, changes_data=False) as conn:
            row = conn.execute(
                sa.select(roots.c.lease_owner, roots.c.lease_until).where(roots.c.root_key == key)
            ).first()
            if row is None:
                conn.execute(
                    roots.insert().values(
                        root_key=key,
                        next_refresh_at=now,
                        lease_owner=self.owner,
                        lease_until=now + self.lease,
                    )
                )
                return True
            held = row.lease_owner not in (None, self.owner) and _aware(row.lease_until) > now
            if held:
                conn.execute(
                    roots.update().where(roots.c.root_key == key).values(next_refresh_at=now)
                )
                return False
            conn.execute(
                roots.update()
                .where(roots.c.root_key == key)
                .values(lease_owner=self.owner, lease_until=now + self.lease)
            )
            return True

    def renew(self, key: str) -> None:
        """Extend this replica's lease on ``key`` (called after every batch)."""
        with write_transaction(self.engine, changes_data=False) as conn:
            conn.execute(
                roots.update()
                .where(roots.c.root_key == key, roots.c.lease_owner == self.owner)
                .values(lease_until=datetime.now(UTC) + self.lease)
            )

    def release(self, key: str, next_in: timedelta | None, *, walked: bool = False) -> None:
        """Give ``key`` up; it is due again after ``next_in`` (now when ``None``), or now if
        it was marked due while it was held (``claim`` of a held root: a ``POST /refresh`` that
        came during the walk may have changes the walk had read past). ``walked``: a walk of it
        ended (failed or not), so its next one is a refresh."""
        now = datetime.now(UTC)
        with self._mine:
            claimed = self._walking.get(key)
        due: Any = sa.literal(now + (next_in or timedelta(0)), roots.c.next_refresh_at.type)
        if claimed is not None:
            marked = sa.and_(roots.c.next_refresh_at > claimed, roots.c.next_refresh_at <= now)
            due = sa.case((marked, sa.literal(now, roots.c.next_refresh_at.type)), else_=due)
        values: dict[str, object] = {
            "lease_owner": None,
            "lease_until": None,
            "next_refresh_at": due,
        }
        if walked:
            values["walked_at"] = now
        try:
            with write_transaction(self.engine, changes_data=False) as conn:
                conn.execute(
                    roots.update()
                    .where(roots.c.root_key == key, roots.c.lease_owner == self.owner)
                    .values(**values)
                )
        finally:
            self._forget(key)

    def _forget(self, key: str) -> None:
        with self._mine:
            self._walking.pop(key, None)

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
