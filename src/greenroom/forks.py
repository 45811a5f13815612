"""Processes forked from the server: ``serve --workers N``'s workers, and work a plugin starts
at once before the server imports its web stack (``greenroom_serve_starting``).

A fork starts in a millisecond with everything the server had imported, where a spawned process
imports it all again (half a second or more); it must happen while the server has a single
thread and no open database connection.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


def die_with_parent(parent: int | None = None) -> None:
    """In a forked process: on Linux, have the kernel send it SIGTERM when its parent dies, even
    by SIGKILL (the out-of-memory killer), so that it does not go on alone; elsewhere nothing.
    With ``parent`` (its pid before the fork), a parent already gone ends it at once."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
        if parent is not None and os.getppid() != parent:  # died before the call above
            os._exit(1)


@dataclass(frozen=True)
class Forked:
    """A process :func:`run_forked` started: its ``pid``, and ``ended``, the reading end of a
    pipe that the child holds open for writing and never writes to: it reaches its end when
    the child has ended, whether its work returned, raised or it was killed. Not before a
    process the child forked and left running has ended too, since that one holds the pipe
    as well: wait with a time limit. Processes forked from the server later (``--workers``)
    inherit it, so each can wait for the child without being its parent; an event loop can
    watch it without a thread (:func:`ended`)."""

    pid: int
    ended: int


def run_forked(name: str, work: Callable[[], None]) -> Forked | None:
    """Run ``work`` in a forked process; returns it, or ``None`` where it could not fork
    (no ``os.fork``, or the system refused: then the caller's usual path does the work).

    Call it from the main thread. The child ends when ``work`` returns (status 0) or raises
    (status 1, the error logged), and, on Linux, with its parent. It ignores SIGINT: Ctrl-C
    reaches a terminal's whole process group, and the server stopping is what ends it, as it
    ends a pass running in the server's own thread (killed with its process, its leases left to
    run out, so that the work is taken up again). It never returns into the caller's code. The
    parent reaps it on SIGCHLD, with no thread (gunicorn's master, which reaps any child,
    replaces that handler with its own).
    """
    if not hasattr(os, "fork"):
        return None
    parent = os.getpid()
    pipe: tuple[int, ...] = ()  # closed again if the fork fails
    try:
        pipe = os.pipe()
        pid = os.fork()
    except OSError:
        for descriptor in pipe:
            os.close(descriptor)
        log.warning("could not fork a process for the %s; doing it here", name, exc_info=True)
        return None
    ended, holder = pipe
    if pid == 0:  # the child; ``holder`` stays open until it ends
        status = 1
        try:
            os.close(ended)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            die_with_parent(parent)
            work()
            status = 0
        except BaseException:
            log.exception("%s failed", name)
        finally:
            logging.shutdown()  # flush what the handlers hold
            os._exit(status)  # never the parent's atexit handlers or its finally blocks

    def reap(_signum: int, _frame: object) -> None:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid  # reaped elsewhere
        if done == pid:  # then never again: its pid may be another child's one day
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    signal.signal(signal.SIGCHLD, reap)
    os.close(holder)  # the child's copy is the only one left
    return Forked(pid, ended)


async def ended(forked: Forked) -> None:
    """Return once ``forked`` has ended (see :class:`Forked`), without a thread: a thread
    blocked in a read would hold the server's exit until the child ends. Each call watches a
    copy of the descriptor of its own, since an event loop keeps one reader per descriptor:
    several tasks may wait at once."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    watched = os.dup(forked.ended)

    def readable() -> None:
        try:
            at_end = not os.read(watched, 4096)  # bytes written by mistake are no end
        except BlockingIOError:
            return
        if at_end and not done.done():
            done.set_result(None)

    loop.add_reader(watched, readable)
    try:
        await done
    finally:
        loop.remove_reader(watched)
        os.close(watched)
