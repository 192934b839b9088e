"""The 835 adapter on our own remittances: every root cause family, the mapping decisions, and broken input."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.domain.codebook import CodeBook
from engine.ingest.common import DEFAULT_DEPARTMENT, IngestOptions, Outcome, ProviderDirectory, ProviderLookup
from engine.ingest.x12 import read_x12
from schemas import ClaimDenied, RootCause

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ingest"
DIRECTORY = ProviderDirectory.from_csv(FIXTURES / "providers.csv")
OPTIONS = IngestOptions(providers=ProviderLookup(directory=DIRECTORY))
CODE_BOOK = CodeBook.load()
MEMBER_ID = "MEM-SECRET-1"


def ingest(text: str, tmp_path: Path, options: IngestOptions = OPTIONS) -> Outcome:
    path = tmp_path / "remittance.835"
    path.write_text(text, encoding="utf-8")
    return read_x12(path, options, "remittance.835")


def claim(claim_id: str = "CLM-1", *, svc: str = "SVC*HC:99215*210.00*0.00**1", cas: str = "CAS*CO*150*210.00",
          dtm: str = "DTM*472*20250106", rendering: str = "NM1*82*1*RIVERA*ANA****XX*1234567893",
          extra: tuple[str, ...] = ()) -> list[str]:  # fmt: skip
    """One claim for a 99215 denied CO-150 with M25, unless told otherwise."""
    return [
        f"CLP*{claim_id}*1*210.00*0.00**12*PCN-{claim_id}*11",
        f"NM1*QC*1*PATIENT*TEST****MI*{MEMBER_ID}",
        rendering,
        *extra,
        svc,
        dtm,
        cas,
        "LQ*HE*M25",
    ]


HEADER = (
    "BPR*I*0*C*NON************20250311",
    "TRN*1*EFT1*1600054000",
    "DTM*405*20250310",
    "N1*PR*ACME HEALTH*XV*60054",
    "N1*PE*DOCLOOP CLINIC*XX*1876543210",
    "LX*1",
)


def transaction(*claims: list[str], st: str = "0001", set_id: str = "835", header: tuple[str, ...] = HEADER,
                se_count: int | None = None) -> list[str]:  # fmt: skip
    body = [*header, *(segment for one in claims for segment in one)]
    return [f"ST*{set_id}*{st}", *body, f"SE*{len(body) + 2 if se_count is None else se_count}*{st}"]


def interchange(*transactions: list[str], control: str = "000000301", version: str = "005010X221A1") -> str:
    isa = f"ISA*00*          *00*          *ZZ*ACMEHEALTH     *ZZ*DOCLOOPCLINIC  *250310*0900*^*00501*{control}*0*T*:"
    segments = [
        isa,
        f"GS*HP*ACMEHEALTH*DOCLOOPCLINIC*20250310*0900*1*X*{version}",
        *(segment for one in transactions for segment in one),
        f"GE*{len(transactions)}*1",
        f"IEA*1*{control}",
    ]
    return "".join(f"{segment}~\n" for segment in segments)


@pytest.fixture(scope="module")
def root_causes() -> dict[str, ClaimDenied]:
    outcome = read_x12(FIXTURES / "root_causes.835", OPTIONS, "root_causes.835")
    assert outcome.problems == []
    events = {}
    for event in outcome.events:
        assert isinstance(event, ClaimDenied)
        events[event.claim_id] = event
    return events


# Each root cause family, from the 835 through the code book


@pytest.mark.parametrize(
    ("claim_id", "line_number", "procedure_code", "root_cause"),
    [
        ("CLM-EM", 1, "99215", RootCause.EM_LEVEL_UNSUPPORTED),
        ("CLM-REC", 1, "99214", RootCause.RECORDS_MISSING),
        ("CLM-NEC", 1, "99213", RootCause.MEDICAL_NECESSITY_UNSUPPORTED),
        ("CLM-FREQ", 1, "97110", RootCause.FREQUENCY_UNSUPPORTED),
        ("CLM-DX", 1, "99214", RootCause.DIAGNOSIS_MISMATCH),
        ("CLM-BUN", 2, "99213", RootCause.BUNDLING),
        ("CLM-MOD", 1, "99214", RootCause.MODIFIER_OR_CODE_INVALID),
        ("CLM-NPI", 1, "99214", RootCause.PROVIDER_IDENTIFIER_MISSING),
        ("CLM-INC", 1, "99214", RootCause.CLAIM_DATA_INCOMPLETE),
        ("CLM-AUTH", 1, "72148", RootCause.AUTHORIZATION_MISSING),
        ("CLM-ELIG", 3, "CLAIM", RootCause.ELIGIBILITY),
        ("CLM-TF", 1, "99214", RootCause.TIMELY_FILING),
        ("CLM-DUP", 1, "99214", RootCause.DUPLICATE),
        ("CLM-NC", 1, "0042T", RootCause.NOT_COVERED),
        ("CLM-UNK", 1, "99214", RootCause.UNCLASSIFIED),
        ("CLM-DOWN", 1, "99215", RootCause.EM_LEVEL_UNSUPPORTED),
        ("CLM-ONE", 1, "99214", RootCause.RECORDS_MISSING),
    ],
)
def test_each_root_cause_family_reaches_the_code_book_on_the_right_line(
    root_causes: dict[str, ClaimDenied], claim_id: str, line_number: int, procedure_code: str, root_cause: RootCause
) -> None:
    (line,) = root_causes[claim_id].lines
    assert (line.line_number, line.procedure_code) == (line_number, procedure_code)
    assert [finding.root_cause for finding in CODE_BOOK.classify(line)] == [root_cause]


def test_paid_claims_and_reversals_yield_no_event(root_causes: dict[str, ClaimDenied]) -> None:
    outcome = read_x12(FIXTURES / "root_causes.835", OPTIONS, "root_causes.835")

    assert "CLM-PAID" not in root_causes  # only PR-1, PR-2 and CO-45
    assert "CLM-REV" not in root_causes  # CLP02 = 22 undoes an earlier payment
    assert outcome.skipped == 2
    assert len(outcome.events) == 17


def test_a_denied_claim_carries_the_remittance_facts(root_causes: dict[str, ClaimDenied]) -> None:
    event = root_causes["CLM-EM"]

    assert event.model_dump(mode="json", exclude={"lines", "event_id"}) == {
        "event_type": "claim.denied",
        "schema_version": 1,
        "occurred_at": "2025-03-10T00:00:00Z",
        "source": "x12-835",
        "claim_id": "CLM-EM",
        "encounter_id": "CLM-EM",
        "patient_ref": "MEM0001",
        "payer": {"id": "60054", "name": "ACME HEALTH"},
        "rendering_provider": {"npi": "1234567893", "name": "ANA RIVERA", "department": "Internal Medicine"},
        "service_date": "2025-01-06",
    }
    assert event.lines[0].model_dump(mode="json") == {
        "line_number": 1,
        "procedure_code": "99215",
        "modifiers": [],
        "diagnosis_codes": [],
        "billed_amount": "210.00",
        "paid_amount": "0.00",
        "adjustments": [{"group_code": "CO", "reason_code": "150", "amount": "210.00"}],
        "remark_codes": ["M25"],
    }


def test_only_denied_lines_are_sent_numbered_by_their_place_in_the_claim(root_causes: dict[str, ClaimDenied]) -> None:
    (line,) = root_causes["CLM-BUN"].lines

    assert (line.line_number, line.procedure_code, line.modifiers) == (2, "99213", ["25"])


def test_every_adjustment_of_a_denied_line_is_kept_with_its_group(root_causes: dict[str, ClaimDenied]) -> None:
    (line,) = root_causes["CLM-NEC"].lines

    assert [(a.group_code, a.reason_code, a.amount) for a in line.adjustments] == [
        ("CO", "50", Decimal("100.00")),
        ("PR", "2", Decimal("20.00")),
    ]


def test_the_submitted_procedure_is_reported_when_the_payer_adjudicated_another(
    root_causes: dict[str, ClaimDenied],
) -> None:
    (line,) = root_causes["CLM-DOWN"].lines  # SVC01 99214 as paid, SVC06 99215 as submitted

    assert (line.procedure_code, line.billed_amount, line.paid_amount) == (
        "99215",
        Decimal("210.00"),
        Decimal("130.00"),
    )


def test_claim_level_adjustment_of_a_one_line_claim_joins_that_line(root_causes: dict[str, ClaimDenied]) -> None:
    (line,) = root_causes["CLM-ONE"].lines

    assert [(a.group_code, a.reason_code) for a in line.adjustments] == [("CO", "252")]
    assert line.remark_codes == ["N706"]  # MOA


def test_claim_level_denial_of_a_multi_line_claim_goes_on_one_extra_claim_line(
    root_causes: dict[str, ClaimDenied],
) -> None:
    event = root_causes["CLM-ELIG"]

    assert [line.model_dump(mode="json") for line in event.lines] == [
        {
            "line_number": 3,
            "procedure_code": "CLAIM",
            "modifiers": [],
            "diagnosis_codes": [],
            "billed_amount": "300.00",
            "paid_amount": "0.00",
            "adjustments": [{"group_code": "CO", "reason_code": "27", "amount": "300.00"}],
            "remark_codes": [],
        }
    ]
    assert event.service_date == date(2025, 1, 20)  # DTM*232: the lines carry no date


def test_claim_level_remark_codes_apply_to_the_lines(root_causes: dict[str, ClaimDenied]) -> None:
    (line,) = root_causes["CLM-INC"].lines

    assert line.remark_codes == ["MA130"]


def test_rendering_provider_comes_from_the_npi_the_directory_or_the_payee(root_causes: dict[str, ClaimDenied]) -> None:
    by_npi = root_causes["CLM-EM"].rendering_provider
    by_payer_id = root_causes["CLM-MOD"].rendering_provider  # NM1*82 with qualifier PC, found in the directory
    payee = root_causes["CLM-TF"].rendering_provider  # no NM1*82: the payee rendered the service

    assert (by_npi.npi, by_npi.department) == ("1234567893", "Internal Medicine")
    assert (by_payer_id.npi, by_payer_id.name, by_payer_id.department) == ("1245319599", "LI CHEN", "Family Medicine")
    assert (payee.npi, payee.name, payee.department) == ("1876543210", "DOCLOOP CLINIC", "Billing Office")


def test_department_falls_back_to_the_configured_default(tmp_path: Path) -> None:
    options = IngestOptions(providers=ProviderLookup(default_department="Outpatient"))

    (event,) = ingest(interchange(transaction(claim())), tmp_path, options).events

    assert isinstance(event, ClaimDenied)
    assert event.rendering_provider.department == "Outpatient"
    assert IngestOptions().providers.default_department == DEFAULT_DEPARTMENT


def test_claim_and_encounter_ids_can_come_from_the_payer_claim_number_or_a_claim_ref(tmp_path: Path) -> None:
    text = interchange(transaction(claim("ACCT-1", extra=("REF*EA*ENC-77",)), claim("ACCT-2")))
    options = IngestOptions(providers=OPTIONS.providers, claim_id_from="clp07", encounter_id_from="ref:ea")

    events = ingest(text, tmp_path, options).events

    assert [(e.claim_id, e.encounter_id) for e in events if isinstance(e, ClaimDenied)] == [
        ("PCN-ACCT-1", "ENC-77"),
        ("PCN-ACCT-2", "ACCT-2"),  # no REF*EA: CLP01
    ]


def test_event_ids_are_stable_per_interchange_claim_and_payer_claim_number(tmp_path: Path) -> None:
    once = [e.event_id for e in ingest(interchange(transaction(claim("A"), claim("B"))), tmp_path).events]
    again = [e.event_id for e in ingest(interchange(transaction(claim("A"), claim("B"))), tmp_path).events]
    other_interchange = [
        e.event_id
        for e in ingest(interchange(transaction(claim("A"), claim("B")), control="000000302"), tmp_path).events
    ]
    repeated = [e.event_id for e in ingest(interchange(transaction(claim("A"), claim("A"))), tmp_path).events]

    assert once == again
    assert len(set(once)) == 2
    assert set(other_interchange).isdisjoint(once)
    assert len(set(repeated)) == 2 and repeated[0] == once[0]


@pytest.mark.parametrize(
    ("header", "occurred_at"),
    [
        (HEADER, datetime(2025, 3, 10, tzinfo=UTC)),  # DTM*405
        (tuple(s for s in HEADER if not s.startswith("DTM*405")), datetime(2025, 3, 11, tzinfo=UTC)),  # BPR16
        (tuple(s for s in HEADER if not s.startswith(("DTM*405", "BPR"))), datetime(2025, 3, 10, 9, 0, tzinfo=UTC)),
    ],
)
def test_occurred_at_is_the_production_date_else_the_payment_date_else_the_interchange_time(
    tmp_path: Path, header: tuple[str, ...], occurred_at: datetime
) -> None:
    (event,) = ingest(interchange(transaction(claim(), header=header)), tmp_path).events

    assert event.occurred_at == occurred_at


# Broken input: clear problems, no half claims, the rest still comes through


def problems(outcome: Outcome) -> list[str]:
    return [str(problem) for problem in outcome.problems]


def test_a_bad_amount_skips_only_its_claim(tmp_path: Path) -> None:
    text = interchange(transaction(claim("GOOD-1"), claim("BAD", svc="SVC*HC:99215*2I0.00*0.00**1"), claim("GOOD-2")))

    outcome = ingest(text, tmp_path)

    assert [e.claim_id for e in outcome.events if isinstance(e, ClaimDenied)] == ["GOOD-1", "GOOD-2"]
    assert problems(outcome) == [
        "remittance.835: segment 20 (SVC, SVC02): not a decimal amount; the claim at segment 17 (CLP) was skipped"
    ]


@pytest.mark.parametrize(
    ("broken", "where", "message"),
    [
        ({"cas": "CAS*XX*150*210.00"}, "segment 15 (CAS, CAS01)", "not a claim adjustment group code"),
        ({"cas": "CAS*CO*150"}, "segment 15 (CAS, CAS03)", "an adjustment reason code without an amount"),
        ({"cas": "CAS*CO*150*210.001"}, "segment 15 (CAS, CAS03)", "more than two decimal places"),
        ({"dtm": "DTM*472*20251301"}, "segment 14 (DTM, DTM02)", "not a valid date (CCYYMMDD)"),
        ({"svc": "SVC*HC*210.00*0.00**1"}, "segment 13 (SVC, SVC01)", "no procedure code in the composite"),
        ({"svc": "SVC*HC:99215*210.00"}, "segment 13 (SVC, SVC03)", "a required amount is missing"),
        ({"extra": ("12X*JUNK",)}, "segment 13 (?)", "not a valid segment identifier"),
        ({"rendering": "NM1*82*1*RIVERA*ANA****XX*1234567890"}, "segment 12 (NM1, NM109)", "not a valid NPI"),
    ],
)
def test_a_malformed_claim_is_reported_by_segment_and_skipped_whole(
    tmp_path: Path, broken: dict[str, Any], where: str, message: str
) -> None:
    outcome = ingest(interchange(transaction(claim("BROKEN", **broken), claim("GOOD"))), tmp_path)

    assert [e.claim_id for e in outcome.events if isinstance(e, ClaimDenied)] == ["GOOD"]
    (problem,) = outcome.problems
    assert problem.location == where
    assert problem.message.startswith(message)
    assert problem.message.endswith("the claim at segment 10 (CLP) was skipped")


def test_problems_never_repeat_patient_identifiers_or_values(tmp_path: Path) -> None:
    text = interchange(transaction(claim("ACCT-SECRET-9", svc="SVC*HC:99215*SECRET*0.00**1")))

    outcome = ingest(text, tmp_path)

    assert outcome.events == []
    assert all(secret not in " ".join(problems(outcome)) for secret in ("SECRET", MEMBER_ID, "RIVERA"))


def test_a_truncated_file_yields_nothing_from_the_cut_transaction_and_says_so(tmp_path: Path) -> None:
    text = interchange(transaction(claim("A"), claim("B")))
    cut = text[: text.index("CLP*B") + 20]  # inside the second claim's CLP segment

    outcome = ingest(cut, tmp_path)

    assert outcome.events == []  # claim A is whole, but its transaction is not: nothing from it is trusted
    assert problems(outcome) == [
        "remittance.835: end of file (after segment 16): the interchange has no IEA trailer (is the file cut off?)",
        "remittance.835: end of file (after segment 16): a functional group has no GE trailer",
        "remittance.835: end of file (after segment 16): the file ends inside a segment (no segment terminator)",
        "remittance.835: transaction 0001 at segment 3 (ST): the transaction has no SE trailer (is the file cut off?); "
        "none of its claims were read",
    ]


def test_one_broken_transaction_does_not_stop_the_next(tmp_path: Path) -> None:
    text = interchange(
        transaction(claim("IN-BAD-TX"), st="0001", se_count=99),
        transaction(claim("IN-GOOD-TX"), st="0002"),
    )

    outcome = ingest(text, tmp_path)

    assert [e.claim_id for e in outcome.events if isinstance(e, ClaimDenied)] == ["IN-GOOD-TX"]
    assert problems(outcome) == [
        "remittance.835: transaction 0001 at segment 3 (ST): SE01 does not match the number of segments in the "
        "transaction; none of its claims were read"
    ]


def test_a_transaction_without_a_payer_is_skipped(tmp_path: Path) -> None:
    header = tuple(segment for segment in HEADER if not segment.startswith("N1*PR"))

    outcome = ingest(interchange(transaction(claim(), header=header)), tmp_path)

    assert outcome.events == []
    assert problems(outcome) == [
        "remittance.835: transaction 0001 at segment 3 (ST): the remittance names no payer (N1*PR); "
        "none of its claims were read"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (interchange(transaction(claim(), set_id="837")), "the transaction set is not an 835 remittance"),
        (interchange(transaction(claim()), version="004010X091A1"), "the implementation is not 005010X221A1 (GS08)"),
    ],
)
def test_other_transaction_sets_are_refused(tmp_path: Path, text: str, message: str) -> None:
    outcome = ingest(text, tmp_path)

    assert outcome.events == []
    assert [p.message for p in outcome.problems] == [f"{message}; none of its claims were read"]


@pytest.mark.parametrize("content", ["", '{"resourceType": "Bundle"}', "ISA*00*short~"])
def test_a_file_that_is_not_x12_is_one_clear_problem(tmp_path: Path, content: str) -> None:
    outcome = ingest(content, tmp_path)

    assert problems(outcome) == [
        "remittance.835: segment 1 (ISA): not an X12 interchange: expected a 106-character ISA segment "
        "(version 00401 or 00501) first"
    ]


def test_a_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    outcome = read_x12(tmp_path / "absent.835", OPTIONS, "absent.835")

    assert problems(outcome) == ["absent.835: file: cannot read the file (No such file or directory)"]


def test_every_interchange_of_a_file_is_read(tmp_path: Path) -> None:
    text = interchange(transaction(claim("A")), control="000000401") + interchange(
        transaction(claim("B")), control="000000402"
    )

    outcome = ingest(text, tmp_path)

    assert [e.claim_id for e in outcome.events if isinstance(e, ClaimDenied)] == ["A", "B"]
    assert outcome.problems == []


def test_a_mangled_second_interchange_keeps_the_first(tmp_path: Path) -> None:
    text = interchange(transaction(claim("A"))) + "ISA*00*TOO*SHORT~\nGS*HP~\n"

    outcome = ingest(text, tmp_path)

    assert [e.claim_id for e in outcome.events if isinstance(e, ClaimDenied)] == ["A"]
    assert problems(outcome) == [
        "remittance.835: segment 20 (ISA): an ISA without its 16 elements; the rest was not read"
    ]
