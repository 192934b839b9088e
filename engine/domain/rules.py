"""The feedback loop's rules: cases gather into patterns, patterns notify, escalate and resolve.

Everything here is pure: events and the clock come in, messages come out, `State` holds what is known.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal

from engine.domain import ids
from engine.domain.checks import NoteFacts, has_check, missing_elements, unbilled_estimate, undercoded_levels
from engine.domain.codebook import CodeBook, Finding
from engine.domain.messages import Composer, load_wording
from engine.domain.model import (
    Case,
    DepartmentFact,
    EvidenceRef,
    ExposureNote,
    Note,
    Pattern,
    PatternKey,
    PatternStatus,
)
from engine.domain.routing_config import RoutingConfig
from engine.domain.state import State
from schemas import (
    ClaimDenied,
    EscalationRaised,
    FeedbackAcknowledged,
    FeedbackNotification,
    FeedbackReviewed,
    InboundEvent,
    NoteRef,
    NoteSigned,
    RootCause,
)
from schemas.outbound import Audience, EscalationReason, NotificationKind

Message = FeedbackNotification | EscalationRaised
EVIDENCE_KEPT = 10
# A pattern's total saturates here: it is what outbound totals (18 digits) and the store's cents hold, so a
# value the engine accepted can never make a later message unbuildable.
MAX_TOTAL = Decimal("9999999999999999.99")
# Exposure notes kept per pattern: enough that some becoming cases still leaves the threshold within reach;
# when entries drop out (they became cases), later visits refill the list.
EXPOSURE_KEPT_PER_NEEDED = 4
EXPOSURE_KEPT_MIN = 12


@dataclass(frozen=True)
class Thresholds:
    """The tunable numbers of DESIGN.md; `engine.settings` fills them from DOCLOOP_ variables."""

    pattern_threshold: int = 3
    window_days: int = 60
    escalate_recurrence_l1: int = 2
    escalate_recurrence_l2: int = 4
    remind_after_days: int = 7
    escalate_unacked_days: int = 14
    escalate_amount: Decimal = Decimal("10000.00")
    systemic_providers: int = 3
    resolve_quiet_days: int = 60
    resolve_compliant_notes: int = 3
    resolve_exposure: int = 3
    denial_lag_days: int = 45
    billing_team: str = "billing"


@dataclass(frozen=True)
class Outcome:
    """What applying one event did: `result` is applied, duplicate or ignored (valid but about nothing we track)."""

    result: Literal["applied", "duplicate", "ignored"]
    messages: list[Message]


def as_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def start_of(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


class Engine:
    def __init__(
        self,
        thresholds: Thresholds | None = None,
        codebook: CodeBook | None = None,
        hash_patient: Callable[[str | None], str | None] = lambda _: None,
    ) -> None:
        self.t = thresholds or Thresholds()
        self.codebook = codebook or CodeBook.load()
        routing = RoutingConfig.load(codebook=self.codebook)
        self.compose = Composer(load_wording(), self.t.billing_team, self.t.resolve_quiet_days, routing)
        self.hash_patient = hash_patient

    # ---- entry points -------------------------------------------------------------------------------

    def process(self, event: InboundEvent, state: State) -> Outcome:
        """Apply one event: fire the timers due by its time, then the event itself."""
        if state.has_event(event.event_id):
            return Outcome("duplicate", [])
        state.record_event(event.event_id, event.event_type)
        messages = self.advance(as_utc(event.occurred_at), state)
        now = state.clock
        assert now is not None
        if isinstance(event, ClaimDenied):
            applied = self._on_claim(event, state, now, messages)
        elif isinstance(event, NoteSigned):
            applied = self._on_note(event, state, now, messages)
        elif isinstance(event, FeedbackAcknowledged):
            applied = self._on_acknowledgement(event, state, now, messages)
        else:
            applied = self._on_review(event, state, now, messages)
        return Outcome("applied" if applied else "ignored", messages)

    def advance(self, to: datetime, state: State) -> list[Message]:
        """Move the event-time clock forward (never back) and fire every timer due by then, in due order."""
        target = to if state.clock is None or to > state.clock else state.clock
        messages: list[Message] = []
        while (pattern := state.next_due(target)) is not None:
            assert pattern.next_due_at is not None
            fired: list[Message] = []
            try:
                self._fire_timers(pattern, pattern.next_due_at, state, fired)
            except Exception as error:
                # A timer runs inside whichever event moves the clock, so its fault must stay with its own
                # pattern: the pattern is quarantined (no more timers, said in a log line and a metric) and
                # the event, and every later one, goes on.
                self._quarantine(pattern, error, state)
                continue
            messages.extend(fired)
        state.clock = target
        return messages

    def _quarantine(self, pattern: Pattern, error: Exception, state: State) -> None:
        pattern.quarantine = f"{type(error).__name__} in a timer"
        pattern.next_due_at = None
        state.save_pattern(pattern)
        state.quarantined.append((pattern.pattern_id, pattern.quarantine))

    # ---- claims -------------------------------------------------------------------------------------

    def _on_claim(self, event: ClaimDenied, state: State, now: datetime, out: list[Message]) -> bool:
        applied = False
        for line in event.lines:
            for finding in self.codebook.classify(line):
                applied = True
                case_id = ids.case_id(
                    event.claim_id, line.line_number, finding.root_cause.value, event.rendering_provider.npi
                )
                existing = state.case(case_id)
                if existing is not None:
                    self._denied_again(existing, finding, state, now, out)
                    continue
                case = Case(
                    case_id=case_id,
                    claim_id=event.claim_id,
                    line_number=line.line_number,
                    root_cause=finding.root_cause,
                    provider_npi=event.rendering_provider.npi,
                    department=event.rendering_provider.department,
                    procedure_code=line.procedure_code,
                    modifiers=list(line.modifiers),
                    encounter_id=event.encounter_id,
                    service_date=event.service_date,
                    amount=finding.amount,
                    reason_codes=list(finding.reason_codes),
                    payer_id=event.payer.id,
                    pattern_id="",
                    post_feedback=False,
                    first_denied_at=now,
                    last_denied_at=now,
                    patient_hash=self.hash_patient(event.patient_ref),
                )
                latest = state.latest_note(event.encounter_id)
                case.note_id = latest.note_id if latest else None
                self._add_case(case, state, now, out, event.rendering_provider.name)
        return applied

    def _denied_again(self, case: Case, finding: Finding, state: State, now: datetime, out: list[Message]) -> None:
        """A resubmission denied again: the same case, with the latest amount; not a new occurrence."""
        pattern = state.pattern(case.pattern_id)
        assert pattern is not None
        delta = finding.amount - case.amount
        case.amount = finding.amount
        case.reason_codes = _merged(case.reason_codes, finding.reason_codes)
        case.denial_count += 1
        case.last_denied_at = now
        state.save_case(case)
        pattern.amount_at_risk = _bounded(pattern.amount_at_risk + delta)
        pattern.reason_codes = _merged(pattern.reason_codes, finding.reason_codes)
        state.save_pattern(pattern)
        if pattern.status is PatternStatus.OPEN:
            self._check_pattern_escalations(pattern, state, now, out)

    def _add_case(self, case: Case, state: State, now: datetime, out: list[Message], provider_name: str = "") -> None:
        pattern = state.current_pattern(case.key)
        if pattern is None or pattern.status in (PatternStatus.RESOLVED, PatternStatus.WITHDRAWN):
            pattern = self._new_episode(case, pattern)
            state.save_pattern(pattern)
        if provider_name:
            pattern.provider_name = provider_name  # escalation summaries name the provider
        case.pattern_id = pattern.pattern_id
        _drop_exposure(pattern, case.encounter_id)  # a visit that became a case is a recurrence, not exposure
        # Post-feedback is judged by the visit's date, not the denial's: a denial that arrives after feedback
        # for a visit that happened before it says nothing about whether the feedback worked.
        feedback_date = pattern.feedback_date
        case.post_feedback = feedback_date is not None and case.service_date > feedback_date
        state.save_case(case)

        pattern.case_count += 1
        pattern.amount_at_risk = _bounded(pattern.amount_at_risk + case.amount)
        pattern.reason_codes = _merged(pattern.reason_codes, case.reason_codes)
        pattern.evidence = _recent_evidence(pattern.evidence, case)
        if pattern.last_service_date is None or case.service_date > pattern.last_service_date:
            pattern.last_service_date = case.service_date
        pattern.billed_with_modifier_25 = pattern.billed_with_modifier_25 or "25" in case.modifiers

        if pattern.status is PatternStatus.DORMANT and case.post_feedback:
            # Dormant never meant fixed: the same episode goes on, and this case is a recurrence.
            pattern.status = PatternStatus.OPEN
            pattern.dormant_at = None
            state.record_fact(department_fact(pattern, opened=True, at=now))  # open again, for systemic
        if pattern.status is PatternStatus.PENDING:
            if self._reaches_threshold(pattern, case, state):
                self._open(pattern, state, now, out)
        else:
            if case.post_feedback:
                pattern.post_feedback_cases += 1
                if pattern.post_feedback_cases == 1:
                    self._notify("pattern_recurring", pattern, state, now, out)
            self._check_pattern_escalations(pattern, state, now, out)
        self._schedule(pattern)
        state.save_pattern(pattern)

    def _new_episode(self, case: Case, previous: Pattern | None) -> Pattern:
        episode = previous.episode + 1 if previous else 1
        return Pattern(
            pattern_id=ids.pattern_id(case.provider_npi, case.root_cause.value, case.procedure_code, episode),
            provider_npi=case.provider_npi,
            root_cause=case.root_cause,
            procedure_code=case.procedure_code,
            episode=episode,
            department=case.department,
        )

    def _reaches_threshold(self, pattern: Pattern, case: Case, state: State) -> bool:
        """Is there a run of `threshold` cases, including this one, whose service dates span at most the window?"""
        window = timedelta(days=self.t.window_days)
        nearby = state.cases_of_pattern(pattern.pattern_id, case.service_date - window, case.service_date + window)
        dates = sorted(c.service_date for c in nearby)
        need = self.t.pattern_threshold
        return any(
            dates[i] <= case.service_date <= dates[i + need - 1] and dates[i + need - 1] - dates[i] <= window
            for i in range(len(dates) - need + 1)
        )

    def _open(self, pattern: Pattern, state: State, now: datetime, out: list[Message]) -> None:
        pattern.status = PatternStatus.OPEN
        pattern.opened_at = now
        state.save_pattern(pattern)  # counted among the open patterns from now on (systemic check below)
        self._notify("pattern_opened", pattern, state, now, out)
        self._check_pattern_escalations(pattern, state, now, out)
        state.record_fact(department_fact(pattern, opened=True, at=now))

    # ---- notes --------------------------------------------------------------------------------------

    def _on_note(self, event: NoteSigned, state: State, now: datetime, out: list[Message]) -> bool:
        signed_at = as_utc(event.signed_at)
        note = state.note(event.note_id)
        if note is None:
            note = Note(
                note_id=event.note_id,
                encounter_id=event.encounter_id,
                provider_npi=event.author.npi,
                service_date=event.service_date,
                signed_at=signed_at,
                patient_hash=self.hash_patient(event.patient_ref),
                procedure_codes=list(event.documentation.procedure_codes),
            )
        elif signed_at > note.signed_at:
            note.signed_at = signed_at  # signed again (amended): the latest signature counts
        state.save_note(note)

        latest = state.latest_note(event.encounter_id)
        if latest is not None and latest.note_id == note.note_id:
            for case in state.cases_of_encounter(event.encounter_id):
                if case.found_in_note and case.provider_npi != event.author.npi:
                    continue  # found in another author's note (a co-signed visit): that note stays its evidence
                if case.note_id != note.note_id:
                    case.note_id = note.note_id
                    state.save_case(case)

        self._find_undercoding(event, note, state, now, out)
        facts = NoteFacts(event.service_date, signed_at, event.documentation)
        for pattern in state.open_patterns_of_provider(event.author.npi):
            if pattern.procedure_code not in event.documentation.procedure_codes:
                continue
            changed = self._count_exposure(pattern, event, state)
            if not has_check(pattern.root_cause):
                pass
            elif pattern.opened_at is None or signed_at <= pattern.opened_at:
                pass  # signed before the feedback: neither a chance to act on it nor evidence that it worked
            elif missing := missing_elements(
                pattern.root_cause, pattern.procedure_code, pattern.billed_with_modifier_25, facts
            ):
                if not note.pre_bill_alerted:
                    note.pre_bill_alerted = True
                    state.save_note(note)
                    ref = NoteRef(
                        note_id=note.note_id,
                        encounter_id=event.encounter_id,
                        service_date=event.service_date,
                        missing=missing,
                    )
                    self._notify("pre_bill_alert", pattern, state, now, out, about=note.note_id, note=ref)
            elif pattern.pattern_id not in note.compliant_for:
                note.compliant_for.append(pattern.pattern_id)
                state.save_note(note)
                pattern.compliant_notes += 1
                changed = True
            if changed:
                if self._may_resolve(pattern, now):
                    self._resolve(pattern, state, now, out)
                self._schedule(pattern)
                state.save_pattern(pattern)
        return True

    def _find_undercoding(self, event: NoteSigned, note: Note, state: State, now: datetime, out: list[Message]) -> None:
        """A note whose MDM or total time supports a higher E/M level than its code is a case: no denial needed."""
        cause = RootCause.EM_LEVEL_UNDERCODED
        for code, supported in undercoded_levels(event.documentation):
            case_id = ids.note_case_id(event.encounter_id, code, cause.value, event.author.npi)
            if state.case(case_id) is not None:
                continue  # the visit's addendum or a second signature by the same author: the same case
            case = Case(
                case_id=case_id,
                claim_id=note.note_id,  # found in a note: the note stands where a denied claim would
                line_number=0,
                root_cause=cause,
                provider_npi=event.author.npi,
                department=event.author.department,
                procedure_code=code,
                modifiers=[],
                encounter_id=event.encounter_id,
                service_date=event.service_date,
                amount=unbilled_estimate(code, supported),
                reason_codes=[f"supports-{supported}"],
                payer_id="",
                pattern_id="",
                post_feedback=False,
                first_denied_at=now,
                last_denied_at=now,
                note_id=note.note_id,
                patient_hash=note.patient_hash,
            )
            self._add_case(case, state, now, out)

    def _count_exposure(self, pattern: Pattern, event: NoteSigned, state: State) -> bool:
        """Keep a visit after feedback as exposure, unless it already became a case of this pattern's key."""
        feedback_date = pattern.feedback_date
        if not self._needs_exposure(pattern) or feedback_date is None or event.service_date <= feedback_date:
            return False
        if any(e.encounter_id == event.encounter_id for e in pattern.exposure):
            return False  # an addendum or a second note of the same visit is the same exposure
        if any(c.key == pattern.key for c in state.cases_of_encounter(event.encounter_id)):
            return False
        kept = max(EXPOSURE_KEPT_MIN, EXPOSURE_KEPT_PER_NEEDED * self.t.resolve_exposure)
        entries = sorted(
            [*pattern.exposure, ExposureNote(event.service_date, event.encounter_id)],
            key=lambda e: (e.service_date, e.encounter_id),
        )
        if entries[:kept] == pattern.exposure:
            return False  # later than every kept visit: the earliest ones age first and decide
        pattern.exposure = entries[:kept]
        return True

    # ---- acknowledgements ---------------------------------------------------------------------------

    def _named_pattern(self, event: FeedbackAcknowledged | FeedbackReviewed, state: State) -> Pattern | None:
        """The current episode of the pattern an answer names (by pattern_key or by one of its notifications)."""
        key: PatternKey | None = None
        if event.pattern_key is not None:
            k = event.pattern_key
            key = PatternKey(k.provider_npi, k.root_cause, k.procedure_code)
        elif event.notification_id is not None:
            pattern_id = state.pattern_of_notification(event.notification_id)
            named = state.pattern(pattern_id) if pattern_id else None
            key = named.key if named else None
        return state.current_pattern(key) if key else None

    def _on_acknowledgement(self, event: FeedbackAcknowledged, state: State, now: datetime, out: list[Message]) -> bool:
        pattern = self._named_pattern(event, state)
        if pattern is None or pattern.status not in (PatternStatus.OPEN, PatternStatus.DORMANT):
            return False
        if event.response == "disputed":
            if pattern.disputed_at is not None:
                return False  # one review at a time: the dispute in hand already paused the loop
            pattern.disputes += 1
            pattern.disputed_at = now
            self._notify(
                "review_requested",
                pattern,
                state,
                now,
                out,
                about=str(pattern.disputes),
                only="billing",
                comment=event.comment,
            )
        elif event.response == "not_applicable":
            # "No change needed" answers a pre-bill alert about one note; it neither accepts nor disputes the
            # pattern's feedback, so reminders go on until the feedback itself is answered.
            pattern.alerts_no_change += 1
        elif pattern.acknowledged:
            return False
        else:
            pattern.acknowledged_at = now
            pattern.ack_response = event.response
        self._schedule(pattern)
        state.save_pattern(pattern)
        return True

    def _on_review(self, event: FeedbackReviewed, state: State, now: datetime, out: list[Message]) -> bool:
        pattern = self._named_pattern(event, state)
        if pattern is None or pattern.disputed_at is None:
            return False  # nothing under review: a review without a dispute changes nothing
        pattern.disputed_at = None
        pattern.reviewed_at = now
        pattern.review_outcome = event.outcome
        about = str(pattern.disputes)
        if event.outcome == "upheld":
            self._notify("feedback_upheld", pattern, state, now, out, about=about, comment=event.comment)
        else:
            if pattern.status is PatternStatus.OPEN:
                state.record_fact(department_fact(pattern, opened=False, at=now))
            pattern.status = PatternStatus.WITHDRAWN
            self._notify("feedback_withdrawn", pattern, state, now, out, about=about, comment=event.comment)
        self._schedule(pattern)
        state.save_pattern(pattern)
        return True

    # ---- timers -------------------------------------------------------------------------------------

    def _timers(self, p: Pattern) -> list[tuple[datetime, str]]:
        if p.status not in (PatternStatus.OPEN, PatternStatus.DORMANT) or p.opened_at is None or p.quarantine:
            return []
        timers = []
        # A dispute pauses the wait for an answer; an upheld review starts it again from the review.
        waiting = p.status is PatternStatus.OPEN and not p.acknowledged and p.disputed_at is None
        since = p.reviewed_at if p.review_outcome == "upheld" and p.reviewed_at else p.opened_at
        if waiting and not p.reminded:
            timers.append((since + timedelta(days=self.t.remind_after_days), "reminder"))
        if waiting and "1:unacknowledged" not in p.escalations:
            timers.append((since + timedelta(days=self.t.escalate_unacked_days), "unacknowledged"))
        if p.disputed_at is not None and "1:dispute_unanswered" not in p.escalations:
            timers.append((p.disputed_at + timedelta(days=self.t.escalate_unacked_days), "dispute_unanswered"))
        resolve_at = self._resolve_check_at(p)
        if resolve_at is not None:
            timers.append((resolve_at, "resolve"))
        return timers

    def _schedule(self, p: Pattern) -> None:
        timers = self._timers(p)
        p.next_due_at = min(due for due, _ in timers) if timers else None

    def _fire_timers(self, p: Pattern, due: datetime, state: State, out: list[Message]) -> None:
        for at, timer in sorted(self._timers(p), key=lambda t: t[0]):
            if at > due or p.status not in (PatternStatus.OPEN, PatternStatus.DORMANT):
                continue
            if timer == "reminder":
                p.reminded = True
                self._notify("reminder", p, state, due, out)
            elif timer == "unacknowledged":
                self._escalate(p, 1, "unacknowledged", state, due, out)
            elif timer == "dispute_unanswered":
                self._escalate(p, 1, "dispute_unanswered", state, due, out)
            elif self._may_resolve(p, due):
                self._resolve(p, state, due, out)
            elif self._goes_dormant(p, due):
                p.status = PatternStatus.DORMANT
                p.dormant_at = due
                state.save_pattern(p)
                # Not open any more as far as systemic escalation counts (nobody is being asked to act).
                state.record_fact(department_fact(p, opened=False, at=due))
                self._notify("pattern_dormant", p, state, due, out, only="billing")
        self._schedule(p)
        state.save_pattern(p)

    def _quiet_since(self, p: Pattern) -> datetime:
        """When the pattern has been quiet long enough: after feedback, and after the latest visit with the gap."""
        quiet = timedelta(days=self.t.resolve_quiet_days)
        assert p.opened_at is not None and p.last_service_date is not None
        return max(p.opened_at + quiet, start_of(p.last_service_date) + quiet)

    def _needs_exposure(self, p: Pattern) -> bool:
        """Only where a clinician was told can the clinician's later visits show whether it worked; an
        administrative pattern (billing's process, not a note) resolves on quiet alone."""
        return self.codebook.is_clinician_facing(p.root_cause)

    def _aged(self, e: ExposureNote) -> datetime:
        """When a visit is old enough that its denial, if any, would have come back."""
        return start_of(e.service_date + timedelta(days=self.t.denial_lag_days))

    def _exposure_ready_at(self, p: Pattern) -> datetime | None:
        """When enough kept visits will be old enough to judge by; None while there are too few of them."""
        need = self.t.resolve_exposure
        if need == 0:
            return p.opened_at
        return self._aged(p.exposure[need - 1]) if len(p.exposure) >= need else None

    def _resolve_check_at(self, p: Pattern) -> datetime | None:
        quiet = self._quiet_since(p)
        if not self._needs_exposure(p):
            return quiet if self._has_enough_compliant_notes(p) else None
        ready = self._exposure_ready_at(p)
        if ready is None:
            return quiet if p.status is PatternStatus.OPEN else None  # then dormant: nothing to judge by
        return max(quiet, ready) if self._has_enough_compliant_notes(p) else None

    def _has_enough_compliant_notes(self, p: Pattern) -> bool:
        return not has_check(p.root_cause) or p.compliant_notes >= self.t.resolve_compliant_notes

    def _has_exposure(self, p: Pattern, now: datetime) -> bool:
        if not self._needs_exposure(p):
            return True
        return sum(1 for e in p.exposure if self._aged(e) <= now) >= self.t.resolve_exposure

    def _may_resolve(self, p: Pattern, now: datetime) -> bool:
        return (
            p.status in (PatternStatus.OPEN, PatternStatus.DORMANT)
            and self._has_enough_compliant_notes(p)
            and now >= self._quiet_since(p)
            and self._has_exposure(p, now)
        )

    def _goes_dormant(self, p: Pattern, now: datetime) -> bool:
        return (
            p.status is PatternStatus.OPEN
            and now >= self._quiet_since(p)
            and self._needs_exposure(p)
            and len(p.exposure) < self.t.resolve_exposure
        )

    def _resolve(self, p: Pattern, state: State, now: datetime, out: list[Message]) -> None:
        if p.status is PatternStatus.OPEN:  # a dormant pattern already left the department's open ones
            state.record_fact(department_fact(p, opened=False, at=now))
        p.status = PatternStatus.RESOLVED
        p.resolved_at = now
        state.save_pattern(p)
        self._notify("pattern_resolved", p, state, now, out)

    # ---- messages -----------------------------------------------------------------------------------

    def _audiences(self, p: Pattern) -> list[Audience]:
        return ["clinician", "billing"] if self.codebook.is_clinician_facing(p.root_cause) else ["billing"]

    def _notify(
        self,
        kind: NotificationKind,
        p: Pattern,
        state: State,
        now: datetime,
        out: list[Message],
        about: str = "",
        only: Audience | None = None,
        comment: str | None = None,
        note: NoteRef | None = None,
    ) -> None:
        for audience in self._audiences(p):
            if only is not None and audience != only:
                continue
            message = self.compose.notification(kind, audience, p, now, about, comment, note)
            if state.pattern_of_notification(message.notification_id) is None:
                state.record_notification(message.notification_id, p.pattern_id)
                out.append(message)

    def _check_pattern_escalations(self, p: Pattern, state: State, now: datetime, out: list[Message]) -> None:
        if p.post_feedback_cases >= self.t.escalate_recurrence_l1:
            self._escalate(p, 1, "recurrence_after_feedback", state, now, out)
        if p.post_feedback_cases >= self.t.escalate_recurrence_l2:
            self._escalate(p, 2, "recurrence_after_feedback", state, now, out)
        if p.amount_at_risk >= self.t.escalate_amount:
            self._escalate(p, 2, "amount_at_risk", state, now, out)

    def _escalate(
        self,
        p: Pattern,
        level: Literal[1, 2],
        reason: EscalationReason,
        state: State,
        now: datetime,
        out: list[Message],
    ) -> None:
        raised = f"{level}:{reason}"
        if raised in p.escalations:
            return
        p.escalations.append(raised)
        escalation = self.compose.escalation(level, reason, [p], p.department, p.root_cause, now)
        state.record_escalation(escalation)
        out.append(escalation)


def department_fact(p: Pattern, opened: bool, at: datetime) -> DepartmentFact:
    snapshot: dict[str, str | int | None] = {
        "case_count": p.case_count,
        "post_feedback_cases": p.post_feedback_cases,
        "amount_at_risk": str(p.amount_at_risk),
        "opened_at": p.opened_at.isoformat() if p.opened_at else None,
        "provider_name": p.provider_name,
        "payer_ids": ",".join(sorted({e.payer_id for e in p.evidence if e.payer_id})),
    }
    return DepartmentFact(p.department, p.root_cause, p.pattern_id, p.provider_npi, opened, at, snapshot)


def _bounded(total: Decimal) -> Decimal:
    return min(max(total, Decimal("0.00")), MAX_TOTAL)


def _merged(codes: list[str], more: tuple[str, ...] | list[str]) -> list[str]:
    return sorted(set(codes) | set(more))


def _drop_exposure(pattern: Pattern, encounter_id: str) -> None:
    if any(e.encounter_id == encounter_id for e in pattern.exposure):
        pattern.exposure = [e for e in pattern.exposure if e.encounter_id != encounter_id]


def _recent_evidence(evidence: list[EvidenceRef], case: Case) -> list[EvidenceRef]:
    ref = EvidenceRef(case.claim_id, case.encounter_id, case.service_date, case.payer_id)
    kept = sorted([*evidence, ref], key=lambda e: (e.service_date, e.claim_id), reverse=True)
    return kept[:EVIDENCE_KEPT]
