"""What the simulated hospital is made of: departments, codes, fee schedules, payers and denial reasons.

Figures marked "denial-codes.md" come from the shared domain notes; everything else is a simulator assumption,
listed with its reasoning in docs/simulator.md. Tuning the simulated world means editing this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from schemas import RootCause

# The clinician-facing root causes a note's facts can explain; everything else a payer says is administrative.
DOCUMENTATION_ROOT_CAUSES: tuple[RootCause, ...] = (
    RootCause.EM_LEVEL_UNSUPPORTED,
    RootCause.RECORDS_MISSING,
    RootCause.MEDICAL_NECESSITY_UNSUPPORTED,
    RootCause.DIAGNOSIS_MISMATCH,
    RootCause.BUNDLING,
)

# The engine's defaults for opening a pattern (DESIGN.md): the simulated notification service mirrors them.
PATTERN_THRESHOLD = 3
PATTERN_WINDOW_DAYS = 60

# Signing more than this many days after the visit fails the engine's records check (DESIGN.md).
RECORDS_SIGNING_DAYS = 3

ProcedureKind = Literal["office_em", "ed_em", "procedure"]


@dataclass(frozen=True)
class Procedure:
    code: str
    description: str
    kind: ProcedureKind
    medicare_rate: Decimal  # national non-facility allowed amount, approximate
    charge: Decimal  # the group's chargemaster price, what a claim line bills
    mdm_level: str | None = None  # E/M only: the medical decision making the level calls for
    minutes: int | None = None  # office E/M only: the total time that supports the level instead
    modifier_25_with_em: bool = False  # minor procedure with a global period: a same-day E/M needs modifier 25
    payer_checks_indication: bool = False  # payers review this line for medical necessity

    @property
    def is_em(self) -> bool:
        return self.kind != "procedure"


def _usd(amount: str) -> Decimal:
    return Decimal(amount).quantize(Decimal("0.01"))


# E/M rates for 99213/99214/99215 from denial-codes.md; 99212 and the rest are approximations of the
# 2025-2026 national fee schedules. Charges are about twice Medicare, a typical chargemaster markup.
PROCEDURES: dict[str, Procedure] = {
    procedure.code: procedure
    for procedure in (
        Procedure("99212", "office visit, established", "office_em", _usd("55"), _usd("120"), "straightforward", 10),
        Procedure("99213", "office visit, established", "office_em", _usd("90"), _usd("195"), "low", 20),
        Procedure("99214", "office visit, established", "office_em", _usd("130"), _usd("285"), "moderate", 30),
        Procedure("99215", "office visit, established", "office_em", _usd("185"), _usd("405"), "high", 40),
        Procedure("99283", "emergency department visit", "ed_em", _usd("75"), _usd("170"), "low"),
        Procedure("99284", "emergency department visit", "ed_em", _usd("125"), _usd("275"), "moderate"),
        Procedure("99285", "emergency department visit", "ed_em", _usd("180"), _usd("395"), "high"),
        Procedure(
            "20610",
            "injection, major joint",
            "procedure",
            _usd("65"),
            _usd("150"),
            modifier_25_with_em=True,
            payer_checks_indication=True,
        ),
        Procedure(
            "11102",
            "tangential skin biopsy",
            "procedure",
            _usd("100"),
            _usd("220"),
            modifier_25_with_em=True,
            payer_checks_indication=True,
        ),
        Procedure("93000", "electrocardiogram", "procedure", _usd("17"), _usd("45"), payer_checks_indication=True),
        Procedure("36415", "venipuncture", "procedure", _usd("3"), _usd("15")),
    )
}

OFFICE_EM_LADDER: tuple[str, ...] = ("99212", "99213", "99214", "99215")
MDM_LADDER: tuple[str, ...] = ("straightforward", "low", "moderate", "high")

# A claim for a visit without a documented diagnosis still needs one: the coder falls back on an
# unspecified code, which the payer's edits find inconsistent with the service (CARC 11).
FALLBACK_DIAGNOSIS = "R69"

PROCEDURE_DIAGNOSES: dict[str, tuple[str, ...]] = {
    "20610": ("M17.11", "M17.12", "M75.41", "M19.011"),
    "11102": ("L82.1", "D48.5"),
    "93000": ("R00.2", "I48.91", "R07.9", "I10"),
}


@dataclass(frozen=True)
class Department:
    name: str
    share: int  # providers per 20 in the group
    emergency: bool  # shifts every day of the week, ED E/M codes
    specialist: bool  # commercial plans charge the specialist copay
    em_mix: dict[str, float]
    procedure_rates: dict[str, float]  # chance a visit includes the procedure
    procedure_only_share: float  # of visits with a modifier-25 procedure, how many have no E/M
    diagnoses: tuple[str, ...]
    habit_weights: dict[RootCause, float]  # which documentation habits are common in this department


# The office E/M mix follows the post-2021 national picture (99214 most billed, then 99213), shifted per specialty.
DEPARTMENTS: tuple[Department, ...] = (
    Department(
        name="Internal Medicine",
        share=5,
        emergency=False,
        specialist=False,
        em_mix={"99212": 0.04, "99213": 0.34, "99214": 0.50, "99215": 0.12},
        procedure_rates={"36415": 0.22, "93000": 0.08, "20610": 0.03, "11102": 0.02},
        procedure_only_share=0.0,
        diagnoses=("E11.9", "I10", "E78.5", "J44.9", "E03.9", "K21.9", "F32.A"),
        habit_weights={
            RootCause.EM_LEVEL_UNSUPPORTED: 3,
            RootCause.DIAGNOSIS_MISMATCH: 2,
            RootCause.RECORDS_MISSING: 2,
            RootCause.MEDICAL_NECESSITY_UNSUPPORTED: 1,
            RootCause.BUNDLING: 0.5,
        },
    ),
    Department(
        name="Family Medicine",
        share=5,
        emergency=False,
        specialist=False,
        em_mix={"99212": 0.06, "99213": 0.42, "99214": 0.44, "99215": 0.08},
        procedure_rates={"36415": 0.18, "11102": 0.07, "20610": 0.06, "93000": 0.05},
        procedure_only_share=0.0,
        diagnoses=("J06.9", "J02.9", "E11.9", "I10", "M54.50", "E78.5"),
        habit_weights={
            RootCause.EM_LEVEL_UNSUPPORTED: 2,
            RootCause.BUNDLING: 2.5,
            RootCause.RECORDS_MISSING: 2,
            RootCause.DIAGNOSIS_MISMATCH: 2,
            RootCause.MEDICAL_NECESSITY_UNSUPPORTED: 1,
        },
    ),
    Department(
        name="Cardiology",
        share=3,
        emergency=False,
        specialist=True,
        em_mix={"99212": 0.03, "99213": 0.30, "99214": 0.50, "99215": 0.17},
        procedure_rates={"93000": 0.45, "36415": 0.18},
        procedure_only_share=0.0,
        diagnoses=("I25.10", "I48.91", "I50.9", "R00.2", "I10", "R07.9"),
        habit_weights={
            RootCause.MEDICAL_NECESSITY_UNSUPPORTED: 3,
            RootCause.EM_LEVEL_UNSUPPORTED: 3,
            RootCause.RECORDS_MISSING: 1,
            RootCause.DIAGNOSIS_MISMATCH: 1,
        },
    ),
    Department(
        name="Orthopedics",
        share=3,
        emergency=False,
        specialist=True,
        em_mix={"99212": 0.08, "99213": 0.45, "99214": 0.40, "99215": 0.07},
        procedure_rates={"20610": 0.35},
        procedure_only_share=0.15,
        diagnoses=("M17.11", "M17.12", "M25.561", "M75.41", "M19.011", "M54.50"),
        habit_weights={
            RootCause.BUNDLING: 4,
            RootCause.EM_LEVEL_UNSUPPORTED: 2,
            RootCause.RECORDS_MISSING: 1,
            RootCause.MEDICAL_NECESSITY_UNSUPPORTED: 1,
        },
    ),
    # ED visits use 99283-99285. The engine's E/M level and modifier-25 checks cover office codes only,
    # so the simulator gives ED providers no E/M level or bundling habits the engine could not judge.
    Department(
        name="Emergency Medicine",
        share=4,
        emergency=True,
        specialist=True,
        em_mix={"99283": 0.30, "99284": 0.45, "99285": 0.25},
        procedure_rates={"36415": 0.40, "93000": 0.30},
        procedure_only_share=0.0,
        diagnoses=("R07.9", "R10.9", "S93.401A", "J18.9", "R51.9", "N39.0"),
        habit_weights={
            RootCause.RECORDS_MISSING: 3,
            RootCause.DIAGNOSIS_MISMATCH: 2,
            RootCause.MEDICAL_NECESSITY_UNSUPPORTED: 2,
        },
    ),
)

# How often a note has each gap without any habit (every provider slips now and then), and with one.
BASE_GAP_RATE: dict[RootCause, float] = {
    RootCause.EM_LEVEL_UNSUPPORTED: 0.03,
    RootCause.RECORDS_MISSING: 0.03,
    RootCause.MEDICAL_NECESSITY_UNSUPPORTED: 0.03,
    RootCause.DIAGNOSIS_MISMATCH: 0.01,
    RootCause.BUNDLING: 0.05,
}
HABIT_GAP_RATE = (0.30, 0.55)
# A learner's gap rate for a root cause after feedback on it, as a fraction of the rate before.
LEARNED_GAP_FACTOR = 0.1
TWO_HABITS_SHARE = 0.3


@dataclass(frozen=True)
class DenialReason:
    carc: str
    rarcs: tuple[str, ...] = ()
    group: str = "CO"

    @property
    def label(self) -> str:
        return "+".join((f"{self.group}-{self.carc}", *self.rarcs))


Weighted = tuple[tuple[DenialReason, float], ...]

DOCUMENTATION_REASONS: dict[RootCause, Weighted] = {
    RootCause.EM_LEVEL_UNSUPPORTED: ((DenialReason("150", ("M25",)), 1.0),),
    RootCause.RECORDS_MISSING: (
        (DenialReason("16", ("M127",)), 0.45),
        (DenialReason("252", ("N706",)), 0.35),
        (DenialReason("226", ("M127",)), 0.20),
    ),
    RootCause.MEDICAL_NECESSITY_UNSUPPORTED: (
        (DenialReason("50", ("N661",)), 0.65),
        (DenialReason("50", ("N115",)), 0.15),
        (DenialReason("167", ("N569",)), 0.20),
    ),
    RootCause.DIAGNOSIS_MISMATCH: ((DenialReason("11", ("M76",)), 0.6), (DenialReason("11"), 0.4)),
    RootCause.BUNDLING: ((DenialReason("97", ("M15",)), 0.65), (DenialReason("234", ("M80",)), 0.35)),
}

# Relative chance that a payer's review catches a documentation gap. The simulator scales all of them by one
# calibrated factor so that documentation denials come out at the requested share (docs/simulator.md).
DETECTION_WEIGHT: dict[RootCause, float] = {
    RootCause.EM_LEVEL_UNSUPPORTED: 0.5,
    RootCause.RECORDS_MISSING: 0.5,
    RootCause.MEDICAL_NECESSITY_UNSUPPORTED: 0.6,
    RootCause.DIAGNOSIS_MISMATCH: 0.5,
    RootCause.BUNDLING: 0.6,
}

# Administrative denials: which root cause, and how it reads on the remittance. Eligibility and
# authorization are the largest shares (denial-codes.md).
ADMINISTRATIVE_MIX: dict[RootCause, float] = {
    RootCause.ELIGIBILITY: 0.34,
    RootCause.AUTHORIZATION_MISSING: 0.26,
    RootCause.CLAIM_DATA_INCOMPLETE: 0.12,
    RootCause.MODIFIER_OR_CODE_INVALID: 0.11,
    RootCause.DUPLICATE: 0.10,
    RootCause.TIMELY_FILING: 0.04,
    RootCause.PROVIDER_IDENTIFIER_MISSING: 0.03,
}

ADMINISTRATIVE_REASONS: dict[RootCause, Weighted] = {
    RootCause.ELIGIBILITY: (
        (DenialReason("27", ("N30",)), 0.45),
        (DenialReason("31", ("N30",)), 0.30),
        (DenialReason("22"), 0.25),
    ),
    RootCause.AUTHORIZATION_MISSING: (
        (DenialReason("197"), 0.55),
        (DenialReason("15", ("N54",)), 0.30),
        (DenialReason("288"), 0.15),
    ),
    RootCause.CLAIM_DATA_INCOMPLETE: ((DenialReason("16", ("MA130",)), 1.0),),
    RootCause.MODIFIER_OR_CODE_INVALID: ((DenialReason("4"), 0.6), (DenialReason("4", ("M51",)), 0.4)),
    RootCause.DUPLICATE: ((DenialReason("18", ("M86",)), 1.0),),
    RootCause.TIMELY_FILING: ((DenialReason("29"), 1.0),),
    RootCause.PROVIDER_IDENTIFIER_MISSING: ((DenialReason("16", ("N290",)), 1.0),),
}

# Emergency care needs no prior authorization (EMTALA), so ED claims rarely meet that denial.
EMERGENCY_AUTHORIZATION_FACTOR = 0.1

PayerKind = Literal["medicare", "medicaid", "commercial"]


@dataclass(frozen=True)
class PayerProfile:
    id: str
    name: str
    kind: PayerKind
    rate_multiplier: Decimal  # allowed amount as a multiple of Medicare
    patient_share: float  # share of the group's patients with this coverage
    adjudication_days: tuple[int, int]  # submission to remittance, within 14-45 (denial-codes.md)
    remit_hour_utc: int  # the payer's daily 835 arrives at this hour
    administrative_weight: float  # relative propensity for administrative denials
    administrative_factors: dict[RootCause, float] = field(default_factory=dict)
    detection_factors: dict[RootCause, float] = field(default_factory=dict)


# Medicare cannot pay a clean electronic claim before day 14 (the payment floor), hence its earliest remits.
# Commercial multipliers lie within 1.1-1.6x Medicare (denial-codes.md); Medicaid pays about two thirds to
# three quarters of Medicare in published fee surveys.
PAYERS: tuple[PayerProfile, ...] = (
    PayerProfile(
        id="MCR01",
        name="Medicare Part B",
        kind="medicare",
        rate_multiplier=Decimal("1.00"),
        patient_share=0.35,
        adjudication_days=(14, 30),
        remit_hour_utc=11,
        administrative_weight=0.7,
        administrative_factors={RootCause.AUTHORIZATION_MISSING: 0.3},
        detection_factors={
            RootCause.EM_LEVEL_UNSUPPORTED: 1.3,
            RootCause.MEDICAL_NECESSITY_UNSUPPORTED: 1.3,
            RootCause.BUNDLING: 1.2,
        },
    ),
    PayerProfile(
        id="MCD01",
        name="State Medicaid",
        kind="medicaid",
        rate_multiplier=Decimal("0.70"),
        patient_share=0.18,
        adjudication_days=(20, 45),
        remit_hour_utc=13,
        administrative_weight=1.5,
        administrative_factors={RootCause.ELIGIBILITY: 1.8, RootCause.TIMELY_FILING: 1.5},
        detection_factors={
            RootCause.RECORDS_MISSING: 1.5,
            RootCause.EM_LEVEL_UNSUPPORTED: 0.8,
            RootCause.BUNDLING: 0.8,
        },
    ),
    PayerProfile(
        id="ACM01",
        name="Acme Health",
        kind="commercial",
        rate_multiplier=Decimal("1.25"),
        patient_share=0.20,
        adjudication_days=(15, 40),
        remit_hour_utc=14,
        administrative_weight=1.0,
        administrative_factors={RootCause.AUTHORIZATION_MISSING: 1.3},
        detection_factors={RootCause.BUNDLING: 1.3},
    ),
    PayerProfile(
        id="NWH01",
        name="Northwind Health Plan",
        kind="commercial",
        rate_multiplier=Decimal("1.45"),
        patient_share=0.15,
        adjudication_days=(15, 45),
        remit_hour_utc=15,
        administrative_weight=0.9,
        detection_factors={RootCause.EM_LEVEL_UNSUPPORTED: 1.2},
    ),
    PayerProfile(
        id="SUM01",
        name="Summit Care HMO",
        kind="commercial",
        rate_multiplier=Decimal("1.15"),
        patient_share=0.12,
        adjudication_days=(18, 45),
        remit_hour_utc=16,
        administrative_weight=1.2,
        administrative_factors={RootCause.AUTHORIZATION_MISSING: 1.8},
        detection_factors={RootCause.RECORDS_MISSING: 0.8},
    ),
)

# Patient cost sharing on paid lines (not denials: PR-1/2/3, CO-45, CO-253).
MEDICARE_PART_B_DEDUCTIBLE = Decimal("283.00")  # 2026, CMS
MEDICARE_COINSURANCE = Decimal("0.20")
MEDICARE_SEQUESTRATION = Decimal("0.02")
MEDICAID_EM_COPAY = Decimal("4.00")
COMMERCIAL_HIGH_DEDUCTIBLE = Decimal("1600.00")
COMMERCIAL_COINSURANCE = Decimal("0.20")
COMMERCIAL_COPAY_PRIMARY = Decimal("30.00")
COMMERCIAL_COPAY_SPECIALIST = Decimal("50.00")
COMMERCIAL_HIGH_DEDUCTIBLE_SHARE = 0.3

SURNAMES: tuple[str, ...] = (
    "Rivera",
    "Okafor",
    "Lindqvist",
    "Nakamura",
    "Haddad",
    "Moreau",
    "Castillo",
    "Brennan",
    "Kowalski",
    "Adeyemi",
    "Sato",
    "Whitfield",
    "Dubois",
    "Ferreira",
    "Grant",
    "Hoffman",
    "Iyer",
    "Jensen",
    "Kaur",
    "Larsen",
    "Mendez",
    "Novak",
    "Osei",
    "Petrov",
    "Quinn",
    "Romano",
    "Silva",
    "Tanaka",
    "Ueda",
    "Vargas",
    "Walsh",
    "Xu",
    "Yilmaz",
    "Zhou",
    "Abbott",
    "Bauer",
    "Chandra",
    "Delgado",
    "Eriksen",
    "Fischer",
    "Gallagher",
    "Horvat",
    "Ibrahim",
    "Jovanovic",
    "Keller",
    "Lopez",
    "Mbeki",
    "Nilsen",
    "Ortega",
    "Park",
)
INITIALS = "ABCDEFGHJKLMNPRSTVW"
ROLES: tuple[tuple[str, float], ...] = (("physician", 0.8), ("nurse_practitioner", 0.12), ("physician_assistant", 0.08))
