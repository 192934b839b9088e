"""Message composition: the same pattern told three ways.

Clinicians hear about the documentation gap in clinical words (no money, no advice on codes); billing
staff hear codes and dollars; leadership hears trend, money and ownership. Escalations go to the lead of the
team that owns the root cause (routing.json), so a clinical department lead hears only about documentation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from importlib import resources
from typing import Literal

from engine.domain import ids
from engine.domain.model import Pattern
from engine.domain.routing_config import RoutingConfig
from schemas import (
    DigestPattern,
    EscalationFacts,
    EscalationRaised,
    EscalationTarget,
    Evidence,
    FeedbackDigest,
    FeedbackNotification,
    NoteRef,
    PatternSummary,
    Recipient,
    RootCause,
)
from schemas.outbound import (
    Audience,
    DigestAudience,
    DigestReason,
    EscalationReason,
    EscalationRole,
    NotificationKind,
)

EVIDENCE_LIMIT = 10
PROVIDERS_NAMED = 5  # a systemic summary names this many providers, then counts the rest
COMMENT_LIMIT = 1000


@dataclass(frozen=True)
class Wording:
    label: str
    billing_guidance: str
    clinician_gap: str = ""
    clinician_guidance: str = ""
    clinician_alert_action: str = "If your care included more than the note shows, an addendum can document it."
    clinician_found: str = "came back from review because"  # how the cases were found
    billing_cases: str = "denied line"
    billing_amount: str = "at risk"


def _messages_data() -> dict[str, dict[str, object]]:
    text = resources.files("engine.domain").joinpath("data/messages.json").read_text("utf-8")
    data: dict[str, dict[str, object]] = json.loads(text)
    return data


def load_wording() -> dict[RootCause, Wording]:
    entries = _messages_data()["root_causes"]
    return {RootCause(name): Wording(**entry) for name, entry in entries.items()}  # type: ignore[arg-type]


def load_missing_elements() -> dict[str, str]:
    """Clinical words for each element a documentation check can find missing (checks.missing_elements)."""
    return {key: str(words) for key, words in _messages_data()["missing_elements"].items()}


def money(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@dataclass(frozen=True)
class Composer:
    wording: dict[RootCause, Wording]
    billing_team: str
    quiet_days: int
    routing: RoutingConfig = field(default_factory=RoutingConfig.load)
    missing_words: dict[str, str] = field(default_factory=load_missing_elements)

    def notification(
        self,
        kind: NotificationKind,
        audience: Audience,
        pattern: Pattern,
        now: datetime,
        about: str = "",
        comment: str | None = None,
        note: NoteRef | None = None,
    ) -> FeedbackNotification:
        """`about` distinguishes notifications of one kind within an episode (the note, for pre-bill alerts).
        `comment` is a person's words relayed to the other side of a dispute (never logged or kept in state)."""
        words = self.wording[pattern.root_cause]
        if audience == "clinician":
            recipient = Recipient(type="provider", id=pattern.provider_npi)
            title, body, guidance = self._for_clinician(kind, pattern, words)
            if note is not None:
                body = self._alert_for_clinician(pattern, note, words)
        else:
            # A dispute is reviewed by the team that owns the root cause (routing.json), not by billing.
            team = self.routing.team_of(pattern.root_cause).name if kind == "review_requested" else self.billing_team
            recipient = Recipient(type="team", id=team)
            title, body, guidance = self._for_billing(kind, pattern, words)
            if note is not None:
                body += f" Note {note.note_id}, encounter {note.encounter_id}, service date {note.service_date}."
        if comment:
            body += f" Comment: {comment.strip()[:COMMENT_LIMIT]}"
        evidence = sorted(pattern.evidence, key=lambda e: (e.service_date, e.claim_id), reverse=True)
        return FeedbackNotification(
            notification_id=ids.notification_id(pattern.pattern_id, kind, audience, about),
            kind=kind,
            audience=audience,
            recipient=recipient,
            pattern_id=pattern.pattern_id,
            pattern=PatternSummary(
                provider_npi=pattern.provider_npi,
                root_cause=pattern.root_cause,
                procedure_code=pattern.procedure_code,
                department=pattern.department,
                case_count=pattern.case_count,
                post_feedback_cases=pattern.post_feedback_cases,
                status=pattern.status.value,
                amount_at_risk=pattern.amount_at_risk if audience == "billing" else None,
                reason_codes=list(pattern.reason_codes) if audience == "billing" else None,
            ),
            title=title,
            body=body,
            guidance=guidance,
            evidence=[
                Evidence(
                    claim_id=e.claim_id,
                    encounter_id=e.encounter_id,
                    service_date=e.service_date,
                    payer_id=e.payer_id or None,
                )
                for e in evidence[:EVIDENCE_LIMIT]
            ],
            note=note,
            created_at=now,
        )

    def _for_clinician(self, kind: NotificationKind, p: Pattern, words: Wording) -> tuple[str, str, str]:
        code, gap = p.procedure_code, words.clinician_gap
        feedback = p.feedback_date.isoformat() if p.feedback_date else ""
        if kind == "pattern_opened":
            title = f"Documentation feedback: {words.label} ({code})"
            body = (
                f"{_plural(p.case_count, 'recent visit')} for {code} {words.clinician_found} {gap}. "
                "This has happened more than once, so we are sharing it as a pattern rather than a single case."
            )
        elif kind == "pattern_recurring":
            title = f"Still seen after feedback: {words.label} ({code})"
            body = (
                f"Since the feedback on {feedback}, a visit for {code} {words.clinician_found} {gap}. "
                f"Visits after the feedback with this gap: {p.post_feedback_cases}."
            )
        elif kind == "reminder":
            title = f"Reminder: documentation feedback awaiting your acknowledgement ({code})"
            body = (
                f"On {feedback} we shared that visits for {code} {words.clinician_found} {gap}. "
                "Please acknowledge it, or tell us if something in it looks wrong."
            )
        elif kind == "pre_bill_alert":
            title = f"Before this visit is submitted: {words.label} ({code})"
            body = (
                f"A note you just signed for {code} may not yet show what earlier visits were missing: {gap}. "
                "If your care included more than the note shows, an addendum can document it."
            )
        elif kind == "feedback_upheld":
            title = f"Feedback reviewed and upheld: {words.label} ({code})"
            body = (
                f"You questioned the feedback of {feedback} on visits for {code}. The review found that {gap}, "
                "so the feedback stands."
            )
        elif kind == "feedback_withdrawn":
            title = f"Feedback withdrawn: {words.label} ({code})"
            body = (
                f"You questioned the feedback of {feedback} on visits for {code}. The review agreed with you: the "
                "feedback is withdrawn and nothing needs to change. Thank you for raising it."
            )
        else:
            # Only said on evidence: visits after the feedback, old enough to have come back, and none did.
            title = f"Resolved: {words.label} ({code})"
            body = (
                f"Visits for {code} since the feedback on {feedback} have been seen and none has come back for "
                f"this reason in {self.quiet_days} days. Thank you: the change in documentation is working."
            )
        return title, body, words.clinician_guidance

    def _alert_for_clinician(self, p: Pattern, note: NoteRef, words: Wording) -> str:
        """A pre-bill alert names the note just signed and what its check found missing, in clinical words."""
        missing = "; ".join(self.missing_words.get(key, key) for key in note.missing)
        return (
            f"In the note {note.note_id} you signed for the visit on {note.service_date.isoformat()} "
            f"(encounter {note.encounter_id}, {p.procedure_code}): {missing}. Earlier visits "
            f"{words.clinician_found} {words.clinician_gap}. {words.clinician_alert_action} "
            'If the note is complete as it is, answer "no change needed".'
        )

    def _for_billing(self, kind: NotificationKind, p: Pattern, words: Wording) -> tuple[str, str, str]:
        codes = ", ".join(p.reason_codes)
        who = f"NPI {p.provider_npi} ({p.department})"
        at_risk = money(p.amount_at_risk)
        headline = {
            "pattern_opened": "Pattern opened",
            "pattern_recurring": "Recurring after feedback",
            "reminder": "Feedback unacknowledged",
            "pre_bill_alert": "Pre-bill alert",
            "pattern_resolved": "Pattern resolved",
            "pattern_dormant": "Pattern dormant",
            "review_requested": "Feedback disputed, review requested",
            "feedback_upheld": "Dispute reviewed: feedback upheld",
            "feedback_withdrawn": "Dispute reviewed: feedback withdrawn",
        }[kind]
        title = f"{headline}: {p.root_cause.value} on CPT {p.procedure_code}, {who}"
        body = (
            f"{_plural(p.case_count, words.billing_cases)} for CPT {p.procedure_code} ({codes}); "
            f"{at_risk} {words.billing_amount}; {p.post_feedback_cases} after feedback."
        )
        if kind == "pre_bill_alert":
            body += " A newly signed note for this code fails the documentation check: review before submission."
        elif kind == "pattern_resolved":
            body += f" No new denials for {self.quiet_days} days since feedback."
        elif kind == "review_requested":
            team = self.routing.team_of(p.root_cause).label
            body += (
                f" The clinician disputed the feedback. For review by the owner, {team}: answer with "
                "feedback.reviewed (upheld or withdrawn). Reminders and the unacknowledged escalation wait for it."
            )
        elif kind == "feedback_upheld":
            body += " The review upheld the feedback; the loop resumes and the clinician was told why."
        elif kind == "feedback_withdrawn":
            body += " The review withdrew the feedback: the pattern is closed and left out of every figure."
        elif kind == "pattern_dormant":
            body += (
                f" No visits to judge by: no new denials for {self.quiet_days} days, but too few visits for "
                f"CPT {p.procedure_code} since feedback to tell whether it worked. Not counted as resolved; "
                "a new denial continues this pattern."
            )
        elif kind == "reminder" and self.routing.team_of(p.root_cause).clinician_facing:
            body += " The clinician has not acknowledged the feedback yet."
        elif kind == "reminder":
            # No clinician was told about an administrative root cause: the reminder is billing's own.
            owner = self.routing.team_of(p.root_cause).label
            body += f" Nobody has acknowledged this pattern yet; the fix lies with {owner}."
        return title, body, words.billing_guidance

    def escalation(
        self,
        level: Literal[1, 2],
        reason: EscalationReason,
        patterns: list[Pattern],
        department: str,
        root_cause: RootCause,
        now: datetime,
    ) -> EscalationRaised:
        """One escalation for one pattern, or (systemic) for the open patterns of a department and root cause."""
        single = patterns[0] if reason != "systemic" else None
        subject = single.pattern_id if single else f"systemic|{department}|{root_cause.value}"
        amount = sum((p.amount_at_risk for p in patterns), Decimal("0.00"))
        providers = sorted({p.provider_npi for p in patterns})
        cases = sum(p.case_count for p in patterns)
        after = sum(p.post_feedback_cases for p in patterns)
        opened = single.opened_at if single else None
        days = (now - opened).days if opened else None
        label = self.wording[root_cause].label
        team = self.routing.team_of(root_cause)
        role: EscalationRole = team.level_1 if level == 1 else team.level_2  # type: ignore[assignment]
        told = "the clinician" if team.clinician_facing else "billing"
        if reason == "recurrence_after_feedback":
            trend = f"{label} keeps recurring after feedback to {told}: {after} visits after feedback"
        elif reason == "unacknowledged":
            trend = f"feedback to {told} on {label} unacknowledged for {days} days"
        elif reason == "dispute_unanswered":
            since = single.disputed_at if single else None
            waited = (now - since).days if since else days
            trend = f"a clinician's dispute of feedback on {label} has waited {waited} days for its review"
        elif reason == "amount_at_risk":
            trend = f"{label} has reached {money(amount)} at risk"
        else:
            trend = f"{label} is open for {len(providers)} providers at once: a process gap, not one person's"
        names = {p.provider_npi: p.provider_name for p in patterns if p.provider_name}
        summary = (
            f"{department}: {trend}. {_plural(cases, 'case')}, {money(amount)} at risk. "
            f"{_providers(providers, names)}. Owner: {team.label}; escalated to the {self.routing.role_label(role)}. "
            f"{team.ask}"
        )
        return EscalationRaised(
            escalation_id=ids.escalation_id(subject, level, reason),
            level=level,
            reason=reason,
            target=EscalationTarget(role=role, team=team.name, department=department),
            pattern_id=single.pattern_id if single else None,
            department=department,
            root_cause=root_cause,
            procedure_code=single.procedure_code if single else None,
            facts=EscalationFacts(
                case_count=cases,
                post_feedback_cases=after,
                amount_at_risk=amount,
                providers=providers,
                provider_names=dict(sorted(names.items())),
                payer_ids=sorted({e.payer_id for p in patterns for e in p.evidence if e.payer_id}),
                open_patterns=len(patterns),
                days_since_feedback=days,
            ),
            summary=summary,
            created_at=now,
        )


def _providers(npis: list[str], names: dict[str, str]) -> str:
    named = [f"{names[n]} (NPI {n})" if n in names else f"NPI {n}" for n in npis[:PROVIDERS_NAMED]]
    more = len(npis) - PROVIDERS_NAMED
    listed = ", ".join(named) + (f" and {more} more" if more > 0 else "")
    return f"{'Provider' if len(npis) == 1 else 'Providers'}: {listed}"


def digest(
    route: str,
    audience: DigestAudience,
    recipient: Recipient,
    reason: DigestReason,
    items: list[FeedbackNotification | EscalationRaised],
    window_start: datetime,
    window_end: datetime,
) -> FeedbackDigest:
    """What was due for one recipient in one group window, one entry per pattern, in the order first routed.

    Each entry keeps the words the per-fact messages already chose for this audience (clinician entries carry
    no money because clinician notifications carry none)."""
    entries: dict[str, DigestPattern] = {}
    for item in items:
        if isinstance(item, FeedbackNotification):
            key, headline, message_id = item.pattern_id, item.title, item.notification_id
            found = entries.get(key)
            entries[key] = DigestPattern(
                pattern_id=item.pattern_id,
                department=item.pattern.department,
                root_cause=item.pattern.root_cause,
                pattern=item.pattern,  # the latest summary: counts as of the newest fact in the window
                headlines=[*(found.headlines if found else []), headline],
                evidence=item.evidence,
                message_ids=[*(found.message_ids if found else []), message_id],
            )
        else:
            key = item.pattern_id or f"systemic|{item.department}|{item.root_cause.value}"
            found = entries.get(key)
            entries[key] = DigestPattern(
                pattern_id=item.pattern_id,
                department=item.department,
                root_cause=item.root_cause,
                headlines=[*(found.headlines if found else []), f"Level {item.level}: {item.summary}"],
                evidence=[],
                message_ids=[*(found.message_ids if found else []), item.escalation_id],
            )
    patterns = list(entries.values())
    covers = [item.notification_id if isinstance(item, FeedbackNotification) else item.escalation_id for item in items]
    count = _plural(len(patterns), "pattern")
    if audience == "clinician":
        title = f"Your documentation feedback: {count}"
        opening = "Feedback gathered since the last summary, one line per documentation pattern:"
    elif audience == "billing":
        title = f"Denial patterns digest: {count}, {_plural(len(covers), 'update')}"
        opening = "Pattern updates since the last digest (details and codes per pattern below):"
    else:
        title = f"Escalations: {count}"
        opening = "Escalations raised since the last digest:"
    if reason == "resolved":
        title += " (good news: resolved)"
    lines = [f"- {'; '.join(entry.headlines)}" for entry in patterns]
    return FeedbackDigest(
        digest_id=ids.digest_id(f"{recipient.type}:{recipient.id}", route, window_start, window_end),
        audience=audience,
        recipient=recipient,
        route=route,
        reason=reason,
        window_start=window_start,
        window_end=window_end,
        title=title,
        body="\n".join([opening, *lines]),
        patterns=patterns,
        covers=covers,
        created_at=window_end,
    )
