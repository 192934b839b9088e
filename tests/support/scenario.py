"""The shipped example scenario: one quarter-and-a-bit of a small clinic that exercises every rule.

`engine/examples/scenario.jsonl` is this scenario written out (a test checks they agree). Who does what:
- RIVERA (Internal Medicine, 99215, unsupported E/M level): opens, never acknowledges (reminder, then
  level-1 unacknowledged), keeps recurring after feedback (recurring, level 1 and level 2 recurrence),
  a late denial for a visit before feedback (not post-feedback), a note that fails the check (pre-bill alert).
- CHEN and OKAFOR (Internal Medicine, 99214, unsupported E/M level): with RIVERA, three providers of one
  department on one root cause: a systemic level-2 escalation.
- PATEL (Family Medicine, 99213, records missing): acknowledges, signs three compliant notes, stays quiet:
  resolved; a later denial starts a new episode.
- NGUYEN (Orthopedics, 27447, medical necessity): three expensive lines: level-2 amount at risk.
- BROOKS (Family Medicine, 99213, eligibility): administrative, so billing hears about it, clinicians never.
- Resolution on evidence: CHEN, OKAFOR and NGUYEN sign no later notes: quiet without visits to judge by, so
  dormant (billing told once); RIVERA's episode too, and a late RIVERA denial continues it as a recurrence.
  PATEL's three compliant March notes are 45 days old by May 1: resolved on evidence.
- GARCIA (Cardiology, 93000, diagnosis not documented): disputes the feedback (review for the CDI team,
  reminders paused), nobody answers for 14 days (escalation to the team's lead), then the review upholds it
  (the clinician is told why; the reminder clock restarts).
- WALSH (Cardiology, 99214, bundling): disputes; the review withdraws the feedback: closed as withdrawn.
- KIM (Family Medicine, 99213): three notes whose MDM supports a higher level: an undercoding pattern.
- RIVERA answers the pre-bill alert "no change needed" (not_applicable naming the alert).
Plus: a paid line with only cost sharing (no case), a resubmission denied again (same case), a note that
arrives after its denial, a duplicate event, and five kinds of bad input for the DLQ.
"""

from __future__ import annotations

import json

from engine.domain import ids
from tests.support.events import ack, claim, note, npi, review

RIVERA = npi("123456789")
CHEN = npi("198765432")
OKAFOR = npi("176543210")
PATEL = npi("154321098")
NGUYEN = npi("143210987")
BROOKS = npi("132109876")
GARCIA = npi("121098765")
WALSH = npi("110987654")
KIM = npi("109876543")

BAD_LINES = [
    "this is not json",
    json.dumps({"event_type": "claim.paid", "schema_version": 1, "event_id": "bad-2"}),
    json.dumps(
        {
            **claim("bad-3", occurred_at="2026-02-02T00:00:00Z", service_date="2026-01-02", provider=RIVERA),
            "rendering_provider": {"npi": "1234567890", "name": "X", "department": "Internal Medicine"},
        }
    ),
    json.dumps(claim("bad-4", occurred_at="2099-01-01T00:00:00Z", service_date="2026-01-02", provider=RIVERA)),
    json.dumps(
        {
            **claim("bad-5", occurred_at="2026-02-02T00:00:00Z", service_date="2026-01-02", provider=RIVERA),
            "schema_version": 2,
        }
    ),
]


def scenario_events() -> list[dict[str, object]]:
    em = [("CO", "150", "185.00")]
    events: list[dict[str, object]] = []
    add = events.append
    # RIVERA: three unsupported 99215 visits in January, denied in February: the pattern opens on Feb 16.
    add(
        claim(
            "d-1001",
            occurred_at="2026-02-02T09:00:00Z",
            service_date="2026-01-05",
            provider=RIVERA,
            adjustments=em,
            amount="185.00",
        )
    )
    add(
        note(
            "n-1002",
            signed_at="2026-01-12T17:00:00Z",
            service_date="2026-01-12",
            provider=RIVERA,
            encounter_id="ENC-d-1002",
            mdm_level="moderate",
            total_time_minutes=25,
        )
    )
    add(
        claim(
            "d-1002",
            occurred_at="2026-02-09T09:00:00Z",
            service_date="2026-01-12",
            provider=RIVERA,
            adjustments=em,
            amount="185.00",
        )
    )
    add(
        claim(
            "d-1003",
            occurred_at="2026-02-16T09:00:00Z",
            service_date="2026-01-19",
            provider=RIVERA,
            adjustments=em,
            amount="185.00",
        )
    )
    # A note that arrives after its denial: it links to the case.
    add(
        note(
            "n-1001",
            signed_at="2026-01-05T18:00:00Z",
            service_date="2026-01-05",
            provider=RIVERA,
            encounter_id="ENC-d-1001",
            mdm_level="moderate",
            occurred_at="2026-02-17T08:00:00Z",
        )
    )
    # The same claim line denied again after resubmission: the same case, not a fourth.
    add(
        claim(
            "d-1003r",
            occurred_at="2026-02-18T09:00:00Z",
            service_date="2026-01-19",
            provider=RIVERA,
            claim_id="CLM-d-1003",
            encounter_id="ENC-d-1003",
            adjustments=em,
            amount="185.00",
        )
    )
    # The same event delivered twice.
    add(
        claim(
            "d-1002",
            occurred_at="2026-02-09T09:00:00Z",
            service_date="2026-01-12",
            provider=RIVERA,
            adjustments=em,
            amount="185.00",
        )
    )
    # CHEN and OKAFOR: the same gap on 99214 in the same department.
    for provider, prefix in ((CHEN, "c"), (OKAFOR, "o")):
        for i, (sd, occ) in enumerate(
            (("2026-01-06", "2026-02-10"), ("2026-01-13", "2026-02-17"), ("2026-01-20", "2026-02-24")), start=1
        ):
            add(
                claim(
                    f"d-{prefix}{i}",
                    occurred_at=f"{occ}T10:00:00Z",
                    service_date=sd,
                    provider=provider,
                    procedure_code="99214",
                    adjustments=[("CO", "150", "130.00")],
                    amount="130.00",
                    patient_ref=f"MRN-{prefix}{i}",
                )
            )
    # PATEL: records missing on 99213, acknowledged, then compliant notes and quiet.
    for i, (sd, occ) in enumerate(
        (("2026-01-07", "2026-02-03"), ("2026-01-14", "2026-02-11"), ("2026-01-21", "2026-02-19")), start=1
    ):
        add(
            claim(
                f"d-p{i}",
                occurred_at=f"{occ}T11:00:00Z",
                service_date=sd,
                provider=PATEL,
                department="Family Medicine",
                procedure_code="99213",
                adjustments=[("CO", "16", "90.00")],
                remarks=["M127"],
                amount="90.00",
            )
        )
    add(
        ack(
            "a-p1",
            # After the feedback as the engine dates it: the third denial arrives behind others dated Feb 24,
            # so the pattern opens on Feb 24 (an acknowledgement cannot come before the feedback it answers).
            occurred_at="2026-02-25T08:00:00Z",
            provider=PATEL,
            root_cause="records_missing",
            procedure_code="99213",
        )
    )
    # NGUYEN: three knee replacements without documented necessity: over the amount threshold at opening.
    for i, (sd, occ) in enumerate(
        (("2026-01-08", "2026-02-12"), ("2026-01-22", "2026-02-20"), ("2026-02-05", "2026-03-02")), start=1
    ):
        add(
            claim(
                f"d-n{i}",
                occurred_at=f"{occ}T12:00:00Z",
                service_date=sd,
                provider=NGUYEN,
                department="Orthopedics",
                procedure_code="27447",
                adjustments=[("CO", "50", "4100.00")],
                remarks=["N661"],
                amount="4100.00",
            )
        )
    # BROOKS: eligibility denials: an administrative pattern, billing only.
    for i, (sd, occ) in enumerate(
        (("2026-01-09", "2026-02-13"), ("2026-01-16", "2026-02-20"), ("2026-01-23", "2026-02-27")), start=1
    ):
        add(
            claim(
                f"d-b{i}",
                occurred_at=f"{occ}T13:00:00Z",
                service_date=sd,
                provider=BROOKS,
                department="Family Medicine",
                procedure_code="99213",
                adjustments=[("CO", "27", "90.00")],
                remarks=["N30"],
                amount="90.00",
            )
        )
    # A paid line with only deductible and contractual write-off: not a denial, no case.
    add(
        claim(
            "d-paid",
            occurred_at="2026-02-25T09:00:00Z",
            service_date="2026-02-01",
            provider=BROOKS,
            department="Family Medicine",
            procedure_code="99213",
            adjustments=[("PR", "1", "40.00"), ("CO", "45", "20.00")],
            remarks=[],
            amount="150.00",
        )
    )
    # RIVERA keeps the gap after feedback (visits from Feb 20 on), and a late denial for an earlier visit.
    add(
        claim(
            "d-1004",
            occurred_at="2026-03-20T09:00:00Z",
            service_date="2026-02-20",
            provider=RIVERA,
            adjustments=em,
            amount="185.00",
        )
    )
    add(
        claim(
            "d-1005",
            occurred_at="2026-03-22T09:00:00Z",
            service_date="2026-02-10",
            provider=RIVERA,
            adjustments=em,
            amount="185.00",
        )
    )
    add(
        claim(
            "d-1006",
            occurred_at="2026-03-25T09:00:00Z",
            service_date="2026-02-27",
            provider=RIVERA,
            adjustments=em,
            amount="185.00",
        )
    )
    # A note that fails the E/M check for the open pattern: pre-bill alert (once per note).
    add(
        note(
            "n-1010",
            signed_at="2026-03-26T17:00:00Z",
            service_date="2026-03-26",
            provider=RIVERA,
            mdm_level="moderate",
            total_time_minutes=25,
        )
    )
    add(
        note(
            "n-1010b",
            signed_at="2026-03-26T17:30:00Z",
            service_date="2026-03-26",
            provider=RIVERA,
            note_id="NOTE-n-1010",
            encounter_id="ENC-n-1010",
            mdm_level="moderate",
            total_time_minutes=25,
        )
    )
    add(
        claim(
            "d-1007",
            occurred_at="2026-04-06T09:00:00Z",
            service_date="2026-03-05",
            provider=RIVERA,
            adjustments=em,
            amount="185.00",
        )
    )
    add(
        claim(
            "d-1008",
            occurred_at="2026-04-09T09:00:00Z",
            service_date="2026-03-10",
            provider=RIVERA,
            adjustments=em,
            amount="185.00",
        )
    )
    # PATEL documents promptly after feedback: three compliant notes (signed within three days).
    for i, day in enumerate(("2026-03-03", "2026-03-10", "2026-03-17"), start=1):
        add(
            note(
                f"n-p{i}",
                signed_at=f"{day}T16:00:00Z",
                service_date=day,
                provider=PATEL,
                department="Family Medicine",
                procedure_codes=["99213"],
                mdm_level="low",
            )
        )
    # RIVERA answers the pre-bill alert on NOTE-n-1010: no change needed (it does not acknowledge the pattern).
    rivera_pattern = ids.pattern_id(RIVERA, "em_level_unsupported", "99215", 1)
    add(
        ack(
            "a-r1",
            occurred_at="2026-04-10T09:00:00Z",
            notification_id=ids.notification_id(rivera_pattern, "pre_bill_alert", "clinician", "NOTE-n-1010"),
            response="not_applicable",
            by=RIVERA,
        )
    )
    # GARCIA and WALSH (Cardiology): patterns opened in early March, both disputed.
    for provider, prefix, code, cause in (
        (GARCIA, "g", "93000", ("CO", "11", "40.00")),
        (WALSH, "w", "99214", ("CO", "97", "130.00")),
    ):
        for i, (sd, occ) in enumerate(
            (("2026-03-09", "2026-04-13"), ("2026-03-16", "2026-04-20"), ("2026-03-23", "2026-04-27")), start=1
        ):
            add(
                claim(
                    f"d-{prefix}{i}",
                    occurred_at=f"{occ}T14:00:00Z",
                    service_date=sd,
                    provider=provider,
                    department="Cardiology",
                    procedure_code=code,
                    adjustments=[cause],
                    remarks=[] if prefix == "g" else ["M15"],
                    amount=cause[2],
                )
            )
    add(
        ack(
            "a-g1",
            occurred_at="2026-04-28T10:00:00Z",
            provider=GARCIA,
            root_cause="diagnosis_mismatch",
            procedure_code="93000",
            response="disputed",
            comment="The diagnosis is on the order; the ECG note links to it.",
        )
    )
    add(
        ack(
            "a-w1",
            occurred_at="2026-04-29T10:00:00Z",
            provider=WALSH,
            root_cause="bundling",
            procedure_code="99214",
            response="disputed",
        )
    )
    add(
        review(
            "r-w1",
            occurred_at="2026-05-01T10:00:00Z",
            provider=WALSH,
            root_cause="bundling",
            procedure_code="99214",
            outcome="withdrawn",
            comment="The payer applied the edit in error; appeals are filed.",
        )
    )
    # KIM: three 99213 visits whose documented MDM (moderate) supports 99214: undercoding, no denial needed.
    for i, day in enumerate(("2026-05-04", "2026-05-11", "2026-05-18"), start=1):
        add(
            note(
                f"n-k{i}",
                signed_at=f"{day}T18:00:00Z",
                service_date=day,
                provider=KIM,
                department="Family Medicine",
                procedure_codes=["99213"],
                mdm_level="moderate",
            )
        )
    add(
        review(
            "r-g1",
            occurred_at="2026-05-19T10:00:00Z",
            provider=GARCIA,
            root_cause="diagnosis_mismatch",
            procedure_code="93000",
            outcome="upheld",
            comment="The claim carried no diagnosis for the ECG; please document it in the note.",
        )
    )
    # Months later: the clock passes PATEL's quiet period (resolution), then PATEL has one more denial.
    add(
        note(
            "n-late",
            signed_at="2026-06-01T16:00:00Z",
            service_date="2026-06-01",
            provider=BROOKS,
            department="Family Medicine",
            procedure_codes=["99213"],
            mdm_level="low",
        )
    )
    add(
        claim(
            "d-p9",
            occurred_at="2026-06-15T11:00:00Z",
            service_date="2026-05-20",
            provider=PATEL,
            department="Family Medicine",
            procedure_code="99213",
            adjustments=[("CO", "16", "90.00")],
            remarks=["M127"],
            amount="90.00",
        )
    )
    # RIVERA's dormant episode: a denial for a visit after the feedback continues it as a recurrence.
    add(
        claim(
            "d-1009",
            occurred_at="2026-06-15T12:00:00Z",
            service_date="2026-05-18",
            provider=RIVERA,
            adjustments=em,
            amount="185.00",
        )
    )
    return events


def scenario_lines() -> list[str]:
    lines = [json.dumps(event, separators=(",", ":")) for event in scenario_events()]
    # Bad input sits among the good, where a real feed would have it.
    return lines[:5] + BAD_LINES + lines[5:]
