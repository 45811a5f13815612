"""``greenroom catalog validate`` and ``greenroom catalog ingest``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from greenroom.catalog.ingest.parsing import parse_documents
from greenroom.catalog.model.checks import check_entity
from greenroom.catalog.model.problems import Problem
from greenroom.catalog.model.validation import Validator
from greenroom.cli import ConfigOption, config_or_exit, context_or_exit

catalog_cli = typer.Typer(no_args_is_help=True)


def validate_file(path: Path, validator: Validator, *, found: bool = False) -> list[Problem]:
    """Every problem of one entity file, offline (placeholders are not read).

    A file ``found`` in a folder (rather than named) is skipped when none of its documents
    looks like an entity: a folder of catalog files also holds the OpenAPI and AsyncAPI files
    their placeholders load.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(f"cannot read file: {exc}", file=str(path))]
    docs = parse_documents(text)
    if found and not any(
        isinstance(d.data, dict) and ("apiVersion" in d.data or "kind" in d.data) for d in docs
    ):
        return []
    problems = []
    for doc in docs:
        label = f"document {doc.index + 1}"
        if doc.error:
            problems.append(
                Problem(
                    doc.error,
                    file=str(path),
                    line=doc.error_line or doc.line,
                    column=doc.error_column,
                    entity=label,
                )
            )
            continue
        if not isinstance(doc.data, dict):
            problems.append(
                Problem(
                    "Expected an entity (a mapping of keys)",
                    file=str(path),
                    line=doc.line,
                    entity=label,
                )
            )
            continue
        entity = _without_placeholders(doc.data)
        for err in check_entity(validator, entity):
            problems.append(
                Problem(err.message, file=str(path), line=doc.line_of(err.field), column=1)
            )
    return problems


def _without_placeholders(data: object) -> object:
    """Stand a placeholder in for its content, so that offline validation can check the rest."""
    if isinstance(data, dict):
        if len(data) == 1 and str(next(iter(data))).startswith("$"):
            return "<placeholder>"
        return {k: _without_placeholders(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_without_placeholders(v) for v in data]
    return data


@catalog_cli.command("validate")
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Entity files or folders to check.")],
) -> None:
    """Check entity files offline; print problems as file:line:column: message."""
    from greenroom.catalog.model.kinds import BUILTIN_KINDS
    from greenroom.plugins import flatten, plugin_manager

    kinds = flatten(plugin_manager().hook.greenroom_entity_kinds()) or list(BUILTIN_KINDS)
    validator = Validator(kinds)
    files: list[tuple[Path, bool]] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
            files.extend((p, True) for p in found)
        else:
            files.append((path, False))
    bad = 0
    for file, found_in_folder in files:
        problems = validate_file(file, validator, found=found_in_folder)
        for problem in problems:
            # Always file:line:column, so that editors and CI annotations can jump to it.
            typer.echo(f"{file}:{problem.line or 1}:{problem.column or 1}: {problem.message}")
        bad += bool(problems)
    typer.echo(f"{len(files)} file(s) checked, {bad} invalid", err=True)
    raise typer.Exit(1 if bad else 0)


@catalog_cli.command("ingest")
def ingest(config: ConfigOption = None) -> None:
    """Run one full ingestion pass and print a summary of entities per kind and problems."""
    # rich is imported here, not at the top: every `greenroom` command, `serve` included, loads
    # this module to register the catalog's commands, and only this one draws (rich costs
    # `serve` 2 MiB and 60-120 ms of its start-up).
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    from greenroom.catalog.plugin import service

    cfg = config_or_exit(config)
    context = context_or_exit(cfg)
    svc = service(context)
    roots = svc.roots()
    console = Console(stderr=True)
    with Progress(console=console, disable=not console.is_terminal, transient=True) as progress:
        task = progress.add_task("Ingesting", total=len(roots))
        summary = svc.refresh(roots, progress=lambda _: progress.advance(task))
    out = Console(width=max(100, int(os.environ.get("COLUMNS", "100"))))
    table = Table(title="Catalog after ingestion")
    table.add_column("Kind")
    table.add_column("Entities", justify="right")
    counts = svc.counts()
    for kind, count in sorted(counts.items()):
        table.add_row(kind, str(count))
    table.add_row("[bold]total[/bold]", str(sum(counts.values())))
    out.print(table)
    out.print(summary.describe(), highlight=False, soft_wrap=True)
    for problem in summary.problems:
        out.print(f"[red]error[/red] {escape(problem.text())}", markup=True, highlight=False)
    raise typer.Exit(1 if summary.problems else 0)
