"""The FHIR adapter: claim responses and EOBs into claim.denied, signed notes into note.signed, broken input."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from engine.domain.codebook import CodeBook
from engine.ingest.common import IngestOptions, Outcome, ProviderDirectory, ProviderLookup
from engine.ingest.fhir import CARC_SYSTEM, FACT_SYSTEM, NPI_SYSTEM, RARC_SYSTEM, read_fhir
from schemas import ClaimDenied, NoteSigned, RootCause

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ingest"
OPTIONS = IngestOptions(providers=ProviderLookup(directory=ProviderDirectory.from_csv(FIXTURES / "providers.csv")))
CODE_BOOK = CodeBook.load()
CPT = "http://www.ama-assn.org/go/cpt"
DENIAL = {"coding": [{"code": "denialreason"}]}
CANARY = "Zebrafinch"  # a word that appears only in the notes' text


def fixture(name: str) -> Outcome:
    return read_fhir(FIXTURES / name, OPTIONS, name)


def problems(outcome: Outcome) -> list[str]:
    return [str(problem) for problem in outcome.problems]


def ingest(tmp_path: Path, content: Any, name: str = "input.json") -> Outcome:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return read_fhir(path, OPTIONS, name)


def eob(**changes: Any) -> dict[str, Any]:
    """A minimal EOB: one 99215 denied CO-150 with M25, rendered by a contained practitioner."""
    resource: dict[str, Any] = {
        "resourceType": "ExplanationOfBenefit",
        "id": "eob-1",
        "contained": [
            {"resourceType": "Practitioner", "id": "dr", "identifier": [{"system": NPI_SYSTEM, "value": "1234567893"}]}
        ],
        "status": "active",
        "type": {"coding": [{"code": "professional"}]},
        "use": "claim",
        "patient": {"identifier": {"value": "MRN-SECRET-5"}},
        "created": "2025-03-01T12:00:00Z",
        "insurer": {"identifier": {"value": "60054"}, "display": "Acme Health"},
        "provider": {"reference": "#dr"},
        "outcome": "complete",
        "insurance": [{"focal": True, "coverage": {"display": "PPO"}}],
        "claim": {"identifier": {"value": "CLM-1"}},
        "item": [
            {
                "sequence": 1,
                "productOrService": {"coding": [{"system": CPT, "code": "99215"}]},
                "servicedDate": "2025-02-03",
                "adjudication": [
                    {"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": 210.00}},
                    {
                        "category": {"coding": [{"code": "denialreason"}]},
                        "reason": {
                            "coding": [{"system": CARC_SYSTEM, "code": "150"}, {"system": RARC_SYSTEM, "code": "M25"}]
                        },
                        "amount": {"value": 210.00},
                    },
                ],
            }
        ],
    }
    resource.update(changes)
    return resource


def note(text: str = "", **changes: Any) -> dict[str, Any]:
    """A minimal signed DocumentReference with a plain-text attachment."""
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": "note-1",
        "status": "current",
        "docStatus": "final",
        "subject": {"identifier": {"value": "MRN-SECRET-5"}},
        "date": "2025-02-03T17:00:00Z",
        "authenticator": {"identifier": {"system": NPI_SYSTEM, "value": "1234567893"}},
        "context": {"encounter": [{"identifier": {"value": "ENC-1"}}], "period": {"start": "2025-02-03"}},
        "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}}],
    }
    resource.update(changes)
    return resource


# Claims


def test_an_eob_and_a_claim_response_in_a_bundle_become_two_claim_denied_events() -> None:
    outcome = fixture("claims_bundle.json")

    assert problems(outcome) == []
    assert [event.model_dump(mode="json") for event in outcome.events] == [
        {
            "event_type": "claim.denied",
            "schema_version": 1,
            "event_id": "8e27e17c-0bdc-5938-b3e2-2cee179a7a01",
            "occurred_at": "2025-02-16T09:00:00Z",
            "source": "fhir",
            "claim_id": "CLM-1001",  # the claim reference's identifier, not the payer's EOB identifier
            "encounter_id": "ENC-5001",  # the bundled Encounter's identifier
            "patient_ref": "MRN-77",  # the bundled Patient's MR identifier, not the member id
            "payer": {"id": "60054", "name": "Acme Health"},
            "rendering_provider": {"npi": "1234567893", "name": "Ana Rivera", "department": "Internal Medicine"},
            "service_date": "2025-01-06",
            "lines": [
                {
                    "line_number": 1,
                    "procedure_code": "99215",
                    "modifiers": [],
                    "diagnosis_codes": ["E11.9"],
                    "billed_amount": "210.00",
                    "paid_amount": "0.00",
                    "adjustments": [{"group_code": "CO", "reason_code": "150", "amount": "210.00"}],
                    "remark_codes": ["M25"],
                },
                {
                    "line_number": 2,
                    "procedure_code": "99214",
                    "modifiers": ["25"],
                    "diagnosis_codes": ["E11.9"],
                    "billed_amount": "180.00",
                    "paid_amount": "0.00",
                    # CARIN-style reason slice without an amount: it explains what the line was not paid
                    "adjustments": [{"group_code": "CO", "reason_code": "16", "amount": "180.00"}],
                    "remark_codes": ["N706"],  # from the process note the item points to
                },
                # item 3 only carries the deductible (PR-1): not a denial, not sent
            ],
        },
        {
            "event_type": "claim.denied",
            "schema_version": 1,
            "event_id": "af235195-d979-5fb3-b396-ee8ed782371b",
            "occurred_at": "2025-02-20T15:30:00Z",  # created, in UTC
            "source": "fhir",
            "claim_id": "CLM-2001",  # the contained Claim's identifier
            "encounter_id": "CLM-2001",
            "patient_ref": "pat-2",
            "payer": {"id": "60054", "name": "Acme Health"},
            # The Claim's primary care-team member has a payer id only: found in the provider directory
            "rendering_provider": {"npi": "1245319599", "name": "Chen, Li", "department": "Family Medicine"},
            "service_date": "2025-01-08",
            "lines": [
                {
                    "line_number": 1,
                    "procedure_code": "99213",  # from the Claim item the response answers
                    "modifiers": [],
                    "diagnosis_codes": ["R07.9"],
                    "billed_amount": "120.00",
                    "paid_amount": "0.00",
                    "adjustments": [{"group_code": "CO", "reason_code": "50", "amount": "120.00"}],
                    "remark_codes": ["N661"],
                },
                {
                    "line_number": 3,  # header-level CO-197 on a two-item claim: its own line
                    "procedure_code": "CLAIM",
                    "modifiers": [],
                    "diagnosis_codes": [],
                    "billed_amount": "180.00",
                    "paid_amount": "0.00",
                    "adjustments": [{"group_code": "CO", "reason_code": "197", "amount": "60.00"}],
                    "remark_codes": ["N54"],
                },
            ],
        },
    ]


@pytest.fixture(scope="module")
def root_causes() -> list[ClaimDenied]:
    outcome = fixture("eob_root_causes.ndjson")
    assert problems(outcome) == []
    return [event for event in outcome.events if isinstance(event, ClaimDenied)]


@pytest.mark.parametrize(
    ("claim_id", "root_cause"),
    [
        ("CLM-F01", RootCause.EM_LEVEL_UNSUPPORTED),
        ("CLM-F02", RootCause.RECORDS_MISSING),
        ("CLM-F03", RootCause.MEDICAL_NECESSITY_UNSUPPORTED),
        ("CLM-F04", RootCause.FREQUENCY_UNSUPPORTED),
        ("CLM-F05", RootCause.DIAGNOSIS_MISMATCH),
        ("CLM-F06", RootCause.BUNDLING),
        ("CLM-F07", RootCause.MODIFIER_OR_CODE_INVALID),
        ("CLM-F08", RootCause.PROVIDER_IDENTIFIER_MISSING),
        ("CLM-F09", RootCause.CLAIM_DATA_INCOMPLETE),
        ("CLM-F10", RootCause.AUTHORIZATION_MISSING),
        ("CLM-F11", RootCause.ELIGIBILITY),
        ("CLM-F12", RootCause.TIMELY_FILING),
        ("CLM-F13", RootCause.DUPLICATE),
        ("CLM-F14", RootCause.NOT_COVERED),
        ("CLM-F15", RootCause.UNCLASSIFIED),
    ],
)
def test_each_root_cause_family_reaches_the_code_book_from_an_eob(
    root_causes: list[ClaimDenied], claim_id: str, root_cause: RootCause
) -> None:
    (event,) = [event for event in root_causes if event.claim_id == claim_id]
    (line,) = event.lines

    assert [finding.root_cause for finding in CODE_BOOK.classify(line)] == [root_cause]


def test_a_group_code_coded_in_the_adjudication_is_kept_and_defaults_otherwise(tmp_path: Path) -> None:
    adjudication = [
        {"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": 300}},
        {"category": DENIAL, "reason": {"coding": [{"system": CARC_SYSTEM, "code": "2"}]}, "amount": {"value": 20}},
        {"category": DENIAL, "reason": {"coding": [{"system": CARC_SYSTEM, "code": "18"}]}, "amount": {"value": 80}},
        {
            "category": {"coding": [{"system": "https://x12.org/codes/claim-adjustment-group-codes", "code": "OA"}]},
            "reason": {"coding": [{"system": CARC_SYSTEM, "code": "23"}]},
            "amount": {"value": 200},
        },
    ]
    item = {**eob()["item"][0], "adjudication": adjudication}

    (event,) = ingest(tmp_path, eob(item=[item])).events

    assert isinstance(event, ClaimDenied)
    assert [(a.group_code, a.reason_code) for a in event.lines[0].adjustments] == [
        ("PR", "2"),
        ("CO", "18"),
        ("OA", "23"),
    ]


def test_a_claim_response_with_only_cost_sharing_yields_nothing(tmp_path: Path) -> None:
    item = {**eob()["item"][0]}
    item["adjudication"] = [
        {"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": 210}},
        {
            "category": {"coding": [{"code": "deductible"}]},
            "reason": {"coding": [{"system": CARC_SYSTEM, "code": "1"}]},
            "amount": {"value": 60},
        },
    ]

    outcome = ingest(tmp_path, eob(item=[item]))

    assert (outcome.events, outcome.problems, outcome.skipped) == ([], [], 1)


# Notes


def test_signed_notes_become_note_signed_events_with_documentation_facts() -> None:
    outcome = fixture("notes.ndjson")

    assert problems(outcome) == []
    assert outcome.skipped == 1  # the preliminary DocumentReference is not signed
    events = [event.model_dump(mode="json") for event in outcome.events]
    assert [
        (e["note_id"], e["encounter_id"], e["patient_ref"], e["author"]["npi"], e["note_type"]) for e in events
    ] == [
        ("doc-9001", "ENC-5001", "MRN-77", "1234567893", "progress_note"),
        ("doc-9002", "ENC-5002", "MRN-78", "1234567893", "progress_note"),
        ("comp-9004", "ENC-5003", "MRN-79", "1245319599", "consult_note"),
    ]
    assert [(e["service_date"], e["signed_at"], e["occurred_at"]) for e in events] == [
        ("2025-01-06", "2025-01-06T18:00:00Z", "2025-01-06T18:00:00Z"),
        ("2025-01-07", "2025-01-07T20:15:00Z", "2025-01-07T20:15:00Z"),  # +01:00 in the source
        ("2025-01-08", "2025-01-08T17:30:00Z", "2025-01-08T17:30:00Z"),  # the legal attester's time
    ]
    assert [e["documentation"] for e in events] == [
        {  # structured facts from contained Observations win over the text ("30 minutes", "low")
            "procedure_codes": ["99215"],
            "diagnosis_codes": ["E11.9"],
            "total_time_minutes": 45,
            "mdm_level": "high",
            "medical_necessity": True,
            "elements": ["hpi", "exam", "assessment_plan"],
        },
        {  # read from the text/plain attachment
            "procedure_codes": ["99214"],
            "diagnosis_codes": [],
            "total_time_minutes": 41,
            "mdm_level": "moderate",
            "medical_necessity": None,
            "elements": [],
        },
        {  # from the section narrative: "low to moderate" states no level
            "procedure_codes": ["99204"],
            "diagnosis_codes": [],
            "total_time_minutes": 50,
            "mdm_level": None,
            "medical_necessity": None,
            "elements": [],
        },
    ]
    assert [e["event_id"] for e in events] == [
        "af0a3da9-0b95-5a05-b735-97be4651bc94",
        "d56cff02-aea6-546d-a7ef-9ad3fe10b083",
        "04769765-d5f9-53a7-82c6-93a939357b15",
    ]


def test_note_text_never_reaches_the_events() -> None:
    outcome = fixture("notes.ndjson")

    serialized = "\n".join(event.model_dump_json() for event in outcome.events)
    assert outcome.events and CANARY not in serialized and "metformin" not in serialized


def test_an_amended_note_is_a_new_event(tmp_path: Path) -> None:
    first = ingest(tmp_path, note("Total time: 30 minutes")).events
    amended = ingest(tmp_path, note("Total time: 45 minutes", docStatus="amended", date="2025-02-04T08:00:00Z")).events

    assert first[0].event_id != amended[0].event_id
    assert isinstance(amended[0], NoteSigned) and amended[0].documentation.total_time_minutes == 45


# Broken input


def test_invalid_json_is_one_problem_with_its_position(tmp_path: Path) -> None:
    outcome = ingest(tmp_path, '{"resourceType": "ExplanationOfBenefit", "id": }')

    assert problems(outcome) == ["input.json: line 1 column 48: not valid JSON (Expecting value)"]


def test_a_bad_ndjson_line_does_not_stop_the_others(tmp_path: Path) -> None:
    lines = [json.dumps(eob(id="a")), '{"resourceType": "ExplanationOfBenefit", "id": "b"', json.dumps(eob(id="c"))]

    outcome = ingest(tmp_path, "\n".join(lines) + "\n", name="eobs.ndjson")

    assert len(outcome.events) == 2
    assert problems(outcome) == ["eobs.ndjson: line 2 column 51: not valid JSON (Expecting ',' delimiter)"]


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        (
            {"resourceType": "Patient", "id": "p"},
            "input.json: $: a Patient alone is not converted; expected one of ClaimResponse, ExplanationOfBenefit, "
            "DocumentReference, Composition (or a Bundle)",
        ),
        (
            {"resourceType": "Basic", "id": "b"},
            "input.json: $: this resourceType is not read here; expected one of ClaimResponse, ExplanationOfBenefit, "
            "DocumentReference, Composition (or a Bundle)",
        ),
        (
            [1, 2],
            "input.json: $: not a JSON object",
        ),
    ],
)
def test_the_wrong_resource_type_is_refused(tmp_path: Path, resource: Any, message: str) -> None:
    outcome = ingest(tmp_path, resource)

    assert (outcome.events, problems(outcome)) == ([], [message])


def test_a_bad_amount_is_reported_by_json_path_without_its_value(tmp_path: Path) -> None:
    bad = eob()
    bad["item"][0]["adjudication"][0]["amount"]["value"] = "two hundred"

    outcome = ingest(tmp_path, bad)

    assert problems(outcome) == [
        "input.json: $.item[0].adjudication[0].amount.value: not a valid ExplanationOfBenefit: "
        "Value error, Decimal value string does not match spec regex."
    ]


def test_one_bad_bundle_entry_does_not_stop_the_others(tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": eob(id="good")}, {"resource": eob(id="bad", created="yesterday")}, {"fullUrl": "x"}],
    }

    outcome = ingest(tmp_path, bundle)

    assert [event.event_id for event in outcome.events] == [ingest(tmp_path, eob(id="good")).events[0].event_id]
    assert problems(outcome) == [
        "input.json: $.entry[2]: a Bundle entry without a resource object",
        "input.json: $.entry[1].resource.created: not a valid ExplanationOfBenefit: "
        "Value error, DateTime value string does not match spec regex.",
    ]


@pytest.mark.parametrize(
    ("resource", "location", "message"),
    [
        (
            eob(
                contained=[
                    {
                        "resourceType": "Practitioner",
                        "id": "dr",
                        "identifier": [{"system": NPI_SYSTEM, "value": "1234567890"}],
                    }
                ]
            ),
            "$",
            "the provider's NPI is not valid (10 digits with a correct check digit)",
        ),
        (eob(contained=None, provider={"display": "Unknown Clinic"}), "$", "no NPI for the provider"),
        (
            eob(created=None),
            "$.created",
            "not a valid ExplanationOfBenefit: Value for the field 'created' is required.",
        ),
        (
            eob(item=[{key: value for key, value in eob()["item"][0].items() if key != "servicedDate"}]),
            "$.item[0]",
            "no service date (servicedDate/servicedPeriod or billablePeriod)",
        ),
        (
            {
                "resourceType": "ClaimResponse",
                "status": "active",
                "type": {"coding": [{"code": "professional"}]},
                "use": "claim",
                "patient": {"reference": "Patient/p"},
                "created": "2025-03-01",
                "insurer": {"display": "Acme"},
                "outcome": "complete",
                "request": {"reference": "Claim/not-here"},
                "item": [{"itemSequence": 1, "adjudication": eob()["item"][0]["adjudication"]}],
            },
            "$.item[0]",
            "the Claim item this answers is not in the input",
        ),
        (note(context={"period": {"start": "2025-02-03"}}), "$.context.encounter", "no encounter"),
        (
            note(
                contained=[
                    {
                        "resourceType": "Observation",
                        "id": "mdm",
                        "status": "final",
                        "code": {"coding": [{"system": FACT_SYSTEM, "code": "mdm-level"}]},
                        "valueString": "extreme",
                    }
                ]
            ),
            "$.contained[0]",
            "mdm-level must be one of straightforward, low, moderate, high",
        ),
    ],
)
def test_a_resource_that_cannot_become_an_event_is_reported_and_skipped(
    tmp_path: Path, resource: dict[str, Any], location: str, message: str
) -> None:
    outcome = ingest(tmp_path, {key: value for key, value in resource.items() if value is not None})

    assert outcome.events == []
    (problem,) = outcome.problems
    assert problem.location == location
    assert problem.message.startswith(message)
    assert "SECRET" not in str(problem) and "extreme" not in str(problem)


def test_a_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    outcome = read_fhir(tmp_path / "absent.json", OPTIONS, "absent.json")

    assert problems(outcome) == ["absent.json: file: cannot read the file (No such file or directory)"]
