"""The `simulate` subcommand: write a seeded event stream as JSON lines and summarize it on stderr."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from engine.errors import ExampleHelpFormatter, examples, writable_file
from engine.simulate.catalog import DOCUMENTATION_ROOT_CAUSES, PATTERN_THRESHOLD, PATTERN_WINDOW_DAYS
from engine.simulate.world import Simulation, SimulationConfig, simulate

# The engine sends events more than this far ahead of wall time to the DLQ (DESIGN.md, max_clock_skew_minutes).
ENGINE_CLOCK_SKEW = timedelta(minutes=60)

DESCRIPTION = """\
Generate a synthetic event stream of a hospital's revenue cycle: note.signed events for every visit,
claim.denied events that follow from documentation gaps (and from administrative problems, the larger
share), and feedback.acknowledged events from a simulated notification service. Providers have
documentation habits; "learners" fix theirs after feedback, "persistent" providers do not.
The same options always give the same file, byte for byte. See docs/simulator.md."""


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must lie between 0 and 1")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or positive")
    return value


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a date like 2026-01-05") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SimulationConfig()
    parser.add_argument(
        "--out",
        required=True,
        default=argparse.SUPPRESS,
        help="file to write, one JSON event per line ('-' for stdout)",
    )
    parser.add_argument("--seed", type=_non_negative_int, default=d.seed, help="random seed; same seed, same file")
    parser.add_argument("--providers", type=_positive_int, default=d.providers, help="providers in the group")
    parser.add_argument("--days", type=_positive_int, default=d.days, help="days of visits to simulate")
    parser.add_argument("--start", type=_iso_date, default=d.start, help="first day of visits (YYYY-MM-DD)")
    parser.add_argument(
        "--visits-per-day",
        type=float,
        default=d.visits_per_day,
        help="mean visits per provider per working day (clinic weekday or ED shift)",
    )
    parser.add_argument("--denial-rate", type=_fraction, default=d.denial_rate, help="share of claims initially denied")
    parser.add_argument(
        "--documentation-share",
        type=_fraction,
        default=d.documentation_share,
        help="share of denied claims denied for documentation (the clinician root causes); the rest are administrative",
    )
    parser.add_argument(
        "--habit-share",
        type=_fraction,
        default=d.habit_share,
        help="share of providers with one or two documentation habits",
    )
    parser.add_argument(
        "--learner-share",
        type=_fraction,
        default=d.learner_share,
        help="share of providers with habits who document better after feedback (the rest are persistent)",
    )
    parser.add_argument(
        "--learned-gap-factor",
        type=_fraction,
        default=d.learned_gap_factor,
        help="a learner's gap rate after feedback as a share of before (1.0: nobody learns, same roster)",
    )
    parser.add_argument(
        "--ack-rate",
        type=_fraction,
        default=d.ack_rate,
        help="chance that a learner acknowledges feedback on an opened pattern",
    )
    parser.add_argument(
        "--persistent-ack-rate",
        type=_fraction,
        default=d.persistent_ack_rate,
        help="chance that a persistent provider acknowledges feedback",
    )
    parser.add_argument(
        "--billing-ack-rate",
        type=_fraction,
        default=d.billing_ack_rate,
        help="chance that the billing team acknowledges an administrative (billing-only) pattern",
    )
    parser.add_argument(
        "--redenial-rate",
        type=_fraction,
        default=d.redenial_rate,
        help="share of denied claims whose corrected resubmission is denied again",
    )


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `simulate` on the docloop command line."""
    parser = subparsers.add_parser(
        "simulate",
        help="generate a seeded synthetic event stream",
        description=DESCRIPTION,
        epilog=examples(
            "docloop simulate --out events.jsonl",
            "docloop simulate --seed 3 --providers 200 --days 180 --out big.jsonl",
        ),
        formatter_class=ExampleHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    return SimulationConfig(
        seed=args.seed,
        providers=args.providers,
        days=args.days,
        start=args.start,
        visits_per_day=args.visits_per_day,
        denial_rate=args.denial_rate,
        documentation_share=args.documentation_share,
        habit_share=args.habit_share,
        learner_share=args.learner_share,
        learned_gap_factor=args.learned_gap_factor,
        ack_rate=args.ack_rate,
        persistent_ack_rate=args.persistent_ack_rate,
        billing_ack_rate=args.billing_ack_rate,
        redenial_rate=args.redenial_rate,
    )


def write_events(events: Iterable[dict[str, Any]], stream: TextIO) -> None:
    for event in events:
        stream.write(json.dumps(event, separators=(",", ":")))
        stream.write("\n")


def run(args: argparse.Namespace, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> int:
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"docloop simulate: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    simulation = simulate(config)
    if args.out == "-":
        write_events(simulation.events, sys.stdout)
    else:
        with writable_file(Path(args.out), "--out").open("w", encoding="utf-8", newline="\n") as stream:
            write_events(simulation.events, stream)
    print(summarize(simulation, time.perf_counter() - started), file=sys.stderr)
    # The wall clock only decides whether to warn; it never shapes the events.
    if simulation.events:
        last = datetime.fromisoformat(simulation.events[-1]["occurred_at"])
        if last > clock() + ENGINE_CLOCK_SKEW:
            print(
                f"warning: the last event is dated {last:%Y-%m-%d}, in the future; the engine sends events more "
                "than 60 minutes ahead of its wall clock to the DLQ. Choose an earlier --start.",
                file=sys.stderr,
            )
    return 0


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def summarize(simulation: Simulation, seconds: float | None = None) -> str:
    config = simulation.config
    tally = simulation.tally
    events = simulation.events
    by_type: dict[str, int] = {}
    for event in events:
        by_type[event["event_type"]] = by_type.get(event["event_type"], 0) + 1
    denied = sum(tally.denied_claims.values())
    documentation = tally.denied_claims["documentation"]
    denied_lines = sum(tally.denied_lines.values())
    lines = [
        f"docloop simulate: seed {config.seed}, {config.providers} providers, {config.days} days from "
        f"{config.start.isoformat()}" + (f", {seconds:.1f}s" if seconds is not None else ""),
        f"events: {len(events)} (" + ", ".join(f"{name} {count}" for name, count in sorted(by_type.items())) + ")",
    ]
    if events:
        lines.append(f"time span: {events[0]['occurred_at']} .. {events[-1]['occurred_at']}")
    lines += [
        f"claims: {tally.claims}; initially denied {denied} ({_share(denied, tally.claims)}); "
        f"resubmissions denied again {tally.redenials}",
        f"denied claims: documentation {_share(documentation, denied)}, "
        f"administrative {_share(tally.denied_claims['administrative'], denied)}",
        "denied lines by root cause: "
        + ", ".join(
            f"{root_cause.value} {_share(count, denied_lines)}"
            for root_cause, count in sorted(tally.denied_lines.items(), key=lambda item: (-item[1], item[0].value))
        ),
    ]
    learners = sum(1 for provider in simulation.providers if provider.habits and provider.learner)
    persistent = sum(1 for provider in simulation.providers if provider.habits and not provider.learner)
    clinician = [pattern for pattern in simulation.patterns if pattern.root_cause in DOCUMENTATION_ROOT_CAUSES]
    billing_only = [pattern for pattern in simulation.patterns if pattern.root_cause not in DOCUMENTATION_ROOT_CAUSES]
    per_cause = Counter(pattern.root_cause.value for pattern in clinician)
    lines += [
        f"providers with habits: {learners} learners, {persistent} persistent (of {len(simulation.providers)})",
        f"patterns reaching {PATTERN_THRESHOLD} cases within {PATTERN_WINDOW_DAYS} days: "
        f"clinician {len(clinician)} ("
        + ", ".join(f"{name} {count}" for name, count in sorted(per_cause.items()))
        + f"), acknowledged {sum(pattern.acknowledged for pattern in clinician)}; "
        f"billing-only {len(billing_only)}, acknowledged {sum(pattern.acknowledged for pattern in billing_only)}",
        f"payer detection scale (calibrated): {simulation.detection_scale:.3f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.simulate",
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
