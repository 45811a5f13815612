"""Processes forked from the server: ``serve --workers N``'s workers, and work a plugin starts
at once before the server imports its web stack (``greenroom_serve_starting``).

A fork starts in a millisecond with everything the server had imported, where a spawned process
imports it all again (half a second or more); it must happen while the server has a single
thread and no open database connection.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def die_with_parent() -> None:
    """In a forked process: on Linux, have the kernel send it SIGTERM when its parent dies, even
    by SIGKILL (the out-of-memory killer), so that it does not go on alone; elsewhere nothing."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def run_forked(name: str, work: Callable[[], None]) -> int | None:
    """Run ``work`` in a forked process; returns its pid, or ``None`` where there is no fork.

    The child ends when ``work`` returns (status 0) or raises (status 1, the error logged), with
    its parent, or on SIGTERM; it never returns into the caller's code. The parent reaps it from a
    daemon thread (blocked in ``waitpid``, holding no lock, so later forks stay safe).
    """
    if not hasattr(os, "fork"):
        return None
    pid = os.fork()
    if pid == 0:  # the child
        status = 1
        try:
            die_with_parent()
            work()
            status = 0
        except BaseException:
            log.exception("%s failed", name)
        finally:
            logging.shutdown()  # flush what the handlers hold
            os._exit(status)  # never the parent's atexit handlers or its finally blocks

    def reap() -> None:
        # gunicorn's master reaps any child it sees end: then there is nothing left here.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    threading.Thread(target=reap, name=f"reap-{name}", daemon=True).start()
    return pid
