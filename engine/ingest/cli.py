"""`docloop ingest x12|fhir FILE...`: remittances and FHIR resources into Docloop events (JSONL or Kafka).

Exit codes: 0 when every part of every file was read; 1 when something failed (its problems are on stderr, the
good parts are still written or published); 2 for a bad command line or provider directory.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from engine.errors import ExampleHelpFormatter, examples
from engine.ingest.common import (
    CLAIM_LEVEL_PROCEDURE_CODE,
    DEFAULT_DEPARTMENT,
    DirectoryError,
    IngestOptions,
    Outcome,
    ProviderDirectory,
    ProviderLookup,
)
from schemas import npi_is_valid

Reader = Callable[[Path, IngestOptions, str], Outcome]


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ingest = subparsers.add_parser(
        "ingest",
        help="turn X12 835 remittances or FHIR resources into Docloop events",
        description="Turn payer remittances (X12 835) or FHIR resources into Docloop events, as JSONL or on Kafka.",
        epilog=examples("docloop ingest x12 remit.835 --out events.jsonl", "docloop ingest fhir bundle.json --publish"),
        formatter_class=ExampleHelpFormatter,
    )
    formats = ingest.add_subparsers(dest="ingest_format", required=True, metavar="{x12,fhir}")

    x12 = formats.add_parser(
        "x12",
        help="X12 835 remittances (005010X221A1) into claim.denied events",
        description="One claim.denied event per claim with a denial adjustment, on a line or at claim level.",
        epilog=examples(
            "docloop ingest x12 remit.835 --provider-directory providers.csv --out events.jsonl",
            "docloop ingest x12 *.835 --claim-id clp07 --publish",
        ),
        formatter_class=ExampleHelpFormatter,
    )
    _add_common_options(x12, source="x12-835")
    x12.add_argument(
        "--claim-id",
        dest="claim_id_from",
        type=_id_source,
        metavar="SOURCE",
        default="clp01",
        help="where claim_id comes from: clp01 (patient control number, default), clp07, or ref:QUALIFIER",
    )
    x12.add_argument(
        "--encounter-id",
        dest="encounter_id_from",
        type=_id_source,
        metavar="SOURCE",
        default="clp01",
        help="where encounter_id comes from (same choices; default clp01)",
    )
    x12.set_defaults(func=run_x12)

    fhir = formats.add_parser(
        "fhir",
        help="FHIR R4 JSON, Bundles or NDJSON into claim.denied and note.signed events",
        description="ClaimResponse/ExplanationOfBenefit into claim.denied; DocumentReference/Composition into "
        "note.signed.",
        epilog=examples(
            "docloop ingest fhir bundle.json --out events.jsonl", "docloop ingest fhir resources.ndjson --publish"
        ),
        formatter_class=ExampleHelpFormatter,
    )
    _add_common_options(fhir, source="fhir")
    fhir.set_defaults(func=run_fhir)


def _add_common_options(parser: argparse.ArgumentParser, *, source: str) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="input files")
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="write the events as JSONL to FILE, or '-' for stdout (the default unless --publish is given)",
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="send the events to Kafka (DOCLOOP_KAFKA_BOOTSTRAP, DOCLOOP_TOPIC_CLAIMS_DENIED, "
        "DOCLOOP_TOPIC_NOTES_SIGNED)",
    )
    parser.add_argument(
        "--default-npi",
        type=_npi,
        metavar="NPI",
        help="NPI to use when the input names no NPI and the directory has no match",
    )
    parser.add_argument(
        "--default-department",
        default=DEFAULT_DEPARTMENT,
        metavar="NAME",
        help=f"department when the provider directory does not know the NPI (default: {DEFAULT_DEPARTMENT})",
    )
    parser.add_argument(
        "--provider-directory",
        type=Path,
        metavar="CSV",
        help="CSV with columns npi and any of department, name, provider_id",
    )
    parser.add_argument(
        "--claim-level-code",
        default=CLAIM_LEVEL_PROCEDURE_CODE,
        metavar="CODE",
        help="procedure code of the line that carries claim-level adjustments (default: %(default)s)",
    )
    parser.add_argument(
        "--source", default=source, metavar="NAME", help="the events' source field (default: %(default)s)"
    )


def _npi(value: str) -> str:
    if not npi_is_valid(value):
        raise argparse.ArgumentTypeError("not a valid NPI (10 digits with a correct check digit)")
    return value


def _id_source(value: str) -> str:
    lowered = value.lower()
    if lowered in ("clp01", "clp07") or (lowered.startswith("ref:") and len(value) > 4):
        return lowered
    raise argparse.ArgumentTypeError("expected clp01, clp07 or ref:QUALIFIER (e.g. ref:EA)")


def run_x12(args: argparse.Namespace) -> int:
    from engine.ingest.x12 import read_x12

    return _run(args, read_x12)


def run_fhir(args: argparse.Namespace) -> int:
    from engine.ingest.fhir import read_fhir

    return _run(args, read_fhir)


def _options(args: argparse.Namespace) -> IngestOptions:
    directory = ProviderDirectory.from_csv(args.provider_directory) if args.provider_directory else ProviderDirectory()
    providers = ProviderLookup(directory, args.default_npi, args.default_department)
    return IngestOptions(
        providers=providers,
        claim_level_procedure_code=args.claim_level_code,
        claim_id_from=getattr(args, "claim_id_from", "clp01"),
        encounter_id_from=getattr(args, "encounter_id_from", "clp01"),
        x12_source=args.source,
        fhir_source=args.source,
    )


def _run(args: argparse.Namespace, read: Reader) -> int:
    try:
        options = _options(args)
    except DirectoryError as error:
        print(f"docloop ingest: {error}", file=sys.stderr)
        return 2
    outcome = Outcome()
    for name in args.files:
        outcome.merge(read(Path(name), options, name))
    for problem in outcome.problems:
        print(f"error: {problem}", file=sys.stderr)

    failed = bool(outcome.problems)
    out = args.out if args.out is not None else (None if args.publish else "-")
    if out == "-":
        _write_jsonl(outcome, sys.stdout)
    elif out is not None:
        try:
            with open(out, "w", encoding="utf-8") as handle:
                _write_jsonl(outcome, handle)
        except OSError as error:
            print(f"docloop ingest: cannot write {out} ({error.strerror})", file=sys.stderr)
            failed = True
    if args.publish and outcome.events:
        failed = not _publish(outcome) or failed

    print(
        f"ingest: {len(outcome.events)} event(s) from {len(args.files)} file(s); "
        f"{outcome.skipped} part(s) with nothing to report; {len(outcome.problems)} problem(s)",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _write_jsonl(outcome: Outcome, handle: TextIO) -> None:
    for event in outcome.events:
        handle.write(event.model_dump_json() + "\n")
    handle.flush()


def _publish(outcome: Outcome) -> bool:
    from engine.ingest.publish import KafkaTarget, publish
    from engine.kafka_security import KafkaSecurityError

    try:
        target = KafkaTarget.from_settings()
    except KafkaSecurityError as error:
        print(f"docloop ingest: kafka security settings: {error}", file=sys.stderr)
        return False
    try:
        sent = asyncio.run(publish(outcome.events, target))
    except Exception as error:  # aiokafka raises several kinds; none of their texts carries event values
        print(
            f"docloop ingest: publishing to Kafka at {target.bootstrap} failed ({type(error).__name__})",
            file=sys.stderr,
        )
        return False
    print(f"ingest: published {sent} event(s) to Kafka at {target.bootstrap}", file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="docloop")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
