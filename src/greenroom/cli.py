"""The ``greenroom`` command: ``serve``, ``db upgrade``, and what plugins add (``catalog``)."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from greenroom.config import Config, ConfigError, load_config
from greenroom.context import AppContext, create_context
from greenroom.memory import kept_for_good
from greenroom.plugins import plugin_manager

if TYPE_CHECKING:
    from fastapi import FastAPI

cli = typer.Typer(no_args_is_help=True, add_completion=False, help="Greenroom developer portal.")
db_cli = typer.Typer(no_args_is_help=True, help="Database commands.")
cli.add_typer(db_cli, name="db")

ConfigOption = Annotated[
    list[Path] | None,
    typer.Option("--config", "-c", help="app-config.yaml files, merged in order (repeatable)."),
]


def config_or_exit(paths: list[Path] | None) -> Config:
    """Load config, or print the problem (naming the key) and exit with status 2."""
    if not paths and Path("app-config.yaml").exists():
        paths = [Path("app-config.yaml")]
    try:
        return load_config(paths or [])
    except ConfigError as exc:
        typer.echo(f"greenroom: {exc}", err=True)
        raise typer.Exit(2) from exc


def context_or_exit(cfg: Config) -> AppContext:
    """Database and plugins for ``cfg``, or the problem (naming the key) and exit status 2."""
    try:
        return create_context(cfg)
    except ConfigError as exc:
        typer.echo(f"greenroom: {exc}", err=True)
        raise typer.Exit(2) from exc


@cli.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes, to use every core (default 1).")
    ] = 1,
) -> None:
    """Run the portal (API and background refresh) until interrupted.

    With ``--workers N`` there are N processes on one port (forked by gunicorn's master, see
    ``greenroom/workers.py``); each is a replica, and they share the refresh work through
    leases in the database.
    """
    cfg = config_or_exit(config)
    if workers > 1 and sys.platform == "win32":
        typer.echo("greenroom: --workers needs gunicorn, which runs on Linux and macOS", err=True)
        raise typer.Exit(2)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    host = host or cfg.backend.listen.host
    port = port if port is not None else cfg.backend.listen.port
    context = context_or_exit(cfg)  # migrates once, before any worker starts
    try:
        check_port(host, port)
    except CannotListen as exc:
        typer.echo(f"greenroom: {exc.strerror}", err=True)
        raise typer.Exit(3) from exc
    # Before the web stack is imported: what a plugin starts now runs beside that import.
    context.plugins.hook.greenroom_serve_starting(context=context)
    # No collection first: it cost the start of a 1,000-entity catalog on PostgreSQL 40 ms
    # (1.117 against 1.079 s, medians of eight), beside the first load on a 2-core machine.
    # What it would have freed (the garbage of cycles of the configuration, the migration's
    # check and the fork's preparation) is one-off and small, and is frozen instead.
    with kept_for_good(collect_first=False):
        import uvicorn

        from greenroom.app import create_app

        if workers == 1:
            app = create_app(context)
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="info")
        return
    from greenroom import workers as pool

    # Built once here and thrown away (collected before the workers fork): what is wrong with
    # the plugins fails here as it does with one process, and the workers are forked with
    # every module of the app imported.
    create_app(context, background=False)
    context.engine.dispose()  # the workers are forked: each opens connections of its own

    def build() -> FastAPI:
        return create_app(create_context(cfg, migrate=False))

    try:
        pool.serve(build, address=address(host, port), workers=workers)
    except SystemExit as exc:
        if exc.code in pool.BOOT_FAILURES:  # gunicorn's: a worker could not start
            typer.echo("greenroom: a worker could not start (its error is above)", err=True)
            raise typer.Exit(1) from exc
        raise


def address(host: str, port: int) -> str:
    """``host:port``, an IPv6 host in brackets (as gunicorn's ``bind`` and messages want)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class CannotListen(OSError):
    """The address to listen on is taken, not this machine's, or not a name that resolves."""


def check_port(host: str, port: int) -> None:
    """Raise :class:`CannotListen` if ``host:port`` cannot be listened on.

    Checked before anything starts (a plugin's work forked at start, workers): uvicorn would
    say so only once the app is built, and gunicorn retries a taken port five times, a second
    apart, and then exits with status 1. A port taken between this check and the server's own
    bind still ends in uvicorn's or gunicorn's way.
    """
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[
            0
        ]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
            probe.bind(sockaddr)
    except OSError as exc:  # socket.gaierror included: a name that does not resolve
        message = f"cannot listen on {address(host, port)}: {exc.strerror}"
        raise CannotListen(exc.errno, message) from exc


@db_cli.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply the database migrations."""
    from greenroom import db

    cfg = config_or_exit(config)
    db.upgrade(db.create_engine(cfg.database_url))
    typer.echo("database is up to date")


def main() -> None:
    """Entry point of the ``greenroom`` script: plugins add their commands first."""
    try:
        plugin_manager().hook.greenroom_cli(cli=cli)
    except Exception as exc:  # a broken plugin must not hide which one it is
        typer.echo(f"greenroom: {exc}", err=True)
        sys.exit(2)
    cli()
