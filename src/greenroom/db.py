"""The database: one SQLAlchemy engine per app, migrations by Alembic.

SQLite is the embedded default (WAL mode, a busy timeout, foreign keys on); PostgreSQL through
psycopg 3 is for production. Every capability declares its tables on :data:`metadata` in its own
``tables.py``; the migrations in ``greenroom/migrations`` create them on both databases.
"""

from __future__ import annotations

import contextlib
import importlib
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()
MIGRATIONS = Path(__file__).parent / "migrations"

# One row: a number that every write transaction that wrote a row increases (see
# write_transaction). Answers computed from the database can be cached under it: a replica that
# reads the same number reads the same data, whichever replica wrote it.
generation = sa.Table(
    "greenroom_generation",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("generation", sa.BigInteger, nullable=False),
)


@sa.event.listens_for(generation, "after_create")
def _first_generation(_table: sa.Table, connection: sa.Connection, **_: object) -> None:
    connection.execute(generation.insert().values(id=1, generation=0))  # as migration 0006


#: The modules that declare tables on :data:`metadata` (each capability's ``tables.py``).
TABLE_MODULES = ("greenroom.catalog.tables",)


def declare_tables() -> None:
    """Import every module that declares tables, so that :data:`metadata` holds them all."""
    for name in TABLE_MODULES:
        importlib.import_module(name)


# Alembic's own table, as Alembic creates it: a database created from the metadata in one step
# is stamped with the newest migration, and Alembic takes over from there.
_alembic_version = sa.Table(
    "alembic_version",
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


# Set on a connection (its ``info``) by any statement that inserted, updated or deleted a row.
WROTE = "greenroom_wrote"
_WRITES = ("INSERT", "UPDATE", "DELETE")


@sa.event.listens_for(sa.Engine, "after_cursor_execute")
def _note_writes(
    connection: sa.Connection,
    cursor: Any,
    statement: str,
    _parameters: Any,
    _context: Any,
    _executemany: bool,
) -> None:
    """Remember that the transaction changed a row, whatever code ran the statement (rowcount
    is -1 where the driver cannot tell: that counts as a change)."""
    if cursor.rowcount != 0 and statement.lstrip()[:6].upper() in _WRITES:
        connection.info[WROTE] = True


#: A pooled PostgreSQL connection idle for longer than this is checked before it is handed out.
PING_AFTER_IDLE = 5.0
#: Seconds to wait for a new PostgreSQL connection, unless the URL says (``connect_timeout``).
CONNECT_TIMEOUT = 10
#: SQLite's page cache per connection, in KiB: its default, and during ingestion's transactions.
CACHE_KIB = 2048
INGEST_CACHE_KIB = 65536
#: SQLite: the page size of a new database file (SQLite's default is 4 KiB; see ``_pragmas``).
PAGE_BYTES = 16384
#: SQLite: bytes the write-ahead log holds before a commit copies it back (see ``_pragmas``),
#: set in pages of the file's own size (a file created before keeps its 4 KiB pages).
WAL_CHECKPOINT_BYTES = 128 * 1024 * 1024
#: SQLite: bytes the log's file is cut back to when the log starts over: the same 128 MiB.
WAL_FILE_LIMIT = WAL_CHECKPOINT_BYTES
_IDLE_SINCE = "greenroom_idle_since"


def _wal(cursor: Any) -> None:
    """Switch the file to WAL (it stays so). Processes opening a new file at once: the switch
    needs the file to itself, and SQLite answers "database is locked" at once rather than
    calling the busy handler, so it is retried here for as long as the busy timeout."""
    deadline = time.monotonic() + 30
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if str(error) != "database is locked" or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def create_engine(
    url: str,
    *,
    ping_after_idle: float = PING_AFTER_IDLE,
    **kwargs: Any,
) -> sa.Engine:
    """An engine for ``url`` with the settings Greenroom needs on each database.

    ``ping_after_idle`` (PostgreSQL): seconds after which an idle pooled connection is checked
    before use (0 checks every checkout). A new PostgreSQL connection may take
    :data:`CONNECT_TIMEOUT` seconds unless the URL says: without a limit an unreachable server
    holds a request for the system's TCP timeout (two minutes on Linux), and a lookup that
    reconnects on the event loop (``catalog/api.py``) holds every request of the process.
    """
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        if url in ("sqlite://", "sqlite:///:memory:"):
            # One in-memory database shared by every thread, not one empty database each.
            kwargs.setdefault("poolclass", sa.pool.StaticPool)
        else:
            # Enough pooled connections for the requests one process runs at once (eight
            # clients): a connection beyond the pool is opened and closed for each request,
            # with its pragmas, which cost by-name a third of its time at eight clients with a
            # pool of four. Each holds a page cache of its own (2 MiB, below).
            kwargs.setdefault("pool_size", 8)
            kwargs.setdefault("max_overflow", 8)
            kwargs.setdefault("pool_use_lifo", True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False}, **kwargs)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            # SQLAlchemy emits BEGIN itself (below), so that writers can ask for IMMEDIATE.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            # Pages of 16 KiB in a new file (an existing file keeps its own; said before the
            # switch to WAL, which writes the file's header). An entity's row (its processed
            # and final JSON, about 4 KiB together) no longer spills into an overflow page, and
            # the B-trees of the search rows are shallower: a first load of 100,000 entities
            # took 43.0-44.1 s against 48.4-48.9 s with 4 KiB pages (8 KiB: 45.4-45.9 s;
            # 32 KiB: no better than 16), in turn, with 30% less system time.
            cursor.execute(f"PRAGMA page_size={PAGE_BYTES}")
            if url not in ("sqlite://", "sqlite:///:memory:"):
                _wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # SQLite's default page cache (2 MiB), per connection: the operating system caches
            # the file anyway. 16 MiB made no measurable difference to a first load of 50,000
            # entities (56.5 against 58.5 s), and cost up to 14 MiB of resident memory more per
            # pooled connection once it had served a large listing.
            cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            # The write-ahead log is copied back into the file once it holds 128 MiB of pages
            # (SQLite's default is 1,000 pages, 4 MiB of 4 KiB ones). A batch of a first load
            # dirties pages all over the indexes on refs; copied back at every commit, they were
            # written twice per batch, and commits took 10 of the 45 s of writes at 100,000
            # entities. At 128 MiB several batches share a copy: 66 -> 57 s for that load.
            page = cursor.execute("PRAGMA page_size").fetchone()[0]
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_BYTES // page}")
            # A single transaction can make the log far larger (building the indexes after a
            # first load of 100,000 entities writes 400 MB there), and SQLite keeps the file at
            # its largest size for reuse: cut back to the same 128 MiB each time it starts over.
            cursor.execute(f"PRAGMA journal_size_limit={WAL_FILE_LIMIT}")
            # Temporary files stay files (SQLite's default): building the deferred indexes of
            # a first load sorts every search row, and with temp_store=MEMORY that sort sat in
            # the process (50,000 entities: peak 429 MiB, against 303 with files, no slower).
            cursor.execute("PRAGMA temp_store=FILE")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(connection: sa.Connection) -> None:
            options = connection.get_execution_options()
            if _without_transaction(options):
                # SQLite wraps each statement in its own transaction. (A BEGIN here would never
                # be committed: SQLAlchemy does not commit in autocommit; the pool rolls back.)
                return
            connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_WRITE) else "BEGIN")

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    if "connect_timeout" not in sa.engine.make_url(url).query:
        kwargs["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT,
            **kwargs.get("connect_args", {}),
        }
    engine = sa.create_engine(url, **kwargs)
    _ping_after_idle(engine, ping_after_idle)
    return engine


def _ping_after_idle(engine: sa.Engine, seconds: float) -> None:
    """Check a pooled connection that sat idle for ``seconds`` before handing it out.

    A connection can die while it waits in the pool: PostgreSQL restarted, a firewall dropped
    an idle socket. SQLAlchemy's ``pool_pre_ping`` checks every connection at every checkout,
    one more round trip per request: by-name at 8 clients answered 555 requests/s with it and
    about 730 without. Here only connections idle longer than ``seconds`` are checked; a dead one
    is replaced before use (the pool retries with a new connection). A connection that dies
    while busy, or in the seconds after its last use, fails the statement that finds it out;
    SQLAlchemy then discards every connection older than the failure, so one restart costs at
    most the requests in flight.
    """

    @sa.event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise sa.exc.DisconnectionError(str(exc)) from exc  # the pool retries
            raise


#: Set by :func:`reader` on SQLite: its connections send no ``BEGIN``.
_NO_TRANSACTION = "greenroom_no_transaction"
#: Set by :func:`write_transaction`: on SQLite its transaction begins ``IMMEDIATE``.
_WRITE = "greenroom_write"


def _without_transaction(options: Mapping[str, Any]) -> bool:
    """Whether execution ``options`` ask for statements outside a transaction: a reader's
    (:func:`reader`), or autocommit."""
    return bool(options.get(_NO_TRANSACTION)) or options.get("isolation_level") == "AUTOCOMMIT"


WRITE_LOCK = 0x67726E  # "grn": the advisory lock key of catalog writes on PostgreSQL


@contextmanager
def write_transaction(
    engine: sa.Engine, *, changes_data: bool = True, durable: bool = True
) -> Iterator[sa.Connection]:
    """A transaction that holds the database's write lock from its first statement.

    Writers read what they are about to change (stored hashes, relations to re-stitch); two
    writers interleaving those reads and writes (two replicas, or ``catalog ingest`` beside a
    server) could each stitch from a snapshot missing the other's rows. So every writer takes
    one lock first: ``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on
    PostgreSQL. Readers never wait for it.

    Unless ``changes_data`` is false (bookkeeping such as leases, which no answer of the API
    depends on), a transaction that inserted, updated or deleted a row also increases the
    generation (:func:`read_generation`), in the same commit as its writes, so that caches keyed
    by it are never stale; one that wrote nothing (a refresh pass that found no change) leaves
    it, so that the caches outlive it.

    ``durable=False`` is for work that is redone anyway when it is lost (an ingestion batch: the
    next walk writes it again): PostgreSQL then acknowledges the commit before its WAL reaches
    the disk (``synchronous_commit = off``; a crash loses the last moments, never consistency).
    SQLite in WAL mode with ``synchronous=NORMAL`` already works that way. SQLite gives such a
    transaction a page cache of :data:`INGEST_CACHE_KIB` instead of :data:`CACHE_KIB`, and
    frees it at its end: a batch of a large load touches index pages all over the file, and
    with 2 MiB each was read again through a system call (at 100,000 entities, 17-19 s of
    system time against 10-11 s).

    Not on :func:`reader`'s engine: its connections open no transaction, so the lock would not
    hold and each statement would commit on its own.
    """
    if _without_transaction(engine.get_execution_options()):
        raise RuntimeError("write_transaction needs the engine, not db.reader's")
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE: True})
        sqlite_cache = not durable and connection.dialect.name == "sqlite"
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK}
                    )
                    if not durable:
                        connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
                elif sqlite_cache:
                    _cache_size(connection, INGEST_CACHE_KIB)
                connection.info[WROTE] = False  # the info outlives the checkout: start clean
                yield connection
                if changes_data and connection.info.pop(WROTE):
                    connection.execute(
                        generation.update()
                        .where(generation.c.id == 1)
                        .values(generation=generation.c.generation + 1)
                    )
        finally:
            if sqlite_cache and not connection.invalidated:
                _cache_size(connection, CACHE_KIB)  # frees the pages above it


def _cache_size(connection: sa.Connection, kib: int) -> None:
    """SQLite's page cache of this connection, through the driver: SQLAlchemy would begin a
    transaction for the statement outside one."""
    connection.connection.driver_connection.execute(  # type: ignore[union-attr]
        f"PRAGMA cache_size=-{kib}"
    )


def reader(engine: sa.Engine) -> sa.Engine:
    """``engine`` for reads whose statements need no transaction around them.

    PostgreSQL runs each statement in a snapshot of its own anyway (READ COMMITTED), but a
    connection outside autocommit wraps a request's one ``SELECT`` in ``BEGIN`` and
    ``ROLLBACK``: three round trips where one does (by-refs at 8 clients spent a quarter of
    its time closing the transaction). Not for statements that need one: ``SET LOCAL``,
    server-side cursors. On SQLite the same: no ``BEGIN`` (each ``SELECT`` is its own read
    transaction), which with its ``ROLLBACK`` was a third of by-name's database time.
    """
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine.execution_options(**{_NO_TRANSACTION: True})


def param_mark(connection: sa.Connection) -> str:
    """The driver's placeholder for a parameter in SQL sent as text (``?`` or ``%s``)."""
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


def among(connection: sa.Connection, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """``column IN values`` for a statement sent through :func:`driver_cursor`, and its
    parameters. On PostgreSQL the values are bound as one array (``column = ANY(%s)``): the
    statement is then the same text whatever their number, and the server parses one parameter
    instead of hundreds (the writer's reads of 500 refs at a time, in pairs: a third less time).
    On SQLite, one ``?`` per value, as ``IN`` binds them. The parameters are a list, as a
    cursor's ``execute`` takes them; through ``exec_driver_sql`` pass ``tuple(...)`` of them (a
    list there means many executions)."""
    if connection.dialect.name == "postgresql":
        return f"{column} = ANY(%s)", [list(values)]
    return f"{column} IN ({', '.join(['?'] * len(values))})", list(values)


def index_names(connection: sa.Connection, tables: Sequence[str]) -> set[str]:
    """The names of the indexes on ``tables``, expression indexes included (SQLAlchemy's
    reflection skips those on SQLite, with a warning)."""
    if connection.dialect.name == "postgresql":
        sql = (
            "SELECT indexname FROM pg_indexes "
            "WHERE schemaname = current_schema() AND tablename = ANY(%s)"
        )
        params: Any = (list(tables),)
    else:
        marks = ", ".join("?" * len(tables))
        sql = f"SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ({marks})"
        params = tuple(tables)
    return {str(name) for (name,) in connection.exec_driver_sql(sql, params)}


def driver_usable(connection: sa.Connection) -> bool:
    """Whether a statement sent past SQLAlchemy (:func:`driver_cursor`) runs where SQLAlchemy
    thinks it does: on a reader's connection (each statement on its own) or inside a
    transaction SQLAlchemy has begun. Elsewhere the driver would begin one that SQLAlchemy does
    not know of, and a ``commit()`` would not end it."""
    return connection.in_transaction() or _without_transaction(connection.get_execution_options())


@contextmanager
def driver_cursor(connection: sa.Connection) -> Iterator[Any]:
    """A cursor of the driver's own connection under ``connection``, for the few hot statements
    where SQLAlchemy's execution costs more than the statement (one-row reads, many rows read
    as plain tuples). The driver's errors go through SQLAlchemy's own handling, as from
    ``execute``: they come out as SQLAlchemy's exceptions (a NUL refused by PostgreSQL is a
    400), and a lost connection is invalidated with every pooled connection older than it.
    Statement events do not see these statements: none of them writes."""
    if not driver_usable(connection):
        raise RuntimeError("driver_cursor needs a reader's connection or an open transaction")
    dbapi = connection.dialect.loaded_dbapi
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    except dbapi.Error as exc:
        # SQLAlchemy's private handler, the one ``execute`` uses: the public pieces would leave
        # out the pool's invalidation of connections older than a disconnect.
        connection._handle_dbapi_exception(exc, None, None, cursor, None)
    finally:
        with contextlib.suppress(Exception):  # a connection invalidated above: SQLite raises
            cursor.close()


def read_generation(connection: sa.Connection) -> int:
    """The current generation: it changes whenever a write transaction commits.

    Read before every cached answer (facets), so through the driver's cursor where it can be
    (:func:`driver_usable`): SQLAlchemy's statement execution costs more than this one-row
    read (as by-name, ``served_final``)."""
    if not driver_usable(connection):
        query = sa.select(generation.c.generation).where(generation.c.id == 1)
        return int(connection.execute(query).scalar_one())
    with driver_cursor(connection) as cursor:
        cursor.execute(f"SELECT generation FROM {generation.name} WHERE id = 1")
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"{generation.name} has no row: the database was not migrated")
    return int(row[0])


def head_revision() -> str:
    """The newest migration, from the file names (``NNNN_what.py``, one line of history; a test
    holds this to Alembic's own answer)."""
    return max(
        path.name.partition("_")[0] for path in (MIGRATIONS / "versions").glob("[0-9]*_*.py")
    )


def is_current(engine: sa.Engine) -> bool:
    """Whether the database is at :func:`head_revision` already."""
    with engine.connect() as connection:
        return _current_in(connection)


def upgrade(engine: sa.Engine) -> None:
    """Bring the database of ``engine`` to the newest migration.

    A database that is current is recognised without Alembic, which imports every dialect it
    knows and a template engine: a tenth of a second of each start-up. A new, empty database is
    created from :data:`metadata` in one step and stamped with the newest migration, as
    Alembic's documentation recommends, instead of replaying every migration (0.22 s of a
    first start on SQLite, more on PostgreSQL, and of every test's database); the tables'
    ``after_create`` events add what migrations add beyond tables and indexes, and a test
    holds the two ways to the same schema. Either way under the write lock, so that replicas
    starting together migrate once.
    """
    if is_current(engine):
        return
    # No new generation: a migration keeps every answer (as it did under Alembic alone).
    with write_transaction(engine, changes_data=False) as connection:
        if not sa.inspect(connection).get_table_names():
            declare_tables()
            # Without checkfirst, which looks for each table along PostgreSQL's whole search
            # path: one found in another schema would be skipped, leaving this schema without it.
            metadata.create_all(connection, checkfirst=False)
            _alembic_version.create(connection)
            connection.execute(_alembic_version.insert().values(version_num=head_revision()))
        elif not _current_in(connection):
            _migrate(connection)


def _current_in(connection: sa.Connection) -> bool:
    """Whether a replica migrated the database while this one waited for the lock."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return False
    versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    return [row[0] for row in versions] == [head_revision()]


def _migrate(connection: sa.Connection) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def bulk_insert(
    connection: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> int:
    """Insert many rows through the driver, skipping SQLAlchemy's per-row parameter
    processing, which costs more than the insert itself on the hot path of ingestion: one
    ``executemany`` on SQLite, ``COPY`` on PostgreSQL. Values must already be of the driver's
    types (str, int, bool, None)."""
    batch = [tuple(row) for row in rows]
    if not batch:
        return 0
    if connection.dialect.name == "postgresql":
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in batch:
                copy.write_row(row)
        connection.info[WROTE] = True  # COPY does not pass through the statement events
        return len(batch)
    mark = param_mark(connection)
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))})"
    )
    connection.exec_driver_sql(sql, batch)
    return len(batch)


ANALYZED_TABLES = (
    "catalog_entities",
    "catalog_relations",
    "catalog_search",
    "catalog_stitch_queue",
)


def sample_statistics(engine: sa.Engine) -> None:
    """A quick ``ANALYZE`` (a sample of each table) while the tables grow fast.

    Without statistics PostgreSQL guesses a table's size from its first pages: in the middle of
    a first load of 50,000 entities it took 463,000 relations for 34,000 and answered every
    ``ref IN (...)`` of stitching with a scan of the whole table (a first load went from one
    minute to six). SQLite's statistics hold the table sizes of its last ``ANALYZE`` as counts:
    a catalog of a few hundred entities that takes in thousands more in one pass would have
    each stitch's delete of 500 refs planned as a scan, the table having been smaller than
    those refs' rows when it was analysed. Ingestion runs this each time the entities written
    double, so the sizes are never off by more than that.
    """
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            # The point is the tables' sizes, not histograms: a tenth of the default sample
            # (the statistics refresh after the pass brings the full ones).
            connection.exec_driver_sql("SET LOCAL default_statistics_target = 10")
            connection.exec_driver_sql(f"ANALYZE {', '.join(ANALYZED_TABLES)}")
        return
    # About a thousand rows of each index: milliseconds at any size (a full ANALYZE reads every
    # row, 0.9 s at 50,000 entities), with sizes right to within a factor of two or so.
    _sqlite_analyze(engine, limit=1000)


def _sqlite_analyze(engine: sa.Engine, limit: int = 0) -> None:
    """``ANALYZE`` on SQLite, reading at most about ``limit`` rows of each index (0: all).

    In a write transaction (``BEGIN IMMEDIATE``): ANALYZE writes ``sqlite_stat1``, and a read
    transaction that turns into a write fails at once, without waiting, when another writer
    has committed since it began.
    """
    with write_transaction(engine, changes_data=False) as connection:
        connection.exec_driver_sql(f"PRAGMA analysis_limit = {int(limit)}")
        try:
            for table in ANALYZED_TABLES:
                connection.exec_driver_sql(f"ANALYZE {table}")
        finally:
            connection.exec_driver_sql("PRAGMA analysis_limit = 0")  # the pooled connection


def refresh_statistics(engine: sa.Engine) -> None:
    """Bring the planner's statistics up to date after a large change (a first ingestion).

    Autovacuum gets there eventually; until it does, PostgreSQL plans filters with the
    statistics of an empty table and reads heap pages that the visibility map would let it
    skip. ``VACUUM`` cannot run in a transaction, hence the autocommit connection.
    """
    if engine.dialect.name != "postgresql":
        _sqlite_analyze(engine)
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"VACUUM (ANALYZE) {', '.join(ANALYZED_TABLES)}")
