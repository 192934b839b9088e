"""FHIR R4 resources into ClaimDenied and NoteSigned events (models from `fhir.resources.R4B`).

Input: a file holding one JSON resource, a Bundle, or NDJSON (one resource per line; `.ndjson`/`.jsonl`, or any
file that is not one JSON document). Each resource is validated on its own, so one bad resource costs only itself.
Converted: ClaimResponse and ExplanationOfBenefit (to ClaimDenied), DocumentReference and Composition (to
NoteSigned). Read for context when they are in the same Bundle or NDJSON file, or contained: Patient, Practitioner,
PractitionerRole, Organization, Encounter, Claim. A lone resource of any other type is an error.

Claims (ClaimResponse, ExplanationOfBenefit)
- An adjustment is an adjudication whose `reason` has a coding in the CARC system; RARCs are codings in the RARC
  system in the same adjudication, or process notes (`item.noteNumber`) whose text is a RARC ("N706", "M25: ...").
  Header-level adjudications (and the RARCs in them) follow the rule for claim-level CAS in an 835 (see x12.py):
  with one item they join it, otherwise a denial among them goes on an extra line with procedure code "CLAIM".
  Process notes that no item points to are claim-level remarks, like MOA, and apply to every line.
- The group code is a coding in GROUP_CODE_SYSTEM (Docloop's convention: FHIR has no standard place for it) in the
  adjudication's category or reason; without one, CARC 1, 2 and 3 are PR (cost sharing), anything else CO.
- Amounts: category `submitted` is the billed amount (else `item.net`), `benefit` (else `paidtoprovider`) the paid
  amount (else 0.00). An adjustment without an amount (CARIN puts the reason in its own slice) takes what the line
  left unexplained: billed - paid - the other adjustments, on the first such adjustment of the line.
- ClaimResponse items name no procedure: the Claim they answer (`request`) must be contained or in the input.
- claim_id: the Claim reference (identifier, else the Claim's first identifier, else its id), else the resource's
  own identifier or id. encounter_id: the item's encounter, else the claim_id. occurred_at: `created`.
- Rendering provider: an EOB care-team member with role performing/rendering/primary, else `provider`;
  for a ClaimResponse the same on its Claim, else `requestor`. Its NPI is an identifier in the NPI system on the
  reference or on the Practitioner/PractitionerRole/Organization it points to; else the provider directory, then
  the default NPI.

Notes (DocumentReference with docStatus final/amended, Composition with status final/amended; others are skipped)
- signed_at: the latest legal/professional attester time (Composition), else `date`.
- author: authenticator (DocumentReference) or attester party (Composition), else the first author.
- encounter_id: `context.encounter` / `encounter`; service_date: `context.period.start` / `event.period.start`,
  else the Encounter's `period.start`.
- Documentation facts come from contained Observations coded in FACT_SYSTEM:
    total-time-minutes (valueInteger or valueQuantity in minutes), mdm-level (valueString or valueCodeableConcept:
    straightforward|low|moderate|high), medical-necessity (valueBoolean), element (valueString or code, e.g.
    separately_identifiable_em), procedure and diagnosis (valueCodeableConcept).
  Procedure codes are also read from `context.event` / `event.code` codings in CPT or HCPCS.
  Total time and MDM level that no Observation states are read from the note's plain text (text/plain attachments,
  or the Composition's section narrative) by `notetext`; unknown stays null. No text reaches the output.
- event_id: UUIDv5 of the resource type, id (or fullUrl), meta.versionId (or lastUpdated), and for notes the
  signing time, so a re-ingested file yields the same ids and an amended note a new one.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fhir.resources.R4B.claim import Claim
from fhir.resources.R4B.claimresponse import ClaimResponse
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.composition import Composition, CompositionSection
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.domainresource import DomainResource
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.explanationofbenefit import ExplanationOfBenefit
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.money import Money
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from engine.ingest.common import (
    IngestedEvent,
    IngestOptions,
    MoneyError,
    Outcome,
    Problem,
    ResolvedProvider,
    derive_event_id,
    money,
)
from engine.ingest.notetext import read_text_facts
from schemas import ClaimDenied, NoteSigned, npi_is_valid
from schemas.decoding import describe_validation_error

CARC_SYSTEM = "https://x12.org/codes/claim-adjustment-reason-codes"
RARC_SYSTEM = "https://x12.org/codes/remittance-advice-remark-codes"
GROUP_CODE_SYSTEM = "https://x12.org/codes/claim-adjustment-group-codes"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
FACT_SYSTEM = "urn:docloop:documentation-fact"
PROCEDURE_SYSTEMS = frozenset(
    {
        "http://www.ama-assn.org/go/cpt",
        "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
        "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    }
)
LOINC = "http://loinc.org"
NOTE_TYPES_BY_LOINC = {
    "11506-3": "progress_note",
    "34117-2": "history_and_physical",
    "11488-4": "consult_note",
    "18842-5": "discharge_summary",
    "28570-0": "procedure_note",
    "34111-5": "emergency_department_note",
}
RENDERING_ROLES = ("performing", "rendering", "primary")
MDM_LEVELS = ("straightforward", "low", "moderate", "high")

CLAIM_MODELS: dict[str, type[DomainResource]] = {
    "ClaimResponse": ClaimResponse,
    "ExplanationOfBenefit": ExplanationOfBenefit,
}
NOTE_MODELS: dict[str, type[DomainResource]] = {"DocumentReference": DocumentReference, "Composition": Composition}
CONTEXT_MODELS: dict[str, type[DomainResource]] = {
    "Patient": Patient,
    "Practitioner": Practitioner,
    "PractitionerRole": PractitionerRole,
    "Organization": Organization,
    "Encounter": Encounter,
    "Claim": Claim,
}
MODELS = CLAIM_MODELS | NOTE_MODELS | CONTEXT_MODELS
_CONVERTED = ", ".join([*CLAIM_MODELS, *NOTE_MODELS])
_RARC_NOTE = re.compile(r"^\s*(?:RARC\s*:?\s*)?([A-Z]{1,2}[0-9]{1,4})\s*(?:(?::|-)\s.*)?$", re.DOTALL)


class Unconvertible(Exception):
    """A resource cannot become an event; `path` is a JSON path, the message never quotes a value."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


@dataclass(frozen=True)
class _Entry:
    path: str
    full_url: str | None
    resource: DomainResource
    standalone: bool  # the whole file is this one resource


def read_fhir(path: Path, options: IngestOptions, name: str | None = None) -> Outcome:
    """Every event in one FHIR file, and a problem for each resource that could not be converted."""
    label = name or str(path)
    outcome = Outcome()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        outcome.problems.append(Problem(label, "file", f"cannot read the file ({error.strerror})"))
        return outcome
    except UnicodeDecodeError:
        outcome.problems.append(Problem(label, "file", "not UTF-8 text"))
        return outcome
    documents = _documents(text, path.suffix.lower(), label, outcome)
    entries = _entries(documents, label, outcome)
    index = _Index(entries)
    for entry in entries:
        kind = entry.resource.get_resource_type()
        if kind in CONTEXT_MODELS:
            if entry.standalone:
                message = f"a {kind} alone is not converted; expected one of {_CONVERTED} (or a Bundle)"
                outcome.problems.append(Problem(label, entry.path, message))
            continue
        try:
            event = _claim_event(entry, index, options) if kind in CLAIM_MODELS else _note_event(entry, index, options)
        except Unconvertible as error:
            outcome.problems.append(Problem(label, error.path, f"{error.message}; the {kind} was skipped"))
            continue
        if event is None:
            outcome.skipped += 1
        else:
            outcome.events.append(event)
    return outcome


# Reading: JSON, NDJSON and Bundles into validated resources


def _documents(text: str, suffix: str, label: str, outcome: Outcome) -> list[tuple[str, Any, bool]]:
    """(JSON path, parsed document, is-the-whole-file) for each JSON document in the file."""
    if suffix not in (".ndjson", ".jsonl"):
        try:
            return [("$", json.loads(text, parse_float=Decimal), True)]
        except json.JSONDecodeError as error:
            if error.msg != "Extra data":
                where = f"line {error.lineno} column {error.colno}"
                outcome.problems.append(Problem(label, where, f"not valid JSON ({error.msg})"))
                return []
    documents = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            documents.append((f"line {number}: $", json.loads(line, parse_float=Decimal), False))
        except json.JSONDecodeError as error:
            where = f"line {number} column {error.colno}"
            outcome.problems.append(Problem(label, where, f"not valid JSON ({error.msg})"))
    return documents


def _entries(documents: list[tuple[str, Any, bool]], label: str, outcome: Outcome) -> list[_Entry]:
    raw: list[tuple[str, str | None, Any, bool]] = []
    for path, document, whole in documents:
        if isinstance(document, dict) and document.get("resourceType") == "Bundle":
            bundle_entries = document.get("entry") or []
            if not isinstance(bundle_entries, list):
                outcome.problems.append(Problem(label, f"{path}.entry", "a Bundle's entry must be a list"))
                continue
            for number, item in enumerate(bundle_entries):
                where = f"{path}.entry[{number}]"
                if not isinstance(item, dict) or not isinstance(item.get("resource"), dict):
                    outcome.problems.append(Problem(label, where, "a Bundle entry without a resource object"))
                    continue
                full_url = item.get("fullUrl") if isinstance(item.get("fullUrl"), str) else None
                raw.append((f"{where}.resource", full_url, item["resource"], False))
        else:
            raw.append((path, None, document, whole))
    entries = []
    for path, full_url, document, whole in raw:
        if not isinstance(document, dict):
            outcome.problems.append(Problem(label, path, "not a JSON object"))
            continue
        kind = document.get("resourceType")
        model = MODELS.get(kind) if isinstance(kind, str) else None
        if model is None:
            message = "no resourceType" if not isinstance(kind, str) else "this resourceType is not read here"
            outcome.problems.append(Problem(label, path, f"{message}; expected one of {_CONVERTED} (or a Bundle)"))
            continue
        try:
            resource = model.model_validate(document)
        except ValidationError as error:
            where, message = _describe_fhir_error(error, path)
            outcome.problems.append(Problem(label, where, f"not a valid {kind}: {message}"))
            continue
        entries.append(_Entry(path, full_url, resource, whole))
    return entries


def _describe_fhir_error(error: ValidationError, path: str) -> tuple[str, str]:
    details = error.errors(include_input=False, include_url=False)
    first = details[0]
    where = path + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
    message = " ".join(str(first["msg"]).split())
    if len(details) > 1:
        message += f" (and {len(details) - 1} more)"
    return where, message


class _Index:
    """Finds the resource a reference points to: contained in the holder, or elsewhere in the same input."""

    def __init__(self, entries: Iterable[_Entry]) -> None:
        self._resources: dict[str, DomainResource] = {}
        for entry in entries:
            if entry.full_url:
                self._resources.setdefault(entry.full_url, entry.resource)
            if entry.resource.id:
                self._resources.setdefault(f"{entry.resource.get_resource_type()}/{entry.resource.id}", entry.resource)

    def resolve(self, reference: Reference | None, holder: DomainResource) -> Resource | None:
        if reference is None or not reference.reference:
            return None
        target = reference.reference
        if target.startswith("#"):
            return next((found for found in holder.contained or [] if found.id == target[1:]), None)
        if target in self._resources:
            return self._resources[target]
        parts = target.split("/_history/")[0].rstrip("/").split("/")
        return self._resources.get("/".join(parts[-2:])) if len(parts) >= 2 else None


def _literal_id(reference: Reference) -> str | None:
    if not reference.reference or reference.reference.startswith("#"):
        return None
    return reference.reference.split("/_history/")[0].rstrip("/").split("/")[-1] or None


def _first_identifier(identifiers: Sequence[Identifier] | None, prefer_type: str | None = None) -> str | None:
    values = [(i, i.value) for i in identifiers or [] if i.value]
    if prefer_type:
        preferred = [value for i, value in values if prefer_type in _codes(i.type)]
        if preferred:
            return preferred[0]
    return values[0][1] if values else None


def _reference_value(
    reference: Reference | None, index: _Index, holder: DomainResource, prefer_type: str | None = None
) -> str | None:
    """A stable business id for what the reference points to: its identifier, else the target's, else its id."""
    if reference is None:
        return None
    if reference.identifier is not None and reference.identifier.value:
        return reference.identifier.value
    target = index.resolve(reference, holder)
    if target is not None:
        identifiers = getattr(target, "identifier", None)
        return _first_identifier(identifiers, prefer_type) or target.id
    return _literal_id(reference)


def _codes(concept: CodeableConcept | None, system: str | None = None) -> list[str]:
    if concept is None:
        return []
    return [c.code for c in concept.coding or [] if c.code and (system is None or c.system == system)]


def _as_date(value: date | datetime | None) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value


def _as_instant(value: date | datetime | None) -> datetime | None:
    """In UTC; a date alone is its midnight UTC, a time without a zone is taken as UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _amount(value: Money | None, path: str) -> Decimal | None:
    if value is None or value.value is None:
        return None
    try:
        return money(Decimal(value.value))
    except MoneyError as error:
        raise Unconvertible(str(error), f"{path}.value") from None


def _version(resource: DomainResource) -> str:
    if resource.meta is None:
        return ""
    if resource.meta.versionId:
        return resource.meta.versionId
    return resource.meta.lastUpdated.isoformat() if resource.meta.lastUpdated else ""


def _event_id(entry: _Entry, *extra: str) -> str:
    resource = entry.resource
    identity = resource.id or entry.full_url
    if identity is None:
        # Nothing names the resource: its content does.
        identity = json.dumps(resource.model_dump(mode="json"), sort_keys=True)
    return derive_event_id("fhir", resource.get_resource_type(), identity, _version(resource), *extra)


def _validated(model: type[ClaimDenied] | type[NoteSigned], document: dict[str, Any], path: str) -> IngestedEvent:
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise Unconvertible(describe_validation_error(error), path) from None


# Providers


def _provider(
    candidates: Sequence[Reference | None], index: _Index, holder: DomainResource, options: IngestOptions, path: str
) -> ResolvedProvider:
    reference = next((candidate for candidate in candidates if candidate is not None), None)
    npi: str | None = None
    ids: list[str] = []
    names: list[str] = []
    if reference is not None:
        npi, ids, names = _provider_facts(reference, index, holder)
    if npi is not None and not npi_is_valid(npi):
        raise Unconvertible("the provider's NPI is not valid (10 digits with a correct check digit)", path)
    found = options.providers.resolve(npi, provider_ids=ids, names=names)
    if found is None:
        message = "no NPI for the provider (no NPI identifier, no provider directory match, no default NPI configured)"
        raise Unconvertible(message, path)
    return found


def _provider_facts(
    reference: Reference, index: _Index, holder: DomainResource
) -> tuple[str | None, list[str], list[str]]:
    identifiers: list[Identifier] = [reference.identifier] if reference.identifier is not None else []
    names = [reference.display] if reference.display else []
    target = index.resolve(reference, holder)
    if isinstance(target, PractitionerRole):
        identifiers += target.identifier or []
        target = index.resolve(target.practitioner, holder)
    if isinstance(target, Practitioner):
        identifiers += target.identifier or []
        for name in target.name or []:
            text = name.text or " ".join([*(given for given in name.given or [] if given), name.family or ""])
            names.append(text.strip())
    elif isinstance(target, Organization):
        identifiers += target.identifier or []
        if target.name:
            names.append(target.name)
    npi = next((i.value for i in identifiers if i.system == NPI_SYSTEM and i.value), None)
    others = [i.value for i in identifiers if i.system != NPI_SYSTEM and i.value]
    return npi, others, [name for name in names if name]


# Claims


@dataclass
class _Adjustment:
    group_code: str
    reason_code: str
    amount: Decimal | None


@dataclass
class _Adjudicated:
    billed: Decimal | None = None
    paid: Decimal | None = None
    adjustments: list[_Adjustment] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)


@dataclass
class _Item:
    sequence: int
    path: str
    adjudicated: _Adjudicated
    note_numbers: list[int]
    source: Any  # ExplanationOfBenefitItem, or the ClaimItem a ClaimResponse item answers (None if not found)
    claim_level: bool = False  # the extra line that carries header-level adjustments


@dataclass(frozen=True)
class _Line:
    document: dict[str, Any]  # a DenialLine
    service_date: date
    encounter: Reference | None


def _read_adjudications(adjudications: Sequence[Any] | None, path: str) -> _Adjudicated:
    result = _Adjudicated()
    paid_to_provider: Decimal | None = None
    for number, adjudication in enumerate(adjudications or []):
        where = f"{path}.adjudication[{number}]"
        amount = _amount(adjudication.amount, f"{where}.amount")
        categories = _codes(adjudication.category)
        if amount is not None and "submitted" in categories:
            result.billed = amount
        if amount is not None and "benefit" in categories:
            result.paid = amount
        if amount is not None and "paidtoprovider" in categories:
            paid_to_provider = amount
        groups = _codes(adjudication.category, GROUP_CODE_SYSTEM) + _codes(adjudication.reason, GROUP_CODE_SYSTEM)
        for reason in _codes(adjudication.reason, CARC_SYSTEM):
            group = groups[0] if groups else ("PR" if reason in ("1", "2", "3") else "CO")
            result.adjustments.append(_Adjustment(group, reason, amount))
        result.remarks += _codes(adjudication.reason, RARC_SYSTEM)
    if result.paid is None:
        result.paid = paid_to_provider
    return result


def _has_denial(adjustments: Iterable[_Adjustment], options: IngestOptions) -> bool:
    return any(options.is_denial(a.group_code, a.reason_code) for a in adjustments)


def _sequence(value: int | None, path: str) -> int:
    if value is None or value < 1:
        raise Unconvertible("the item has no sequence number", path)
    return value


def _note_remarks(notes: dict[int, str], numbers: Iterable[int]) -> list[str]:
    remarks = []
    for number in numbers:
        match = _RARC_NOTE.match(notes.get(number, ""))
        if match:
            remarks.append(match.group(1))
    return remarks


def _read_items(resource: DomainResource, index: _Index, path: str) -> tuple[list[_Item], Claim | None]:
    """The adjudicated items, each with what it describes (EOB item, or the Claim item a ClaimResponse answers)."""
    if isinstance(resource, ExplanationOfBenefit):
        return [
            _Item(
                _sequence(item.sequence, f"{path}.item[{number}].sequence"),
                f"{path}.item[{number}]",
                _read_adjudications(item.adjudication, f"{path}.item[{number}]"),
                [note for note in item.noteNumber or [] if note is not None],
                item,
            )
            for number, item in enumerate(resource.item or [])
        ], None
    if not isinstance(resource, ClaimResponse):
        raise Unconvertible("not a claim resource", path)
    request = index.resolve(resource.request, resource)
    claim = request if isinstance(request, Claim) else None
    claim_items = {item.sequence: item for item in (claim.item if claim else None) or []}
    return [
        _Item(
            _sequence(item.itemSequence, f"{path}.item[{number}].itemSequence"),
            f"{path}.item[{number}]",
            _read_adjudications(item.adjudication, f"{path}.item[{number}]"),
            [note for note in item.noteNumber or [] if note is not None],
            claim_items.get(item.itemSequence),
        )
        for number, item in enumerate(resource.item or [])
    ], claim


def _claim_event(entry: _Entry, index: _Index, options: IngestOptions) -> ClaimDenied | None:
    resource = entry.resource
    path = entry.path
    if not isinstance(resource, (ClaimResponse, ExplanationOfBenefit)):
        raise Unconvertible("not a claim resource", path)
    items, claim = _read_items(resource, index, path)
    header = _read_adjudications(resource.adjudication, path)
    notes = {note.number: note.text or "" for note in resource.processNote or [] if note.number is not None}
    referenced = {number for item in items for number in item.note_numbers}
    claim_remarks = _note_remarks(notes, sorted(set(notes) - referenced))
    for item in items:
        item.adjudicated.remarks += _note_remarks(notes, item.note_numbers)

    # Header-level RARCs explain the header-level CARCs next to them, so they travel together.
    if len(items) == 1 and header.adjustments:
        items[0].adjudicated.adjustments += header.adjustments
        items[0].adjudicated.remarks += header.remarks
    elif _has_denial(header.adjustments, options):
        totals = {code: total.amount for total in resource.total or [] for code in _codes(total.category)}
        extra = _Adjudicated(
            billed=_amount(totals.get("submitted"), f"{path}.total") or Decimal("0.00"),
            paid=_amount(totals.get("benefit"), f"{path}.total") or Decimal("0.00"),
            adjustments=header.adjustments,
            remarks=header.remarks,
        )
        items.append(_Item(max((i.sequence for i in items), default=0) + 1, path, extra, [], None, claim_level=True))
    denied = [item for item in items if _has_denial(item.adjudicated.adjustments, options)]
    if not denied:
        return None

    lines = [_claim_line(item, resource, claim, claim_remarks, options) for item in denied]
    occurred_at = _as_instant(resource.created)
    if occurred_at is None:
        raise Unconvertible("created is missing", f"{path}.created")

    claim_reference = resource.request if isinstance(resource, ClaimResponse) else resource.claim
    claim_id = (
        _reference_value(claim_reference, index, resource)
        or _first_identifier(resource.identifier)
        or resource.id
        or entry.full_url
    )
    if not claim_id:
        raise Unconvertible("nothing identifies the claim (request/claim, identifier or id)", path)
    encounter = next((line.encounter for line in lines if line.encounter is not None), None)
    encounter_id = _reference_value(encounter, index, resource)

    payer = resource.insurer
    payer_id = _reference_value(payer, index, resource) or (payer.display if payer else None)
    if not payer_id:
        raise Unconvertible("the insurer is missing or names no payer", f"{path}.insurer")
    payer_target = index.resolve(payer, resource) if payer else None
    payer_name = (payer.display if payer else None) or (
        payer_target.name if isinstance(payer_target, Organization) else None
    )

    provider = _provider(_rendering_candidates(resource, claim), index, resource, options, path)
    patient = _reference_value(resource.patient, index, resource, prefer_type="MR")
    document = {
        "event_type": "claim.denied",
        "schema_version": 1,
        "event_id": _event_id(entry),
        "occurred_at": occurred_at,
        "source": options.fhir_source,
        "claim_id": claim_id,
        "encounter_id": encounter_id or claim_id,
        "patient_ref": patient,
        "payer": {"id": payer_id, "name": payer_name or ""},
        "rendering_provider": {"npi": provider.npi, "name": provider.name, "department": provider.department},
        "service_date": min(line.service_date for line in lines),
        "lines": [line.document for line in lines],
    }
    event = _validated(ClaimDenied, document, path)
    assert isinstance(event, ClaimDenied)
    return event


def _claim_line(
    item: _Item, resource: DomainResource, claim: Claim | None, claim_remarks: list[str], options: IngestOptions
) -> _Line:
    adjudicated = item.adjudicated
    source = item.source
    procedure = options.claim_level_procedure_code
    modifiers: list[str] = []
    diagnoses: list[str] = []
    net: Decimal | None = None
    served: date | None = None
    encounter: Reference | None = None
    if source is None and not item.claim_level:
        raise Unconvertible(
            "the Claim item this answers is not in the input (request must point to a contained or bundled Claim)",
            item.path,
        )
    if source is not None:
        code = _procedure_code(source.productOrService)
        if code is None:
            raise Unconvertible("productOrService has no code", f"{item.path}.productOrService")
        procedure = code
        modifiers = [code for concept in source.modifier or [] for code in _codes(concept)][:4]
        net = _amount(source.net, f"{item.path}.net")
        period = source.servicedPeriod
        served = _as_date(source.servicedDate) or _as_date(period.start if period else None)
        encounter = next(iter(source.encounter or []), None)
        diagnoses = _diagnoses(source, resource if isinstance(resource, ExplanationOfBenefit) else claim)
    billed = adjudicated.billed if adjudicated.billed is not None else net
    if billed is None:
        raise Unconvertible("no submitted amount (adjudication category submitted, or net)", item.path)
    paid = adjudicated.paid if adjudicated.paid is not None else Decimal("0.00")
    if served is None:
        billable = getattr(resource, "billablePeriod", None) or (claim.billablePeriod if claim else None)
        served = _as_date(billable.start) if billable else None
    if served is None:
        raise Unconvertible("no service date (servicedDate/servicedPeriod or billablePeriod)", item.path)
    # An adjustment without an amount takes what the other adjustments leave unexplained, once.
    explained = sum((a.amount for a in adjudicated.adjustments if a.amount is not None), Decimal("0.00"))
    unexplained = max(billed - paid - explained, Decimal("0.00"))
    adjustments = []
    for adjustment in adjudicated.adjustments:
        amount = adjustment.amount
        if amount is None:
            amount, unexplained = unexplained, Decimal("0.00")
        adjustments.append(
            {"group_code": adjustment.group_code, "reason_code": adjustment.reason_code, "amount": amount}
        )
    document = {
        "line_number": item.sequence,
        "procedure_code": procedure,
        "modifiers": modifiers,
        "diagnosis_codes": diagnoses,
        "billed_amount": billed,
        "paid_amount": paid,
        "adjustments": adjustments,
        "remark_codes": list(dict.fromkeys(adjudicated.remarks + claim_remarks)),
    }
    return _Line(document, served, encounter)


def _procedure_code(concept: CodeableConcept | None) -> str | None:
    if concept is None:
        return None
    codes = _procedure_codes(concept) or _codes(concept)
    return codes[0] if codes else None


def _diagnoses(item: Any, owner: ExplanationOfBenefit | Claim | None) -> list[str]:
    if owner is None:
        return []
    by_sequence = {d.sequence: d for d in owner.diagnosis or []}
    codes = []
    for sequence in item.diagnosisSequence or []:
        diagnosis = by_sequence.get(sequence)
        found = _codes(diagnosis.diagnosisCodeableConcept) if diagnosis else []
        if found:
            codes.append(found[0])
    return codes[:12]


def _rendering_candidates(resource: DomainResource, claim: Claim | None) -> list[Reference | None]:
    candidates: list[Reference | None] = []
    for owner in (resource, claim):
        if isinstance(owner, (ExplanationOfBenefit, Claim)):
            for role in RENDERING_ROLES:
                candidates += [m.provider for m in owner.careTeam or [] if role in _codes(m.role)]
            candidates.append(owner.provider)
    if isinstance(resource, ClaimResponse):
        candidates.append(resource.requestor)
    return candidates


# Notes


@dataclass(frozen=True)
class _NoteParts:
    """What the two note resources say, in one shape. Built only for signed notes."""

    note_id: str | None
    signed_at: datetime | None
    signed_path: str
    authors: list[Reference | None]
    encounter: Reference | None
    encounter_path: str
    period_start: date | datetime | None
    procedure_codes: list[str]
    texts: list[str]


def _document_reference_parts(resource: DocumentReference, path: str) -> _NoteParts | None:
    if resource.status == "entered-in-error" or resource.docStatus not in ("final", "amended"):
        return None
    context = resource.context
    concepts = (context.event if context else None) or []
    note_id = resource.id or (resource.masterIdentifier.value if resource.masterIdentifier else None)
    return _NoteParts(
        note_id=note_id or _first_identifier(resource.identifier),
        signed_at=_as_instant(resource.date),
        signed_path=f"{path}.date",
        authors=[resource.authenticator, *(resource.author or [])],
        encounter=context.encounter[0] if context and context.encounter else None,
        encounter_path=f"{path}.context.encounter",
        period_start=context.period.start if context and context.period else None,
        procedure_codes=[code for concept in concepts for code in _procedure_codes(concept)],
        texts=_attachment_texts(resource),
    )


def _composition_parts(resource: Composition, path: str) -> _NoteParts | None:
    if resource.status not in ("final", "amended"):
        return None
    attesters = [a for a in resource.attester or [] if a.mode in ("legal", "professional")]
    times = [time for a in attesters if (time := _as_instant(a.time)) is not None]
    periods = [event.period.start for event in resource.event or [] if event.period and event.period.start]
    concepts = [concept for event in resource.event or [] for concept in event.code or []]
    return _NoteParts(
        note_id=resource.id or (resource.identifier.value if resource.identifier else None),
        signed_at=max(times, default=None) or _as_instant(resource.date),
        signed_path=f"{path}.attester",
        authors=[*(a.party for a in attesters), *(resource.author or [])],
        encounter=resource.encounter,
        encounter_path=f"{path}.encounter",
        period_start=periods[0] if periods else None,
        procedure_codes=[code for concept in concepts for code in _procedure_codes(concept)],
        texts=[_narrative_text(section) for section in resource.section or []],
    )


def _note_event(entry: _Entry, index: _Index, options: IngestOptions) -> NoteSigned | None:
    resource = entry.resource
    path = entry.path
    if isinstance(resource, DocumentReference):
        parts = _document_reference_parts(resource, path)
    elif isinstance(resource, Composition):
        parts = _composition_parts(resource, path)
    else:
        raise Unconvertible("not a note resource", path)
    if parts is None:
        return None  # not signed (yet)
    signed_at, note_id = parts.signed_at, parts.note_id
    if signed_at is None:
        raise Unconvertible("no signing time", parts.signed_path)
    if not note_id:
        raise Unconvertible("nothing identifies the note (id or identifier)", path)
    encounter_id = _reference_value(parts.encounter, index, resource)
    if not encounter_id:
        raise Unconvertible("no encounter", parts.encounter_path)
    service_date = _as_date(parts.period_start)
    if service_date is None:
        target = index.resolve(parts.encounter, resource)
        if isinstance(target, Encounter) and target.period is not None:
            service_date = _as_date(target.period.start)
    if service_date is None:
        raise Unconvertible("no service date (context period, event period, or the Encounter's period)", path)

    facts = _structured_facts(resource, path)
    if facts.get("total_time_minutes") is None or facts.get("mdm_level") is None:
        read = read_text_facts("\n".join(parts.texts))
        if facts.get("total_time_minutes") is None:
            facts["total_time_minutes"] = read.total_time_minutes
        if facts.get("mdm_level") is None:
            facts["mdm_level"] = read.mdm_level
    facts["procedure_codes"] = list(dict.fromkeys(parts.procedure_codes + facts.get("procedure_codes", [])))

    provider = _provider(parts.authors, index, resource, options, path)
    document = {
        "event_type": "note.signed",
        "schema_version": 1,
        "event_id": _event_id(entry, signed_at.isoformat()),
        "occurred_at": signed_at,
        "source": options.fhir_source,
        "note_id": note_id,
        "encounter_id": encounter_id,
        "patient_ref": _reference_value(resource.subject, index, resource, prefer_type="MR"),
        "author": {"npi": provider.npi, "name": provider.name, "department": provider.department},
        "note_type": _note_type(resource.type),
        "service_date": service_date,
        "signed_at": signed_at,
        "documentation": facts,
    }
    event = _validated(NoteSigned, document, path)
    assert isinstance(event, NoteSigned)
    return event


def _procedure_codes(concept: CodeableConcept) -> list[str]:
    return [c.code for c in concept.coding or [] if c.code and c.system in PROCEDURE_SYSTEMS]


def _note_type(concept: CodeableConcept | None) -> str:
    for code in _codes(concept, LOINC):
        if code in NOTE_TYPES_BY_LOINC:
            return NOTE_TYPES_BY_LOINC[code]
    return "clinical_note" if concept is not None else "progress_note"


def _attachment_texts(resource: DocumentReference) -> list[str]:
    texts = []
    for content in resource.content or []:
        attachment = content.attachment
        kind = (attachment.contentType or "").lower()
        if not kind.startswith("text/plain") or not attachment.data:
            continue
        charset = re.search(r"charset=([\w-]+)", kind)
        try:
            texts.append(attachment.data.decode(charset.group(1) if charset else "utf-8", errors="replace"))
        except LookupError:
            texts.append(attachment.data.decode("utf-8", errors="replace"))
    return texts


def _narrative_text(section: CompositionSection) -> str:
    parts = []
    if section.text is not None and section.text.div:
        parts.append(html.unescape(re.sub(r"<[^>]+>", " ", section.text.div)))
    parts += [_narrative_text(child) for child in section.section or []]
    return "\n".join(parts)


def _structured_facts(resource: DomainResource, path: str) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for number, contained in enumerate(resource.contained or []):
        if not isinstance(contained, Observation) or contained.status == "entered-in-error":
            continue
        codes = _codes(contained.code, FACT_SYSTEM)
        if not codes:
            continue
        where = f"{path}.contained[{number}]"
        fact = codes[0]
        if fact == "total-time-minutes":
            minutes = contained.valueInteger
            if minutes is None and contained.valueQuantity is not None and contained.valueQuantity.value is not None:
                value = Decimal(contained.valueQuantity.value)
                unit = (contained.valueQuantity.code or contained.valueQuantity.unit or "min").lower()
                if unit not in ("min", "minute", "minutes") or value != value.to_integral_value():
                    raise Unconvertible("total-time-minutes must be a whole number of minutes", where)
                minutes = int(value)
            if minutes is None:
                raise Unconvertible("total-time-minutes needs valueInteger or valueQuantity", where)
            facts["total_time_minutes"] = minutes
        elif fact == "mdm-level":
            level = contained.valueString or next(iter(_codes(contained.valueCodeableConcept)), None)
            if level is None or level.lower() not in MDM_LEVELS:
                raise Unconvertible("mdm-level must be one of " + ", ".join(MDM_LEVELS), where)
            facts["mdm_level"] = level.lower()
        elif fact == "medical-necessity":
            if contained.valueBoolean is None:
                raise Unconvertible("medical-necessity needs valueBoolean", where)
            facts["medical_necessity"] = contained.valueBoolean
        elif fact == "element":
            element = contained.valueString or next(iter(_codes(contained.valueCodeableConcept)), None)
            if not element:
                raise Unconvertible("element needs valueString or a coded value", where)
            facts.setdefault("elements", []).append(element)
        elif fact in ("procedure", "diagnosis"):
            found = _codes(contained.valueCodeableConcept)
            if not found:
                raise Unconvertible(f"{fact} needs a coded valueCodeableConcept", where)
            facts.setdefault(f"{fact}_codes", []).append(found[0])
        else:
            raise Unconvertible(
                "unknown documentation fact code; expected total-time-minutes, mdm-level, medical-necessity, "
                "element, procedure or diagnosis",
                where,
            )
    return facts
