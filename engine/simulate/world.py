"""A seeded stretch of a hospital's revenue cycle: visits, signed notes, payer denials and acknowledgements.

The simulation walks the calendar one day at a time. Each visit produces a signed note (whose facts show the
provider's documentation habits) and a claim that the payer adjudicates weeks later. Documentation denials
travel back to a simulated notification service; once a provider has `PATTERN_THRESHOLD` of them for one root
cause and procedure within `PATTERN_WINDOW_DAYS`, the provider has in effect been told, may acknowledge, and,
if a learner, documents better from the next day on. Everything random comes from `random.Random` streams
seeded by the configuration, so one configuration always gives the same events.
"""

from __future__ import annotations

import heapq
import random
from bisect import insort
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar

from engine.simulate.catalog import (
    ADMINISTRATIVE_MIX,
    ADMINISTRATIVE_REASONS,
    BASE_GAP_RATE,
    COMMERCIAL_COINSURANCE,
    COMMERCIAL_COPAY_PRIMARY,
    COMMERCIAL_COPAY_SPECIALIST,
    COMMERCIAL_HIGH_DEDUCTIBLE,
    COMMERCIAL_HIGH_DEDUCTIBLE_SHARE,
    DEPARTMENTS,
    DETECTION_WEIGHT,
    DOCUMENTATION_REASONS,
    DOCUMENTATION_ROOT_CAUSES,
    EMERGENCY_AUTHORIZATION_FACTOR,
    FALLBACK_DIAGNOSIS,
    HABIT_GAP_RATE,
    INITIALS,
    LEARNED_GAP_FACTOR,
    MDM_LADDER,
    MEDICAID_EM_COPAY,
    MEDICARE_COINSURANCE,
    MEDICARE_PART_B_DEDUCTIBLE,
    MEDICARE_SEQUESTRATION,
    OFFICE_EM_LADDER,
    PATTERN_THRESHOLD,
    PATTERN_WINDOW_DAYS,
    PAYERS,
    PROCEDURE_DIAGNOSES,
    PROCEDURES,
    RECORDS_SIGNING_DAYS,
    ROLES,
    SURNAMES,
    TWO_HABITS_SHARE,
    DenialReason,
    Department,
    PayerProfile,
    Procedure,
)
from schemas import RootCause

Event = dict[str, Any]
T = TypeVar("T")

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

# Submission to remittance, for every payer (denial-codes.md); service to submission is 1-7 days.
ADJUDICATION_BOUNDS = (14, 45)
SUBMISSION_DAYS = (1, 7)
# A corrected claim goes out 5-20 days after the denial; its remittance comes 14-30 days later.
RESUBMISSION_DAYS = (5, 20)
READJUDICATION_DAYS = (14, 30)
ACK_DELAY_DAYS = (1, 6)

CLINIC_ABSENCE_RATE = 0.08
ED_SHIFT_RATE = 0.6
PANEL_VISITS = 40  # a clinic panel holds this many patients per daily visit
TEAM_ACK_SHARE = 0.15
PERSISTENT_DISPUTE_SHARE = 0.4

# Calibration: the detection scale starts here and is corrected this many times (see `simulate`).
INITIAL_DETECTION_SCALE = 0.2
CALIBRATION_ROUNDS = 2
MAX_DETECTION_SCALE = 20.0


@dataclass(frozen=True)
class SimulationConfig:
    """The knobs of a simulated hospital; docs/simulator.md explains each and the figures behind the defaults."""

    seed: int = 1
    providers: int = 40
    days: int = 90
    start: date = date(2026, 1, 5)
    visits_per_day: float = 10.0
    denial_rate: float = 0.12
    documentation_share: float = 0.20
    habit_share: float = 0.45
    learner_share: float = 0.6
    # What a learner's gap rate becomes after feedback, as a share of what it was; 1.0: nobody learns, with the
    # same roster (learners are still drawn, so a world with and one without learning differ only in that).
    learned_gap_factor: float = LEARNED_GAP_FACTOR
    ack_rate: float = 0.85
    persistent_ack_rate: float = 0.3
    billing_ack_rate: float = 0.7
    redenial_rate: float = 0.05

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError("seed must be zero or positive")
        if self.providers < 1:
            raise ValueError("providers must be at least 1")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if not 0 < self.visits_per_day <= 60:
            raise ValueError("visits_per_day must be above 0 and at most 60")
        for name in (
            "denial_rate",
            "documentation_share",
            "habit_share",
            "learner_share",
            "learned_gap_factor",
            "ack_rate",
            "persistent_ack_rate",
            "billing_ack_rate",
            "redenial_rate",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie between 0 and 1")


@dataclass(frozen=True)
class ProviderProfile:
    """Ground truth about one simulated provider, for tests and demos (the events never say it)."""

    npi: str
    name: str
    department: str
    habits: tuple[RootCause, ...]
    learner: bool

    @property
    def kind(self) -> str:
        return "learner" if self.learner else "persistent"


@dataclass(frozen=True)
class FedBackPattern:
    """A pattern the engine should open with its defaults, and the moment it was fed back (the provider heard
    of it for clinician root causes, the billing team for the others)."""

    provider_npi: str
    root_cause: RootCause
    procedure_code: str
    feedback_at: datetime
    acknowledged: bool


@dataclass(frozen=True)
class Tally:
    claims: int
    notes: int
    denied_claims: Counter[str]  # initial denials by category: documentation | administrative
    denied_lines: Counter[RootCause]  # denied lines of initial denials, by root cause
    redenials: int
    acknowledgements: int


@dataclass(frozen=True)
class Simulation:
    config: SimulationConfig
    events: list[Event]  # in delivery order
    providers: tuple[ProviderProfile, ...]
    patterns: tuple[FedBackPattern, ...]
    tally: Tally
    detection_scale: float


def generate(config: SimulationConfig) -> Iterator[Event]:
    """The simulated events, in delivery order (by `occurred_at`, ties broken by `event_id`)."""
    yield from simulate(config).events


def simulate(config: SimulationConfig) -> Simulation:
    """Run the simulation, calibrating how often payers catch documentation gaps.

    How many gaps there are follows from the providers' habits, and learners fix theirs once denials reach
    them, so the number of documentation denials depends on the detection rate in a way no formula gives.
    The run is therefore repeated: each round scales detection by target/realized, and the last round is
    the result. Every round starts from the same seed, so the result is still a function of the config.
    """
    target = config.denial_rate * config.documentation_share
    scale = INITIAL_DETECTION_SCALE
    for _ in range(CALIBRATION_ROUNDS):
        tally = _Run(config, scale, record_events=False).execute().tally
        realized = tally.denied_claims["documentation"] / max(tally.claims, 1)
        if target == 0:
            scale = 0.0
            break
        scale = min(MAX_DETECTION_SCALE, scale * target / realized) if realized > 0 else MAX_DETECTION_SCALE
    return _Run(config, scale, record_events=True).execute()


# --- the world -------------------------------------------------------------------------------------------------


@dataclass
class Patient:
    mrn: str
    payer: PayerProfile
    conditions: tuple[str, ...]
    high_deductible: bool
    deductible_left: Decimal = ZERO
    deductible_year: int = 0


@dataclass
class Provider:
    npi: str
    name: str
    role: str
    department: Department
    volume: float
    habits: tuple[RootCause, ...]
    learner: bool
    ack_probability: float
    gap_rates: dict[RootCause, float]
    panel: list[Patient] = field(default_factory=list)
    feedback_at: dict[RootCause, datetime] = field(default_factory=dict)
    learned_gap_factor: float = LEARNED_GAP_FACTOR

    def gap_rate(self, root_cause: RootCause, day: date) -> float:
        rate = self.gap_rates[root_cause]
        heard = self.feedback_at.get(root_cause)
        # Feedback changes visits on the days after it arrived, not the ones already documented.
        if self.learner and heard is not None and heard.date() < day:
            rate *= self.learned_gap_factor
        return rate

    def profile(self) -> ProviderProfile:
        return ProviderProfile(self.npi, self.name, self.department.name, self.habits, self.learner)


@dataclass
class ClaimLine:
    number: int
    procedure: Procedure
    modifiers: list[str]
    diagnoses: list[str]


@dataclass
class Visit:
    provider: Provider
    patient: Patient
    service_date: date
    encounter_id: str
    claim_id: str
    lines: list[ClaimLine]
    gaps: set[RootCause]


@dataclass(frozen=True)
class DenialNotice:
    """A documentation denial as the notification service sees it: one case of one pattern."""

    npi: str
    root_cause: RootCause
    procedure_code: str
    service_date: date
    case: tuple[str, int, RootCause]


@dataclass
class PatternTrack:
    service_dates: list[date] = field(default_factory=list)
    cases: set[tuple[str, int, RootCause]] = field(default_factory=set)
    feedback_at: datetime | None = None
    acknowledged: bool = False


def npi_with_check_digit(first_nine: str) -> str:
    """Append the NPI check digit: Luhn over the prefix 80840 and the nine digits."""
    total = 0
    # Read from the right; the check digit will sit to the right of these, so the rightmost one is doubled.
    for position, char in enumerate(reversed("80840" + first_nine)):
        digit = int(char)
        if position % 2 == 0:
            digit = digit * 2 - 9 if digit * 2 > 9 else digit * 2
        total += digit
    return first_nine + str((10 - total % 10) % 10)


def _weighted(rng: random.Random, options: Sequence[tuple[T, float]]) -> T:
    return rng.choices([option for option, _ in options], weights=[weight for _, weight in options])[0]


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _at(day: date, minutes: int) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC) + timedelta(minutes=minutes)


def _remittance_date(submitted: date, lag: int, bounds: tuple[int, int] = ADJUDICATION_BOUNDS) -> date:
    """Payers remit on weekdays: move a weekend date to the nearest weekday that keeps the lag within bounds."""
    low, high = bounds
    remitted = submitted + timedelta(days=lag)
    if remitted.weekday() == 5:
        shift = -1 if lag - 1 >= low else 2
    elif remitted.weekday() == 6:
        shift = 1 if lag + 1 <= high else -2
    else:
        shift = 0
    return remitted + timedelta(days=shift)


def _department_slots() -> list[Department]:
    """Departments in round-robin order, so any group size gets a spread close to the shares."""
    remaining = {department.name: department.share for department in DEPARTMENTS}
    slots: list[Department] = []
    while any(remaining.values()):
        for department in DEPARTMENTS:
            if remaining[department.name]:
                remaining[department.name] -= 1
                slots.append(department)
    return slots


class _Run:
    """One pass over the calendar. Separate random streams keep calibration rounds comparable."""

    def __init__(self, config: SimulationConfig, detection_scale: float, record_events: bool) -> None:
        self.config = config
        self.detection_scale = detection_scale
        self.record_events = record_events
        self.roster_rng = random.Random(f"{config.seed}:roster")
        self.visit_rng = random.Random(f"{config.seed}:visits")
        self.payer_rng = random.Random(f"{config.seed}:payers")
        self.feedback_rng = random.Random(f"{config.seed}:feedback")
        self.events: list[tuple[datetime, str, Event]] = []
        self.serial: Counter[str] = Counter()
        self.notices: list[tuple[datetime, int, DenialNotice]] = []
        self.patterns: dict[tuple[str, RootCause, str], PatternTrack] = {}
        self.providers_by_npi: dict[str, Provider] = {}
        self.claims = 0
        self.notes = 0
        self.denied_claims: Counter[str] = Counter()
        self.denied_lines: Counter[RootCause] = Counter()
        self.redenials = 0
        self.acknowledgements = 0
        self.allowed: dict[tuple[str, str], Decimal] = {}
        total_share = sum(payer.patient_share for payer in PAYERS)
        mean_weight = sum(payer.patient_share * payer.administrative_weight for payer in PAYERS) / total_share
        self.administrative_rate = config.denial_rate * (1 - config.documentation_share) / mean_weight
        bases = self.roster_rng.sample(range(1_000_000, 9_000_000), 3)
        self.encounter_base, self.claim_base, self.note_base = bases

    # --- running ---

    def execute(self) -> Simulation:
        providers = self._build_roster()
        for offset in range(self.config.days):
            day = self.config.start + timedelta(days=offset)
            self._deliver_feedback(until=datetime.combine(day, time(), tzinfo=UTC))
            for provider in providers:
                self._work_day(provider, day)
        self._deliver_feedback(until=None)
        self.events.sort(key=lambda item: (item[0], item[1]))
        patterns = tuple(
            FedBackPattern(npi, root_cause, code, track.feedback_at, track.acknowledged)
            for (npi, root_cause, code), track in sorted(self.patterns.items(), key=lambda item: item[0])
            if track.feedback_at is not None
        )
        tally = Tally(
            claims=self.claims,
            notes=self.notes,
            denied_claims=self.denied_claims,
            denied_lines=self.denied_lines,
            redenials=self.redenials,
            acknowledgements=self.acknowledgements,
        )
        return Simulation(
            config=self.config,
            events=[event for _, _, event in self.events],
            providers=tuple(provider.profile() for provider in providers),
            patterns=patterns,
            tally=tally,
            detection_scale=self.detection_scale,
        )

    def _emit(self, kind: str, moment: datetime, build: Callable[[], Event]) -> None:
        """Number the event and keep it; calibration rounds only count, so they never build events."""
        self.serial[kind] += 1
        if self.record_events:
            event_id = f"{kind}-{self.config.seed}-{self.serial[kind]:07d}"
            event = build()
            # Envelope fields first; `event` supplies the rest (its own event_type and schema_version included).
            envelope = {"event_type": event["event_type"], "schema_version": 1, "event_id": event_id}
            self.events.append((moment, event_id, {**envelope, "occurred_at": _timestamp(moment), **event}))

    # --- the group ---

    def _build_roster(self) -> list[Provider]:
        rng = self.roster_rng
        config = self.config
        slots = _department_slots()
        departments = [slots[index % len(slots)] for index in range(config.providers)]
        with_habits = sorted(rng.sample(range(config.providers), round(config.habit_share * config.providers)))
        learners = set(rng.sample(with_habits, round(config.learner_share * len(with_habits))))
        surnames = rng.sample(SURNAMES, min(config.providers, len(SURNAMES)))
        panel_sizes = [
            max(30, round(config.visits_per_day * PANEL_VISITS * (2 if department.emergency else 1)))
            for department in departments
        ]
        mrns = iter(rng.sample(range(10_000_000, 100_000_000), sum(panel_sizes)))
        npis: set[str] = set()
        providers: list[Provider] = []
        for index, department in enumerate(departments):
            npi = self._new_npi(npis)
            surname = surnames[index % len(surnames)]
            habits: tuple[RootCause, ...] = ()
            if index in with_habits:
                count = 2 if rng.random() < TWO_HABITS_SHARE else 1
                habits = self._draw_habits(department, count)
            learner = index in learners if habits else rng.random() < config.learner_share
            gap_rates = {
                root_cause: (rng.uniform(*HABIT_GAP_RATE) if root_cause in habits else BASE_GAP_RATE[root_cause])
                for root_cause in DOCUMENTATION_ROOT_CAUSES
            }
            provider = Provider(
                npi=npi,
                name=f"{rng.choice(INITIALS)}. {surname}",
                role=_weighted(rng, ROLES),
                department=department,
                volume=rng.uniform(0.75, 1.25),
                habits=habits,
                learner=learner,
                ack_probability=config.ack_rate if learner else config.persistent_ack_rate,
                gap_rates=gap_rates,
                learned_gap_factor=config.learned_gap_factor,
            )
            provider.panel = [self._new_patient(f"MRN-{next(mrns)}", department) for _ in range(panel_sizes[index])]
            providers.append(provider)
            self.providers_by_npi[npi] = provider
        return providers

    def _new_npi(self, taken: set[str]) -> str:
        while True:
            npi = npi_with_check_digit(str(self.roster_rng.choice("12")) + f"{self.roster_rng.randrange(10**8):08d}")
            if npi not in taken:
                taken.add(npi)
                return npi

    def _draw_habits(self, department: Department, count: int) -> tuple[RootCause, ...]:
        options = list(department.habit_weights.items())
        chosen: list[RootCause] = []
        while len(chosen) < min(count, len(options)):
            root_cause = _weighted(self.roster_rng, options)
            if root_cause not in chosen:
                chosen.append(root_cause)
        return tuple(sorted(chosen, key=DOCUMENTATION_ROOT_CAUSES.index))

    def _new_patient(self, mrn: str, department: Department) -> Patient:
        rng = self.roster_rng
        payer = _weighted(rng, [(payer, payer.patient_share) for payer in PAYERS])
        conditions = tuple(rng.sample(department.diagnoses, rng.choice((1, 2, 2, 3))))
        high_deductible = payer.kind == "commercial" and rng.random() < COMMERCIAL_HIGH_DEDUCTIBLE_SHARE
        return Patient(mrn, payer, conditions, high_deductible)

    # --- a day at work ---

    def _work_day(self, provider: Provider, day: date) -> None:
        rng = self.visit_rng
        department = provider.department
        if department.emergency:
            works = rng.random() < ED_SHIFT_RATE
            first_minute, span = 11 * 60, 12 * 60
        else:
            works = day.weekday() < 5 and rng.random() >= CLINIC_ABSENCE_RATE
            first_minute, span = 13 * 60, 8 * 60 + 30
        if not works:
            return
        mean = self.config.visits_per_day * provider.volume
        count = max(0, round(rng.gauss(mean, mean * 0.2)))
        for slot in range(count):
            minute = first_minute + slot * span // max(count, 1) + rng.randrange(10)
            self._visit(provider, day, minute)

    def _visit(self, provider: Provider, day: date, minute: int) -> None:
        rng = self.visit_rng
        department = provider.department
        patient = rng.choice(provider.panel)
        em_code = _weighted(rng, list(department.em_mix.items()))
        procedures = [PROCEDURES[code] for code, rate in department.procedure_rates.items() if rng.random() < rate]
        needs_25 = any(procedure.modifier_25_with_em for procedure in procedures)
        has_em = not (needs_25 and rng.random() < department.procedure_only_share)
        office_em = has_em and not department.emergency

        eligible = {
            RootCause.EM_LEVEL_UNSUPPORTED: office_em and em_code != OFFICE_EM_LADDER[-1],
            RootCause.RECORDS_MISSING: True,
            RootCause.MEDICAL_NECESSITY_UNSUPPORTED: any(p.payer_checks_indication for p in procedures),
            RootCause.DIAGNOSIS_MISMATCH: True,
            RootCause.BUNDLING: office_em and needs_25,
        }
        gaps = {
            root_cause
            for root_cause in DOCUMENTATION_ROOT_CAUSES
            if eligible[root_cause] and rng.random() < provider.gap_rate(root_cause, day)
        }

        billed_em = em_code
        if RootCause.EM_LEVEL_UNSUPPORTED in gaps:
            # The habit is billing the top level; an occasional slip is one level up.
            habitual = RootCause.EM_LEVEL_UNSUPPORTED in provider.habits
            billed_em = OFFICE_EM_LADDER[-1] if habitual else OFFICE_EM_LADDER[OFFICE_EM_LADDER.index(em_code) + 1]

        diagnoses = list(patient.conditions)
        for procedure in procedures:
            if procedure.code in PROCEDURE_DIAGNOSES:
                diagnoses.append(rng.choice(PROCEDURE_DIAGNOSES[procedure.code]))
        diagnoses = list(dict.fromkeys(diagnoses))[:4]
        if RootCause.DIAGNOSIS_MISMATCH in gaps:
            diagnoses = []

        billed_codes = ([billed_em] if has_em else []) + [procedure.code for procedure in procedures]
        mdm, minutes = self._em_facts(em_code, billed_em) if has_em else (None, None)
        elements = ["hpi", "exam", "assessment_plan"]
        if rng.random() < 0.6:
            elements.insert(1, "ros")
        if any(procedure.code != "36415" for procedure in procedures):
            elements.append("procedure_note")
        if minutes is not None:
            elements.append("total_time")
        if office_em and needs_25 and RootCause.BUNDLING not in gaps:
            elements.append("separately_identifiable_em")
        necessity: bool | None = True
        if RootCause.MEDICAL_NECESSITY_UNSUPPORTED in gaps:
            necessity = False if rng.random() < 0.7 else None

        seen_at = _at(day, minute)
        signed_at = self._signing_time(day, seen_at, late=RootCause.RECORDS_MISSING in gaps)
        self.serial["visit"] += 1
        encounter_id = f"ENC-{self.encounter_base + self.serial['visit']}"
        claim_id = f"CLM-{self.claim_base + self.serial['visit']}"
        note_id = f"NOTE-{self.note_base + self.serial['visit']}"

        self.notes += 1
        self._emit(
            "n",
            signed_at,
            lambda: {
                "event_type": "note.signed",
                "schema_version": 1,
                "source": "ehr",
                "note_id": note_id,
                "encounter_id": encounter_id,
                "patient_ref": patient.mrn,
                "author": {
                    "npi": provider.npi,
                    "name": provider.name,
                    "department": department.name,
                    "role": provider.role,
                },
                "note_type": "ed_provider_note" if department.emergency else "progress_note",
                "service_date": day.isoformat(),
                "signed_at": _timestamp(signed_at),
                "documentation": {
                    "procedure_codes": billed_codes,
                    "diagnosis_codes": diagnoses,
                    "total_time_minutes": minutes,
                    "mdm_level": mdm,
                    "medical_necessity": necessity,
                    "elements": elements,
                },
            },
        )

        line_diagnoses = diagnoses or [FALLBACK_DIAGNOSIS]
        lines = [
            ClaimLine(
                number,
                PROCEDURES[code],
                ["25"] if PROCEDURES[code].is_em and needs_25 else [],
                list(line_diagnoses),
            )
            for number, code in enumerate(billed_codes, start=1)
        ]
        self._adjudicate(Visit(provider, patient, day, encounter_id, claim_id, lines, gaps))

    def _em_facts(self, em_code: str, billed_em: str) -> tuple[str | None, int | None]:
        """MDM level and total minutes the note documents for the visit's true level and the level billed."""
        rng = self.visit_rng
        procedure = PROCEDURES[em_code]
        if procedure.kind == "ed_em":
            return procedure.mdm_level, None
        level = OFFICE_EM_LADDER.index(em_code)
        required_minutes = procedure.minutes or 0
        if billed_em != em_code:
            billed_minutes = PROCEDURES[billed_em].minutes or 0
            minutes = None if rng.random() < 0.4 else rng.randint(max(5, billed_minutes - 15), billed_minutes - 1)
            return MDM_LADDER[level], minutes
        if rng.random() < 0.25:  # time-based level selection: lower MDM, enough minutes
            return MDM_LADDER[max(0, level - 1)], rng.randint(required_minutes, required_minutes + 15)
        minutes = None if rng.random() < 0.5 else rng.randint(max(5, required_minutes - 5), required_minutes + 20)
        return MDM_LADDER[level], minutes

    def _signing_time(self, day: date, seen_at: datetime, late: bool) -> datetime:
        rng = self.visit_rng
        if late:
            signed_day = day + timedelta(days=rng.randint(RECORDS_SIGNING_DAYS + 1, 21))
            return _at(signed_day, rng.randint(12 * 60, 23 * 60 + 59))
        if rng.random() < 0.15:
            signed_day = day + timedelta(days=rng.randint(1, RECORDS_SIGNING_DAYS))
            return _at(signed_day, rng.randint(12 * 60, 23 * 60 + 59))
        end_of_day = _at(day, 23 * 60 + 59)
        return min(end_of_day, seen_at + timedelta(minutes=rng.randint(15, 300)))

    # --- the payer ---

    def _adjudicate(self, visit: Visit) -> None:
        rng = self.payer_rng
        payer = visit.patient.payer
        self.claims += 1
        denied: dict[int, tuple[RootCause, DenialReason]] = {}
        category = "documentation"
        if rng.random() < self.administrative_rate * payer.administrative_weight:
            category = "administrative"
            root_cause = _weighted(rng, self._administrative_mix(visit))
            reason = _weighted(rng, ADMINISTRATIVE_REASONS[root_cause])
            for line in _administrative_targets(root_cause, visit.lines):
                denied[line.number] = (root_cause, reason)
        else:
            for root_cause in DOCUMENTATION_ROOT_CAUSES:
                if root_cause not in visit.gaps:
                    continue
                detection = DETECTION_WEIGHT[root_cause] * payer.detection_factors.get(root_cause, 1.0)
                if rng.random() < min(1.0, detection * self.detection_scale):
                    reason = _weighted(rng, DOCUMENTATION_REASONS[root_cause])
                    for line in _documentation_targets(root_cause, visit.lines):
                        denied.setdefault(line.number, (root_cause, reason))

        # Paying lines moves patients' deductibles, which only shows in amounts: calibration rounds skip it.
        settled = {}
        if self.record_events:
            if not denied:  # paid in full: nothing to publish, but the patient's deductible moves
                for line in visit.lines:
                    self._take_deductible(visit.patient, visit.service_date, self._allowed(line, payer))
                return
            settled = {line.number: self._settle(visit, line) for line in visit.lines if line.number not in denied}
        if not denied:
            return

        submitted = visit.service_date + timedelta(days=rng.randint(*SUBMISSION_DAYS))
        remitted = _remittance_date(submitted, rng.randint(*payer.adjudication_days))
        remitted_at = _at(remitted, payer.remit_hour_utc * 60)
        event = self._denial_event(visit, denied, settled) if self.record_events else {}
        self._emit("d", remitted_at, lambda: event)
        self.denied_claims[category] += 1
        self.denied_lines.update(root_cause for root_cause, _ in denied.values())

        for number, (root_cause, _) in sorted(denied.items()):
            code = visit.lines[number - 1].procedure.code
            notice = DenialNotice(
                visit.provider.npi, root_cause, code, visit.service_date, (visit.claim_id, number, root_cause)
            )
            self.serial["notice"] += 1
            heapq.heappush(self.notices, (remitted_at, self.serial["notice"], notice))

        duplicate = any(root_cause is RootCause.DUPLICATE for root_cause, _ in denied.values())
        if not duplicate and rng.random() < self.config.redenial_rate:
            resubmitted = remitted + timedelta(days=rng.randint(*RESUBMISSION_DAYS))
            again = _remittance_date(resubmitted, rng.randint(*READJUDICATION_DAYS), READJUDICATION_DAYS)
            self._emit("d", _at(again, payer.remit_hour_utc * 60), lambda: event)
            self.redenials += 1

    def _administrative_mix(self, visit: Visit) -> list[tuple[RootCause, float]]:
        payer = visit.patient.payer
        mix = []
        for root_cause, weight in ADMINISTRATIVE_MIX.items():
            weight *= payer.administrative_factors.get(root_cause, 1.0)
            if root_cause is RootCause.AUTHORIZATION_MISSING and visit.provider.department.emergency:
                weight *= EMERGENCY_AUTHORIZATION_FACTOR
            mix.append((root_cause, weight))
        return mix

    def _allowed(self, line: ClaimLine, payer: PayerProfile) -> Decimal:
        key = (line.procedure.code, payer.id)
        if key not in self.allowed:
            self.allowed[key] = _money(line.procedure.medicare_rate * payer.rate_multiplier)
        return self.allowed[key]

    def _take_deductible(self, patient: Patient, service_date: date, allowed: Decimal) -> Decimal:
        if patient.deductible_year != service_date.year:  # deductibles restart on January 1
            patient.deductible_year = service_date.year
            patient.deductible_left = {
                "medicare": MEDICARE_PART_B_DEDUCTIBLE,
                "commercial": COMMERCIAL_HIGH_DEDUCTIBLE if patient.high_deductible else ZERO,
            }.get(patient.payer.kind, ZERO)
        deductible = min(patient.deductible_left, allowed)
        patient.deductible_left -= deductible
        return deductible

    def _settle(self, visit: Visit, line: ClaimLine) -> tuple[Decimal, list[Event]]:
        """Pay a line: contractual write-off, the patient's share, and what the payer pays."""
        patient = visit.patient
        payer = patient.payer
        billed = line.procedure.charge
        allowed = self._allowed(line, payer)
        adjustments: list[Event] = []

        def adjust(group: str, reason: str, amount: Decimal) -> Decimal:
            if amount > 0:
                adjustments.append({"group_code": group, "reason_code": reason, "amount": f"{amount:.2f}"})
            return amount

        adjust("CO", "45", billed - allowed)
        deductible = adjust("PR", "1", self._take_deductible(patient, visit.service_date, allowed))
        remaining = allowed - deductible
        patient_share = deductible
        if payer.kind == "medicare":
            patient_share += adjust("PR", "2", _money(remaining * MEDICARE_COINSURANCE))
            payable = allowed - patient_share
            paid = payable - adjust("CO", "253", _money(payable * MEDICARE_SEQUESTRATION))
            return paid, adjustments
        if payer.kind == "medicaid":
            if line.procedure.is_em:
                patient_share += adjust("PR", "3", min(MEDICAID_EM_COPAY, remaining))
        elif line.procedure.is_em and not patient.high_deductible:
            copay = COMMERCIAL_COPAY_SPECIALIST if visit.provider.department.specialist else COMMERCIAL_COPAY_PRIMARY
            patient_share += adjust("PR", "3", min(copay, remaining))
        else:
            patient_share += adjust("PR", "2", _money(remaining * COMMERCIAL_COINSURANCE))
        return allowed - patient_share, adjustments

    def _denial_event(
        self,
        visit: Visit,
        denied: dict[int, tuple[RootCause, DenialReason]],
        settled: dict[int, tuple[Decimal, list[Event]]],
    ) -> Event:
        lines = []
        for line in visit.lines:
            billed = line.procedure.charge
            if line.number in denied:
                _, reason = denied[line.number]
                paid = ZERO
                adjustments = [{"group_code": reason.group, "reason_code": reason.carc, "amount": f"{billed:.2f}"}]
                remarks = list(reason.rarcs)
            else:
                paid, adjustments = settled[line.number]
                remarks = []
            lines.append(
                {
                    "line_number": line.number,
                    "procedure_code": line.procedure.code,
                    "modifiers": line.modifiers,
                    "diagnosis_codes": line.diagnoses,
                    "billed_amount": f"{billed:.2f}",
                    "paid_amount": f"{paid:.2f}",
                    "adjustments": adjustments,
                    "remark_codes": remarks,
                }
            )
        payer = visit.patient.payer
        return {
            "event_type": "claim.denied",
            "schema_version": 1,
            "source": "clearinghouse",
            "claim_id": visit.claim_id,
            "encounter_id": visit.encounter_id,
            "patient_ref": visit.patient.mrn,
            "payer": {"id": payer.id, "name": payer.name},
            "rendering_provider": {
                "npi": visit.provider.npi,
                "name": visit.provider.name,
                "department": visit.provider.department.name,
            },
            "service_date": visit.service_date.isoformat(),
            "lines": lines,
        }

    # --- feedback reaching providers ---

    def _deliver_feedback(self, until: datetime | None) -> None:
        """Apply denials that arrived before `until` (all when None), in arrival order, as the engine would."""
        while self.notices and (until is None or self.notices[0][0] < until):
            arrived_at, _, notice = heapq.heappop(self.notices)
            key = (notice.npi, notice.root_cause, notice.procedure_code)
            track = self.patterns.setdefault(key, PatternTrack())
            if notice.case in track.cases:
                continue
            track.cases.add(notice.case)
            insort(track.service_dates, notice.service_date)
            if track.feedback_at is None and _window_holds(track.service_dates):
                track.feedback_at = arrived_at
                provider = self.providers_by_npi[notice.npi]
                if notice.root_cause in DOCUMENTATION_ROOT_CAUSES:
                    provider.feedback_at.setdefault(notice.root_cause, arrived_at)
                self._maybe_acknowledge(provider, notice, arrived_at, track)

    def _maybe_acknowledge(
        self, provider: Provider, notice: DenialNotice, feedback_at: datetime, track: PatternTrack
    ) -> None:
        """Billing-only patterns are answered by the billing team; clinician ones mostly by the provider."""
        rng = self.feedback_rng
        clinician = notice.root_cause in DOCUMENTATION_ROOT_CAUSES
        if rng.random() >= (provider.ack_probability if clinician else self.config.billing_ack_rate):
            return
        track.acknowledged = True
        self.acknowledgements += 1
        day = feedback_at.date() + timedelta(days=rng.randint(*ACK_DELAY_DAYS))
        acknowledged_at = _at(day, rng.randint(14 * 60, 22 * 60))
        by_provider = clinician and rng.random() >= TEAM_ACK_SHARE
        team = "revenue-cycle-coding" if clinician else "revenue-cycle-billing"
        disputed = clinician and not provider.learner and rng.random() < PERSISTENT_DISPUTE_SHARE
        self._emit(
            "a",
            acknowledged_at,
            lambda: {
                "event_type": "feedback.acknowledged",
                "schema_version": 1,
                "source": "notify-service",
                "notification_id": None,
                "pattern_key": {
                    "provider_npi": provider.npi,
                    "root_cause": notice.root_cause.value,
                    "procedure_code": notice.procedure_code,
                },
                "acknowledged_by": {"type": "provider", "id": provider.npi}
                if by_provider
                else {"type": "team", "id": team},
                "response": "disputed" if disputed else "accepted",
                "comment": None,
            },
        )


def _window_holds(service_dates: list[date]) -> bool:
    window = timedelta(days=PATTERN_WINDOW_DAYS)
    need = PATTERN_THRESHOLD
    return any(
        service_dates[index + need - 1] - service_dates[index] <= window
        for index in range(len(service_dates) - need + 1)
    )


def _documentation_targets(root_cause: RootCause, lines: list[ClaimLine]) -> list[ClaimLine]:
    """The lines a payer denies for a documentation gap."""
    if root_cause is RootCause.RECORDS_MISSING:
        return lines  # no record, no payment for anything on the claim
    if root_cause is RootCause.MEDICAL_NECESSITY_UNSUPPORTED:
        return [line for line in lines if line.procedure.payer_checks_indication]
    if root_cause is RootCause.DIAGNOSIS_MISMATCH:
        return lines[:1]  # the edit fires on the primary service
    # E/M level and bundling both deny the visit's E/M line (bundled into the procedure when modifier 25 fails).
    return [line for line in lines if line.procedure.is_em]


def _administrative_targets(root_cause: RootCause, lines: list[ClaimLine]) -> list[ClaimLine]:
    if root_cause is RootCause.AUTHORIZATION_MISSING:
        needing = [line for line in lines if not line.procedure.is_em and line.procedure.code != "36415"]
        return needing or lines
    if root_cause is RootCause.MODIFIER_OR_CODE_INVALID:
        return [line for line in lines if line.modifiers] or lines[-1:]
    return lines  # eligibility, timely filing, duplicates and incomplete claims stop the whole claim
