"""``greenroom serve --workers N``: N worker processes on one port, forked by gunicorn's master.

uvicorn's own ``--workers`` starts each worker with ``spawn``: a fresh interpreter that imports
FastAPI, SQLAlchemy, pydantic and Greenroom all over again. On two cores that put the API of
two workers up at 2.3 s instead of 1.1 s, and the first refresh pass (which starts in a worker)
that much later, with 2.4 s more CPU spent beside it. gunicorn's master forks its workers
instead: they start with everything the master imported, in milliseconds, and share those pages
with it until they write to them. The master also supervises them as uvicorn's does: a worker
that dies is replaced; SIGTERM, SIGINT or SIGQUIT stop them gracefully.

The master builds the app once, to import everything and to fail as one process fails (a
broken plugin: a traceback and status 1), and then throws it away: each worker builds its own
(:meth:`Master.load` runs after the fork), with a database engine and connections of its own (a
connection must never cross a fork). The master has already migrated the database.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from greenroom.forks import die_with_parent

#: Seconds a worker may go without telling the master it is alive before the master kills it
#: (SIGABRT) and starts another. Its event loop tells it every half of this, so a loop blocked
#: for 60-120 s counts; the refresh loop's writes run in a thread beside the loop and do not
#: (gunicorn's default is 30 s).
HEARTBEAT_TIMEOUT = 120
#: Seconds a worker has to finish its requests and its shutdown after SIGTERM.
GRACEFUL_TIMEOUT = 30
#: Seconds an idle keep-alive connection stays open: uvicorn's default, as with one process
#: (gunicorn's own is 2).
KEEP_ALIVE = 5
#: Exit statuses of gunicorn's master when a worker could not start or load the app.
BOOT_FAILURES = (3, 4)


class GracefulArbiter(Arbiter):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn's master, with SIGINT and SIGQUIT stopping the workers as SIGTERM does.

    gunicorn sends its workers SIGQUIT ("stop now") on SIGINT, and uvicorn's worker does not act
    on SIGQUIT (Kludex/uvicorn-worker#2): a master interrupted alone (``kill -INT``, a container
    stopped with SIGINT) left its workers serving until it killed them 30 s later, without their
    shutdown. Ctrl-C in a terminal reaches every process of the group and never showed it.
    """

    def handle_int(self) -> None:
        raise StopIteration  # as handle_term: halt() stops the workers with SIGTERM

    handle_quit = handle_int


class Master(BaseApplication):  # type: ignore[misc]
    """gunicorn's master, configured from Greenroom's options instead of gunicorn's command
    line; ``build`` makes the ASGI app of one worker."""

    def __init__(self, build: Callable[[], Any], options: dict[str, Any]) -> None:
        self.build = build
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self.build()

    def run(self) -> None:
        GracefulArbiter(self).run()


def _die_with_the_master(arbiter: Any, _worker: Any) -> None:
    """gunicorn's ``post_fork`` hook: a worker ends with its master, even one killed outright;
    otherwise workers would go on serving, refreshing and holding the port, and the next
    ``serve`` could not start."""
    die_with_parent(arbiter.pid)


def serve(build: Callable[[], Any], *, address: str, workers: int) -> None:
    """Run ``workers`` processes serving ``build()``'s app on ``address`` (``host:port``, an
    IPv6 host in brackets) until stopped.

    Ends with ``SystemExit`` of a status in :data:`BOOT_FAILURES` when a worker could not start.
    """
    gc.collect()  # the garbage first (the app built to check the plugins): freeze keeps all
    gc.freeze()  # what the master allocated stays shared with the forks: no collection moves it
    Master(
        build,
        {
            "bind": [address],
            "workers": workers,
            "worker_class": "uvicorn_worker.UvicornWorker",
            "timeout": HEARTBEAT_TIMEOUT,
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "keepalive": KEEP_ALIVE,
            "proc_name": "greenroom",
            "post_fork": _die_with_the_master,
            "accesslog": "-",  # one line per request on stdout, as uvicorn's
            "errorlog": "-",
            "loglevel": "info",
            # No control socket for gunicornc (gunicorn 25.1+): it would be made in the user's
            # home (one path shared by every server of that user) and Greenroom has no use
            # for it.
            "control_socket_disable": True,
        },
    ).run()
