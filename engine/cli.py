"""The `docloop` command line.

Every problem a user can fix ends as one line on stderr and a documented exit code (engine/errors.py, README's
command-line section), never as a traceback; passwords in database URLs never appear in what it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NoReturn, cast

from pydantic import ValidationError
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine import demo, simulate
from engine.database import DatabaseUrlError, check_database_url, connect, masked, sqlite_path
from engine.errors import (
    EXIT_INTERNAL,
    EXIT_NO_DATA,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
    ExampleHelpFormatter,
    examples,
    readable_file,
    writable_file,
)
from engine.ingest import cli as ingest
from engine.runtime import tune_gc
from engine.settings import Settings

Handler = Callable[[argparse.Namespace], int]

PROGRESS_SECONDS = 5.0  # replay reports progress on stderr at most this often (and only on long input)


def _version() -> str:
    try:
        return version("docloop")
    except PackageNotFoundError:
        return "0.1.0 (source)"


def _database_url(args: argparse.Namespace) -> str:
    url: str = getattr(args, "database_url", None) or Settings().database_url
    try:
        check_database_url(url)
    except DatabaseUrlError as error:
        raise CliError(str(error)) from None
    path = sqlite_path(url)
    if path is not None and not Path(path).parent.is_dir():
        raise CliError(f"folder {Path(path).parent} of the SQLite store does not exist")
    return url


def _settings(args: argparse.Namespace) -> Settings:
    return Settings().model_copy(update={"database_url": _database_url(args)})


def _migrate(url: str) -> None:
    from engine.store.migrate import upgrade

    try:
        upgrade(url)
    except Exception as error:
        raise CliError(
            f"cannot reach or migrate the database {masked(url)} ({type(error).__name__})", EXIT_UNREACHABLE
        ) from None


async def open_store(url: str) -> AsyncEngine:
    """The store at `url` for reading; CliError when there is none (and never create one as a side effect)."""
    path = sqlite_path(url)
    if path is not None and not Path(path).is_file():
        raise CliError(
            f"no Docloop store at {path}: run `docloop replay` or `docloop serve` first, or pass --database-url",
            EXIT_NO_DATA,
        )
    database = connect(url)
    try:
        async with database.connect() as conn:
            has_schema = await conn.run_sync(lambda sync: inspect(sync).has_table("patterns"))
            version = await conn.scalar(text("SELECT version_num FROM alembic_version")) if has_schema else None
    except Exception as error:
        await database.dispose()
        raise CliError(f"cannot reach the database {masked(url)} ({type(error).__name__})", EXIT_UNREACHABLE) from None
    if not has_schema:
        await database.dispose()
        raise CliError(
            f"{masked(url)} holds no Docloop store (no tables): run `docloop db upgrade` first", EXIT_NO_DATA
        )
    from engine.store.migrate import head_revision

    if version != head_revision():
        await database.dispose()
        raise CliError(
            f"{masked(url)} holds a store at schema {version}, this docloop reads {head_revision()}: "
            "run `docloop db upgrade` first"
        )
    return database


class Progress:
    """Prints how far a long replay got, to stderr, at most every PROGRESS_SECONDS (nothing on short input)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, every: float = PROGRESS_SECONDS) -> None:
        self.clock, self.every = clock, every
        self.started = self.last = clock()

    def __call__(self, lines: int) -> None:
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            rate = lines / max(now - self.started, 1e-9)
            print(f"replay: {lines:,} events applied so far ({rate:,.0f}/s)", file=sys.stderr, flush=True)


def cmd_replay(args: argparse.Namespace) -> int:
    from engine.replay import replay

    paths = [readable_file(Path(p), "events file") for p in args.events]
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} exists and is not a folder")
    settings = Settings()
    if args.database_url:
        settings = settings.model_copy(update={"database_url": _database_url(args)})
    else:
        # A replay is its own world: a fresh embedded store in the output folder, so a second run of the same
        # files gives the same output instead of treating every event as a duplicate.
        out.mkdir(parents=True, exist_ok=True)
        for leftover in out.glob("docloop.db*"):
            leftover.unlink()
        settings = settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{(out / 'docloop.db').resolve()}"})
    _migrate(settings.database_url)
    tune_gc()
    result = asyncio.run(replay(paths, out, settings, args.partitions, progress=Progress()))
    events = result.report.events
    print(f"replayed {result.lines} lines from {len(paths)} file(s) into {out}/")
    print(
        f"  applied {sum(v for k, v in events.items() if k.endswith(':applied'))}, "
        f"ignored {sum(v for k, v in events.items() if k.endswith(':ignored'))}, "
        f"duplicates {sum(v for k, v in events.items() if k.endswith(':duplicate'))}, "
        f"rejected to dlq {result.dlq}"
    )
    for key, count in sorted(events.items()):
        print(f"  event {key}: {count}")
    for key, count in sorted(result.report.rejected.items()):
        print(f"  dlq {key}: {count}")
    print(f"  notifications {result.notifications}, escalations {result.escalations}")
    for key, count in sorted(result.report.notifications.items()):
        print(f"  notification {key}: {count}")
    for key, count in sorted(result.report.escalations.items()):
        print(f"  escalation level {key}: {count}")
    for key, count in sorted(result.report.deliveries.items()):
        print(f"  delivery {key}: {count}")
    from engine.volume import load_routed, render_text, volume

    print(render_text(volume(load_routed(out))), end="")
    print(f"  store: {masked(settings.database_url)}")
    if result.lines == 0:
        raise CliError("the files hold no events", EXIT_NO_DATA)
    if result.dlq >= result.lines:
        raise CliError(f"every one of the {result.lines} lines was rejected: see {out / 'dlq.jsonl'}", EXIT_NO_DATA)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from engine.report import Scope, UnknownScope, build_report, render_csv, render_json, render_text, resolve_scope

    url = _database_url(args)
    out = writable_file(Path(args.out), "--out") if args.out else None

    async def run() -> dict[str, object]:
        database = await open_store(url)
        try:
            scope = Scope()
            if args.provider or args.department:
                scope = await resolve_scope(database, args.provider, args.department)
            return await build_report(database, scope)
        finally:
            await database.dispose()

    try:
        report = asyncio.run(run())
    except UnknownScope as error:
        raise CliError(str(error), EXIT_USAGE) from None
    limit = args.limit or None  # 0: every row
    if args.format == "json":
        text = render_json(report)
    elif args.format == "csv":
        text = render_csv(report)
    elif args.format == "html":
        from engine.report_html import render_html

        text = render_html(report, limit)
    else:
        text = render_text(report, limit)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {out}")
    else:
        print(text)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    _migrate(_database_url(args))
    print("database is at the latest schema")
    return 0


def cmd_schemas_export(args: argparse.Namespace) -> int:
    from engine.export import export

    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise CliError(f"--out {args.out} is a file, not a folder")
    for path in export(Path(args.out) if args.out else None):
        print(f"wrote {path}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from engine.settings import main as settings_main

    if not args.write:
        return settings_main([])
    readable_file(Path(args.write), "--write")
    try:
        return settings_main(["--write", args.write])
    except ValueError as error:
        raise CliError(f"{args.write}: {error}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    from engine.serve import run_service

    return run_service(_settings(args))


def _non_negative_int(text: str, least: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {least} or more")
    return value


def _positive_int(text: str) -> int:
    return _non_negative_int(text, 1)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line instead of the usage block: the mistake, and where the help is."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="docloop",
        description="Feedback loop between clinical notes and denials",
        epilog="exit codes: 0 done, 1 internal error, 2 bad arguments or input, 3 database or Kafka unreachable, "
        "4 nothing to work with (no store, every line rejected)",
    )
    parser.add_argument("--version", action="version", version=f"docloop {_version()}")
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, parser_class=Parser),
    )

    def command(name: str, help: str, *example_lines: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help, description=help, epilog=examples(*example_lines), formatter_class=ExampleHelpFormatter
        )

    replay = command(
        "replay",
        "run the engine over JSONL event files, without a broker",
        "docloop replay engine/examples/scenario.jsonl --out replay-out",
        "docloop replay day1.jsonl day2.jsonl --out out --database-url postgresql+asyncpg://docloop@db/docloop",
    )
    replay.add_argument("events", nargs="+", help="files with one JSON event per line, in delivery order")
    replay.add_argument("--out", required=True, help="folder for notifications/escalations/dlq .jsonl")
    replay.add_argument("--database-url", help="store to use (default: a fresh SQLite file in --out)")
    replay.add_argument(
        "--partitions",
        type=_positive_int,
        help="partitions of the inbound topics to replay as (default DOCLOOP_TOPIC_PARTITIONS): each provider's "
        "events go to the task Kafka's default partitioner gives its NPI, each task with its own clock",
    )
    replay.set_defaults(func=cmd_replay)

    report = command(
        "report",
        "where the money is, what is escalated to whom, and whether feedback worked",
        "docloop report --database-url sqlite+aiosqlite:///demo-out/docloop.db",
        "docloop report --format html --out report.html",
        "docloop report --department Orthopedics --format html --out ortho.html",
        "docloop report --provider 1234567893 --format csv --out patterns.csv",
    )
    report.add_argument("--database-url", help="default: DOCLOOP_DATABASE_URL")
    report.add_argument(
        "--format",
        choices=["text", "json", "html", "csv"],
        default="text",
        help="text (default): readable lines; json: everything, the machine format; html: one self-contained page; "
        "csv: every pattern, one row each",
    )
    report.add_argument("--out", help="write to this file instead of standard output (its folder must exist)")
    from engine.report import DEFAULT_LIMIT

    report.add_argument(
        "--limit",
        type=_non_negative_int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"rows per table in text and html (default {DEFAULT_LIMIT}; 0: every row); json and csv always hold "
        "every row",
    )
    report.add_argument("--provider", metavar="NPI", help="one provider's page: only their patterns and escalations")
    report.add_argument("--department", metavar="NAME", help="one department's page (the name, in any case)")
    report.set_defaults(func=cmd_report)

    serve = command(
        "serve",
        "the Kafka service: consumers, outbox relay, clock ticker and the HTTP side port",
        "DOCLOOP_DATABASE_URL=postgresql+asyncpg://docloop:PASSWORD@db/docloop docloop serve",
    )
    serve.add_argument("--database-url", help="default: DOCLOOP_DATABASE_URL")
    serve.set_defaults(func=cmd_serve)

    reference = command(
        "settings",
        "print the DOCLOOP_ configuration reference (Markdown)",
        "docloop settings",
        "docloop settings --write README.md",
    )
    reference.add_argument("--write", metavar="FILE", help="rewrite the reference section of FILE (e.g. README.md)")
    reference.set_defaults(func=cmd_settings)

    db = command("db", "database schema", "docloop db upgrade --database-url sqlite+aiosqlite:///./docloop.db")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser(
        "upgrade",
        help="apply Alembic migrations up to head",
        epilog=examples("docloop db upgrade", "docloop db upgrade --database-url sqlite+aiosqlite:///./docloop.db"),
        formatter_class=ExampleHelpFormatter,
    )
    upgrade.add_argument("--database-url", help="default: DOCLOOP_DATABASE_URL")
    upgrade.set_defaults(func=cmd_db_upgrade)

    schemas = command("schemas", "public contracts", "docloop schemas export")
    schema_commands = schemas.add_subparsers(dest="schemas_command", required=True)
    export = schema_commands.add_parser(
        "export",
        help="write JSON Schema, AsyncAPI and OpenAPI files into schemas/",
        epilog=examples("docloop schemas export", "docloop schemas export --out /tmp/contracts"),
        formatter_class=ExampleHelpFormatter,
    )
    export.add_argument("--out", help="folder (default: the schemas package)")
    export.set_defaults(func=cmd_schemas_export)

    simulate.add_parser(commands)
    ingest.add_parser(commands)
    demo.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.func
    name = f"docloop {args.command}"
    try:
        return handler(args)
    except CliError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return error.code
    except ValidationError as error:  # settings from DOCLOOP_ variables; the message names them, not their values
        names = sorted({f"DOCLOOP_{str(e['loc'][0]).upper()}" for e in error.errors() if e["loc"]})
        print(f"{name}: error: invalid setting {', '.join(names)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if os.environ.get("DOCLOOP_DEBUG"):
            raise
        print(
            f"{name}: internal error: {type(error).__name__} (set DOCLOOP_DEBUG=1 to see the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
