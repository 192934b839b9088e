"""The `docloop` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from engine import demo, simulate
from engine.database import masked
from engine.ingest import cli as ingest
from engine.settings import Settings

Handler = Callable[[argparse.Namespace], int]


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings()
    url = getattr(args, "database_url", None)
    return settings.model_copy(update={"database_url": url}) if url else settings


def cmd_replay(args: argparse.Namespace) -> int:
    from engine.replay import replay
    from engine.store.migrate import upgrade

    out = Path(args.out)
    settings = Settings()
    if args.database_url:
        settings = settings.model_copy(update={"database_url": args.database_url})
    else:
        # A replay is its own world: a fresh embedded store in the output folder, so a second run of the same
        # files gives the same output instead of treating every event as a duplicate.
        out.mkdir(parents=True, exist_ok=True)
        for leftover in out.glob("docloop.db*"):
            leftover.unlink()
        settings = settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{(out / 'docloop.db').resolve()}"})
    upgrade(settings.database_url)
    result = asyncio.run(replay([Path(p) for p in args.events], out, settings, args.partitions))
    events = result.report.events
    print(f"replayed {result.lines} lines from {len(args.events)} file(s) into {out}/")
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
    print(f"  store: {masked(settings.database_url)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from engine.database import connect
    from engine.report import Scope, UnknownScope, build_report, render_csv, render_json, render_text, resolve_scope

    settings = _settings(args)

    async def run() -> dict[str, object]:
        database = connect(settings.database_url)
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
        print(f"docloop report: {error}", file=sys.stderr)
        return 2
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
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def _row_limit(value: str) -> int:
    try:
        limit = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number (0: every row)") from None
    if limit < 0:
        raise argparse.ArgumentTypeError("must be 0 (every row) or more")
    return limit


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from engine.store.migrate import upgrade

    settings = _settings(args)
    upgrade(settings.database_url)
    print("database is at the latest schema")
    return 0


def cmd_schemas_export(args: argparse.Namespace) -> int:
    from engine.export import export

    for path in export(Path(args.out) if args.out else None):
        print(f"wrote {path}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from engine.settings import main as settings_main

    return settings_main(["--write", args.write] if args.write else [])


def cmd_serve(args: argparse.Namespace) -> int:
    from engine.serve import run_service

    return run_service(_settings(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="docloop", description="Feedback loop between clinical notes and denials")
    commands = parser.add_subparsers(dest="command", required=True)

    replay = commands.add_parser("replay", help="run the engine over JSONL event files, without a broker")
    replay.add_argument("events", nargs="+", help="files with one JSON event per line, in delivery order")
    replay.add_argument("--out", required=True, help="folder for notifications/escalations/dlq .jsonl")
    replay.add_argument("--database-url", help="store to use (default: a fresh SQLite file in --out)")
    replay.add_argument(
        "--partitions",
        type=int,
        help="partitions of the inbound topics to replay as (default DOCLOOP_TOPIC_PARTITIONS): each provider's "
        "events go to the task Kafka's default partitioner gives its NPI, each task with its own clock",
    )
    replay.set_defaults(func=cmd_replay)

    report = commands.add_parser(
        "report",
        help="where the money is, what is escalated to whom, and whether feedback worked",
        description="The report of the store: a summary (dollars at risk and their weekly trend, the date range of "
        "the data, where the loop works and where it does not, open escalations by owner and age), then providers, "
        "departments, root causes, escalations and patterns, sorted by dollars at risk, then cases.",
        epilog="Examples:\n"
        "  docloop report --database-url sqlite+aiosqlite:///demo-out/docloop.db\n"
        "  docloop report --format html --out report.html\n"
        "  docloop report --department Orthopedics --format html --out ortho.html\n"
        "  docloop report --provider 1234567893 --format csv --out patterns.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("--database-url", help="default: DOCLOOP_DATABASE_URL")
    report.add_argument(
        "--format",
        choices=["text", "json", "html", "csv"],
        default="text",
        help="text (default): readable lines; json: everything, the machine format; html: one self-contained page; "
        "csv: every pattern, one row each",
    )
    report.add_argument("--out", help="write to this file instead of standard output")
    from engine.report import DEFAULT_LIMIT

    report.add_argument(
        "--limit",
        type=_row_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"rows per table in text and html (default {DEFAULT_LIMIT}; 0: every row); json and csv always hold "
        "every row",
    )
    report.add_argument("--provider", metavar="NPI", help="one provider's page: only their patterns and escalations")
    report.add_argument("--department", metavar="NAME", help="one department's page (the name, in any case)")
    report.set_defaults(func=cmd_report)

    serve = commands.add_parser("serve", help="the Kafka service: consumers, outbox relay and clock ticker")
    serve.add_argument("--database-url", help="default: DOCLOOP_DATABASE_URL")
    serve.set_defaults(func=cmd_serve)

    reference = commands.add_parser("settings", help="print the DOCLOOP_ configuration reference (Markdown)")
    reference.add_argument("--write", metavar="FILE", help="rewrite the reference section of FILE (e.g. README.md)")
    reference.set_defaults(func=cmd_settings)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply Alembic migrations up to head")
    upgrade.add_argument("--database-url", help="default: DOCLOOP_DATABASE_URL")
    upgrade.set_defaults(func=cmd_db_upgrade)

    schemas = commands.add_parser("schemas", help="public contracts")
    schema_commands = schemas.add_subparsers(dest="schemas_command", required=True)
    export = schema_commands.add_parser("export", help="write JSON Schema and AsyncAPI files into schemas/")
    export.add_argument("--out", help="folder (default: the schemas package)")
    export.set_defaults(func=cmd_schemas_export)

    simulate.add_parser(commands)
    ingest.add_parser(commands)
    demo.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.func
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
