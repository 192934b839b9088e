"""The 835 adapter on the three public sample remittances in shared/samples/x12 (see SOURCES.md there)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.ingest.common import DirectoryEntry, IngestOptions, ProviderDirectory, ProviderLookup
from engine.ingest.x12 import read_x12

SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples" / "x12"
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared/samples/x12 is not next to the repository")

DEFAULT_NPI = "1234567893"


def events_of(name: str, options: IngestOptions | None = None) -> list[dict[str, Any]]:
    outcome = read_x12(SAMPLES / name, options or IngestOptions(), name)
    assert [str(problem) for problem in outcome.problems] == []
    return [event.model_dump(mode="json") for event in outcome.events]


def line(
    number: int, code: str, billed: str, adjustments: list[tuple[str, str, str]], remarks: list[str], **extra: Any
):
    return {
        "line_number": number,
        "procedure_code": code,
        "modifiers": extra.get("modifiers", []),
        "diagnosis_codes": [],
        "billed_amount": billed,
        "paid_amount": "0.00",
        "adjustments": [{"group_code": g, "reason_code": r, "amount": a} for g, r, a in adjustments],
        "remark_codes": remarks,
    }


def test_linuxforhealth_paid_claims_with_cost_sharing_and_contractual_adjustments_yield_no_event() -> None:
    outcome = read_x12(SAMPLES / "linuxforhealth-managed-care.835", IngestOptions(), "lfh")

    assert outcome.events == []
    assert outcome.problems == []
    assert outcome.skipped == 2  # both claims were read, and neither has a denial


def test_pyx12_denied_claim_yields_one_event_with_every_line_and_its_remarks() -> None:
    options = IngestOptions(providers=ProviderLookup(default_npi=DEFAULT_NPI))

    assert events_of("pyx12-835_mult_loops.835", options) == [
        {
            "event_type": "claim.denied",
            "schema_version": 1,
            "event_id": "aa6e6587-dc94-54b0-8175-8aed4311e692",
            "occurred_at": "2013-09-01T00:00:00Z",  # DTM*405, not the older BPR16
            "source": "x12-835",
            "claim_id": "2005555A",
            "encounter_id": "2005555A",
            "patient_ref": "00001612",
            "payer": {"id": "1386000134", "name": "PAYER"},  # TRN03: N1*PR carries no id
            "rendering_provider": {"npi": DEFAULT_NPI, "name": "PAYEE", "department": "Unassigned"},
            "service_date": "2003-10-30",  # the earliest DTM*150 of the lines
            "lines": [
                line(1, "T1005", "500.04", [("CO", "16", "500.04")], ["N14"]),
                line(2, "T1005", "127.80", [("OA", "A7", "127.80")], ["N14"]),
                line(3, "T1005", "287.55", [("OA", "A7", "287.55")], ["N14"]),
            ],
        }
    ]


def test_pyx12_rendering_provider_without_npi_is_found_in_the_directory_by_its_payer_id() -> None:
    directory = ProviderDirectory([DirectoryEntry(npi="1245319599", department="Home Care", provider_id="44452736")])

    (event,) = events_of("pyx12-835_mult_loops.835", IngestOptions(providers=ProviderLookup(directory=directory)))

    assert event["rendering_provider"] == {"npi": "1245319599", "name": "PAYEE", "department": "Home Care"}


def test_pyx12_rendering_provider_without_npi_and_no_default_is_a_problem_not_a_guess() -> None:
    outcome = read_x12(SAMPLES / "pyx12-835_mult_loops.835", IngestOptions(), "pyx12.835")

    assert outcome.events == []
    assert [str(problem) for problem in outcome.problems] == [
        "pyx12.835: segment 17 (NM1): no rendering provider NPI (no NM1*82 or payee with qualifier XX, no provider "
        "directory match, and no default NPI configured); the claim at segment 15 (CLP) was skipped"
    ]


def test_emedny_timely_filing_and_unclassified_denials_yield_two_events_and_skip_the_paid_claim() -> None:
    payer = {"id": "1000000000", "name": "NYSDOH"}
    provider = {"npi": "9999999995", "name": "MAJOR MEDICAL PROVIDER", "department": "Unassigned"}  # the payee
    common = {
        "event_type": "claim.denied",
        "schema_version": 1,
        "occurred_at": "2010-01-01T00:00:00Z",
        "source": "x12-835",
        "claim_id": "PATIENT ACCOUNT NUMBER",
        "encounter_id": "PATIENT ACCOUNT NUMBER",
        "payer": payer,
        "rendering_provider": provider,
        "service_date": "2010-01-01",
    }

    assert events_of("edi835parser-emedny.835") == [
        {
            **common,
            "event_id": "3b2265d1-5f30-5d65-bdc7-7a051a8a3376",
            "patient_ref": "LL88888L",
            "lines": [
                line(1, "V2020", "12.00", [("CO", "29", "12.00")], []),
                line(2, "V2103", "22.00", [("CO", "29", "22.00")], []),
            ],
        },
        {
            **common,
            "event_id": "a030bf6a-472f-54c2-80bd-f47e2d2920c7",
            "patient_ref": "LL77777L",
            "lines": [
                line(3, "V2700", "2.75", [("CO", "251", "2.75")], ["N206"], modifiers=["RB"]),
                line(4, "S0580", "20.00", [("CO", "251", "20.00")], ["N206"]),
            ],
        },
    ]


def test_ingesting_a_sample_twice_yields_the_same_event_ids() -> None:
    first = [event["event_id"] for event in events_of("edi835parser-emedny.835")]
    second = [event["event_id"] for event in events_of("edi835parser-emedny.835")]

    assert first == second
    assert len(set(first)) == 2  # same CLP01, different CLP07: different events
