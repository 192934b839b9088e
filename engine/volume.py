"""Volume as a measured figure: how many messages each recipient receives, per day and per week.

Pure functions over routed messages (per-fact messages with their `delivery`, and digests). A person
receives what is `send`: per-fact messages sent on their own and digests. Per-fact messages listed in a
digest are counted as grouped; held ones as inhibited, silenced or rate limited.

`python -m engine.volume DIR` reads a replay's DIR/notifications.jsonl and DIR/escalations.jsonl (routed by the
replay's routing stage) and prints the volume and the issue's targets.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from engine.domain.routing import Routed, Router
from engine.domain.routing_config import RoutingConfig
from schemas import EscalationRaised, FeedbackDigest, FeedbackNotification

AUDIENCES = ("clinician", "billing", "leadership")
OUTCOMES = {"digest": "grouped", "silence": "silenced", "inhibited": "inhibited", "rate_limited": "rate_limited"}


@dataclass(frozen=True)
class Spread:
    """Nearest-rank percentiles over the active buckets (a recipient's day or week with at least one message)."""

    buckets: int
    p50: int
    p90: int
    max: int

    @classmethod
    def of(cls, counts: Sequence[int]) -> Spread:
        ordered = sorted(counts)
        if not ordered:
            return cls(0, 0, 0, 0)

        def rank(q: float) -> int:
            return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

        return cls(len(ordered), rank(0.5), rank(0.9), ordered[-1])


@dataclass(frozen=True)
class AudienceVolume:
    audience: str
    recipients: int
    received: int  # messages a person received: per-fact `send` plus digests
    digests: int
    per_day: Spread
    per_week: Spread
    grouped: int  # per-fact messages listed in a digest
    inhibited: int
    silenced: int
    rate_limited: int
    busiest: str | None = None  # the recipient with the most messages on one day


@dataclass(frozen=True)
class Volume:
    audiences: list[AudienceVolume] = field(default_factory=list)

    def of(self, audience: str) -> AudienceVolume:
        return next(a for a in self.audiences if a.audience == audience)


def _audience(message: Routed) -> str:
    if isinstance(message, EscalationRaised):
        return "leadership"
    return message.audience


Count = tuple[str, str, date, str]  # (audience, recipient, day, outcome): received, digests, grouped, inhibited...


def counts(routed: Iterable[Routed], config: RoutingConfig | None = None) -> Counter[Count]:
    """What each recipient got on each day: `received` (sent on its own, or a digest), `digests` (of those,
    how many were digests), and per-fact messages that were grouped, inhibited, silenced or rate limited."""
    router = Router(config)
    found: Counter[Count] = Counter()
    for message in routed:
        audience = _audience(message)
        day = message.created_at.date()
        if isinstance(message, FeedbackDigest):
            recipient = f"{message.recipient.type}:{message.recipient.id}"
            found[(audience, recipient, day, "digests")] += 1
        else:
            recipient = router.labels(message)["recipient"][0]
            if message.delivery != "send":
                why = (message.delivery_reason or "").split(":", 1)[0]
                found[(audience, recipient, day, OUTCOMES.get(why, why))] += 1
                continue
        found[(audience, recipient, day, "received")] += 1
    return found


def volume(routed: Iterable[Routed], config: RoutingConfig | None = None) -> Volume:
    return summarize(counts(routed, config))


def summarize(found: Counter[Count]) -> Volume:
    per_day: dict[str, Counter[tuple[str, date]]] = defaultdict(Counter)
    per_week: dict[str, Counter[tuple[str, tuple[int, int]]]] = defaultdict(Counter)
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    for (audience, recipient, day, outcome), count in found.items():
        if outcome != "received":
            outcomes[audience][outcome] += count
            continue
        per_day[audience][(recipient, day)] += count
        iso = day.isocalendar()
        per_week[audience][(recipient, (iso.year, iso.week))] += count
    result = []
    for audience in AUDIENCES:
        days, weeks, counted = per_day[audience], per_week[audience], outcomes[audience]
        busiest = max(days.items(), key=lambda item: (item[1], item[0]), default=None)
        result.append(
            AudienceVolume(
                audience=audience,
                recipients=len({recipient for recipient, _ in days}),
                received=sum(days.values()),
                digests=counted["digests"],
                per_day=Spread.of(list(days.values())),
                per_week=Spread.of(list(weeks.values())),
                grouped=counted["grouped"],
                inhibited=counted["inhibited"],
                silenced=counted["silenced"],
                rate_limited=counted["rate_limited"],
                busiest=f"{busiest[0][0]} on {busiest[0][1]}" if busiest else None,
            )
        )
    return Volume(result)


def render_text(v: Volume) -> str:
    lines = [
        "messages per recipient (received = sent on their own + digests; active days/weeks only)",
        f"{'audience':<11}{'recipients':>11}{'received':>10}{'digests':>9}  {'per day p50/p90/max':<21}"
        f"{'per week p50/p90/max':<22}{'grouped':>8}{'inhibited':>10}{'silenced':>9}{'rate-limited':>13}",
    ]
    for a in v.audiences:
        day, week = a.per_day, a.per_week
        lines.append(
            f"{a.audience:<11}{a.recipients:>11}{a.received:>10}{a.digests:>9}  "
            f"{f'{day.p50}/{day.p90}/{day.max}':<21}{f'{week.p50}/{week.p90}/{week.max}':<22}"
            f"{a.grouped:>8}{a.inhibited:>10}{a.silenced:>9}{a.rate_limited:>13}"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Targets:
    """Issue #11's targets, measured on routed messages."""

    administrative_to_department_leads: int  # target 0
    clinician_told_claims_without_clinician: int  # target 0
    clinician_max_per_day: int  # target <= 2
    clinician_median_per_active_week: int  # target <= 3
    provider_escalations_sent_while_systemic_open: int  # target 0

    def met(self) -> bool:
        return (
            self.administrative_to_department_leads == 0
            and self.clinician_told_claims_without_clinician == 0
            and self.clinician_max_per_day <= 2
            and self.clinician_median_per_active_week <= 3
            and self.provider_escalations_sent_while_systemic_open == 0
        )


def targets(routed: Sequence[Routed], config: RoutingConfig | None = None) -> Targets:
    """Measured from the messages themselves, not from the router's own bookkeeping."""
    config = config or RoutingConfig.load()
    escalations = [m for m in routed if isinstance(m, EscalationRaised)]
    clinical = {cause for cause, owner in config.owner.items() if config.teams[owner].clinician_facing}
    administrative = sum(1 for e in escalations if e.target.role == "department_lead" and e.root_cause not in clinical)
    false_claims = sum(
        1
        for m in routed
        if isinstance(m, FeedbackNotification)
        and m.pattern.root_cause not in clinical
        and "clinician" in m.body.lower()
    ) + sum(1 for e in escalations if e.root_cause not in clinical and "clinician" in e.summary.lower())
    systemic_since: dict[tuple[str, str], datetime] = {}
    for e in sorted(escalations, key=lambda e: (e.created_at, e.escalation_id)):
        if e.reason == "systemic":
            systemic_since.setdefault((e.department, e.root_cause.value), e.created_at)
    leaked = 0
    for e in escalations:
        opened = systemic_since.get((e.department, e.root_cause.value))
        if e.pattern_id is not None and e.delivery != "held" and opened is not None and e.created_at >= opened:
            leaked += 1
    clinician = volume(routed, config).of("clinician")
    return Targets(
        administrative_to_department_leads=administrative,
        clinician_told_claims_without_clinician=false_claims,
        clinician_max_per_day=clinician.per_day.max,
        clinician_median_per_active_week=clinician.per_week.p50,
        provider_escalations_sent_while_systemic_open=leaked,
    )


def load_routed(directory: Path) -> list[Routed]:
    """A replay's output as published: per-fact messages with their delivery, and the digests."""
    found: list[Routed] = []
    for line in (directory / "notifications.jsonl").read_text("utf-8").splitlines():
        document = json.loads(line)
        if document.get("kind") == "digest":
            found.append(FeedbackDigest.model_validate(document))
        else:
            found.append(FeedbackNotification.model_validate(document))
    for line in (directory / "escalations.jsonl").read_text("utf-8").splitlines():
        found.append(EscalationRaised.model_validate_json(line))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m engine.volume REPLAY_DIR", file=sys.stderr)
        return 2
    routed = load_routed(Path(args[0]))  # as replay routed it (engine/store/routing.py)
    sys.stdout.write(render_text(volume(routed)))
    measured = targets(routed)
    print(json.dumps(measured.__dict__, indent=2), f"\ntargets met: {measured.met()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
