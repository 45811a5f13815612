"""``greenroom serve --workers N``: N worker processes on one port, forked by gunicorn's master.

uvicorn's own ``--workers`` starts each worker with ``spawn``: a fresh interpreter that imports
FastAPI, SQLAlchemy, pydantic and Greenroom all over again. On two cores that put the API of
two workers up at 1.6-2.1 s instead of 1.0 s for one process, and the first refresh pass (which
starts in a worker) that much later, with 1.2 s more CPU spent beside it. gunicorn's master
forks its workers instead: they start with everything the master imported, in milliseconds,
and share those pages with it until they write to them. The master also supervises them as
uvicorn's does: a worker that dies is replaced, SIGTERM or SIGINT stops them gracefully.

The master imports the app's modules before it forks, but builds no app: each worker builds its
own (:meth:`Master.load` runs after the fork), with a database engine and connections of its own
(a connection must never cross a fork). The master has already migrated the database.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

#: Seconds a worker may go without telling the master it is alive before it is killed and
#: replaced. Its event loop tells it; the refresh loop's writes run in a thread beside it, so a
#: long pass does not count, but a loop held by the interpreter lock for seconds must not
#: either (gunicorn's default is 30 s).
HEARTBEAT_TIMEOUT = 120
#: Seconds a worker has to finish its requests and its shutdown after SIGTERM.
GRACEFUL_TIMEOUT = 30
#: Seconds an idle keep-alive connection stays open: uvicorn's default, as with one process
#: (gunicorn's own is 2).
KEEP_ALIVE = 5


class PortInUse(OSError):
    """The address to listen on is taken (or not this machine's)."""


class Master(BaseApplication):  # type: ignore[misc]  # gunicorn has no type hints
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


def check_port(host: str, port: int) -> None:
    """Raise :class:`PortInUse` if ``host:port`` cannot be listened on.

    gunicorn retries a taken port five times, a second apart, and then exits with status 1; one
    process (uvicorn) says so at once, with status 3. Checked here first so that both behave
    alike; a port taken between this check and gunicorn's bind still ends in gunicorn's way.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                message = f"cannot listen on {host}:{port}: {exc.strerror}"
                raise PortInUse(exc.errno, message) from exc
            raise


def serve(build: Callable[[], Any], *, host: str, port: int, workers: int) -> None:
    """Run ``workers`` processes serving ``build()``'s app on ``host:port`` until stopped."""
    check_port(host, port)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
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
            "accesslog": "-",  # one line per request on stdout, as uvicorn's
            "errorlog": "-",
            "loglevel": "info",
            # No control socket for gunicornc (gunicorn 25.1+): it would be made in the user's
            # home (one path shared by every server of that user) and Greenroom has no use
            # for it.
            "control_socket_disable": True,
        },
    ).run()
