"""X12 835 remittances (005010X221A1) into ClaimDenied events.

Why pyx12 reads the file (and x12sdk does not)
-----------------------------------------------
Both were tried on the three public samples in shared/samples/x12 and on broken copies of them.
x12sdk (2.2.0) parses each ST/SE transaction into one pydantic model. That model is all or nothing: one bad amount
(SVC02 "12X") or one claim that does not balance rejects the whole transaction, so two good claims are lost with the
bad one; its errors point at model paths (loop_2000.0.loop_2100.1...) rather than segments and repeat the input
values (patient data) in the message; a file cut off before its SE yields no transaction and no error at all; and
the reader drops the ISA envelope, whose control number (ISA13) and date we need.
pyx12 (4.0.0, BSD, maintained, one small dependency) reads the ISA to learn the delimiters, splits the stream into
segments and elements (composites included), and checks the envelopes as it goes: SE/ST and GE/GS and IEA/ISA
control numbers, SE01 segment counts, missing trailers at the end of the file. It reports those as codes, so the
messages here are our own and never contain values. It does not stop at an error, so one bad claim costs only that
claim. We use its reader (`pyx12.x12file.X12Reader`), not its implementation-guide validator (`X12ContextReader`):
the validator logs messages that include element values, and it flags conformance details (a missing PER in the
LinuxForHealth sample, an impossible BPR16 date) that should not stop us from reading a denial.
The 835 loop structure we need is flat (CLP opens a claim, SVC opens a service line), so it is walked here.

How a remittance becomes events
-------------------------------
- One ClaimDenied per claim (CLP) that has at least one denial adjustment on a line or at claim level. An adjustment
  is not a denial when the code book says so (PR-1/2/3, CO-45, CO-253, OA-23) or it is CO-A2 (see common.py).
  Claims with only such adjustments, and reversals (CLP02 = 22, which undo an earlier payment), emit nothing.
- claim_id and encounter_id are CLP01 by default (configurable: CLP07 or a claim REF qualifier).
- Lines are the service lines (SVC) that carry a denial adjustment, numbered by their position in the claim.
  Every CAS triplet of such a line is kept, denial or not, with its group code. The procedure code is the one
  submitted (SVC06 when the payer adjudicated a different code, else SVC01), with its modifiers.
  Remark codes are the line's LQ*HE codes plus the claim's MOA/MIA remark codes, which apply to every line.
- Claim-level CAS: a claim with exactly one service line is that line, so its claim-level adjustments join the line.
  Otherwise (no service lines, or several) claim-level adjustments cannot be pinned on one procedure, and spreading
  them would count the money more than once. When one of them is a denial they go on one extra line, numbered after
  the service lines, with procedure code "CLAIM" (configurable), the claim's charge (CLP03) and payment (CLP04).
- Service date: the earliest date of the emitted lines, each from DTM*472 or the start of DTM*150/151; a line
  without one takes the claim's DTM*232 (statement period start).
- Rendering provider: NM1*82 with qualifier XX; an NM1*82 with another id is looked up in the provider directory
  (by id, then name), else the default NPI. Without an NM1*82 the rendering provider is the payee (835 rule), so
  N1*PE with qualifier XX. Department: from the directory entry of the NPI, else the default.
- patient_ref: NM1*QC NM109 (else NM1*IL NM109). payer: N1*PR (id from N104, REF*2U or TRN03).
- occurred_at: the production date DTM*405, else BPR16, else the ISA date and time, in UTC.
- event_id: UUIDv5 of ISA13, CLP01 and CLP07 (plus an occurrence number if that triple repeats in a file), so
  ingesting the same file twice yields the same ids.

Failure: a transaction whose envelope is broken (no SE, wrong SE01 count, not an 835) is skipped whole; a claim
with a bad amount, date, code or missing required element is skipped whole; the rest still comes through.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyx12.errors
import pyx12.x12file
from pydantic import ValidationError

from engine.ingest.common import (
    IngestOptions,
    MoneyError,
    Outcome,
    Problem,
    ResolvedProvider,
    derive_event_id,
    money,
)
from schemas import ClaimDenied, npi_is_valid
from schemas.decoding import describe_validation_error

SUPPORTED_IMPLEMENTATION = "005010X221"
GROUP_CODES = frozenset({"CO", "PR", "OA", "PI", "CR"})
REVERSAL_STATUS = "22"
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{1,2}$")
# Segments between claims: they end the claim before them and belong to no claim.
_CLAIM_BREAKS = frozenset({"LX", "TS3", "TS2", "PLB"})
_MOA_REMARKS = (3, 4, 5, 6, 7)
_MIA_REMARKS = (5, 20, 21, 22, 23)

# pyx12's envelope error codes, in our words (its own messages quote control numbers and segment text).
_ENVELOPE_PROBLEMS = {
    ("isa", "001"): "IEA02 does not match the interchange control number in ISA13",
    ("isa", "021"): "IEA01 does not match the number of functional groups",
    ("isa", "023"): "the interchange has no IEA trailer (is the file cut off?)",
    ("isa", "024"): "a functional group is not closed before IEA",
    ("isa", "025"): "ISA13 repeats the control number of an earlier interchange in this file",
    ("gs", "3"): "a functional group has no GE trailer",
    ("gs", "4"): "GE02 does not match the group control number in GS06",
    ("gs", "5"): "GE01 does not match the number of transactions in the group",
    ("gs", "6"): "GS06 repeats the control number of an earlier group in this interchange",
}
EnvelopeError = tuple[str, str, str, str | None, int | None]  # as pyx12 reports them: kind, code, text, value, line
_TRANSACTION_PROBLEMS = {
    "2": "the transaction has no SE trailer (is the file cut off?)",
    "3": "SE02 does not match the transaction control number in ST02",
    "4": "SE01 does not match the number of segments in the transaction",
}


@dataclass(frozen=True)
class Segment:
    position: int  # 1-based position in the file, ISA being 1
    id: str
    elements: tuple[str, ...]

    def get(self, index: int) -> str:
        """Element `index` (1-based, as in CLP01) without padding; "" when absent."""
        return self.elements[index - 1].strip() if index <= len(self.elements) else ""

    def where(self, element: int | None = None) -> str:
        name = self.id if _SEGMENT_ID.match(self.id) else "?"
        return f"segment {self.position} ({name}{f', {name}{element:02d}' if element else ''})"


class Unreadable(Exception):
    """Part of the remittance cannot be read; the message names the kind of problem, never the value."""

    def __init__(self, message: str, segment: Segment | None = None, element: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.segment = segment
        self.element = element


@dataclass(frozen=True)
class Interchange:
    control_number: str
    isa: Segment
    component_separator: str


@dataclass
class Transaction:
    interchange: Interchange
    implementation: str
    st: Segment
    body: list[Segment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"transaction {self.st.get(2) or '?'} at {self.st.where()}"


def read_x12(path: Path, options: IngestOptions, name: str | None = None) -> Outcome:
    """Every ClaimDenied event in one 835 file, and a problem for each part that could not be read."""
    label = name or str(path)
    outcome = Outcome()
    transactions, problems = _read_transactions(path, label)
    outcome.problems.extend(problems)
    occurrences: Counter[tuple[str, str, str]] = Counter()
    for transaction in transactions:
        outcome.merge(_map_transaction(transaction, options, label, occurrences))
    return outcome


# Reading: envelopes and segments


def _read_transactions(path: Path, label: str) -> tuple[list[Transaction], list[Problem]]:
    try:
        # Names may carry accented letters in any encoding; we never need them to be exact, only the codes.
        handle = path.open(encoding="utf-8", errors="replace")
    except OSError as error:
        return [], [Problem(label, "file", f"cannot read the file ({error.strerror})")]
    with handle:
        try:
            reader = pyx12.x12file.X12Reader(handle)
        except pyx12.errors.X12Error:
            message = "not an X12 interchange: expected a 106-character ISA segment (version 00401 or 00501) first"
            return [], [Problem(label, "segment 1 (ISA)", message)]
        walker = _EnvelopeWalker(label)
        segments = iter(reader)
        stopped = False
        while not stopped:
            try:
                raw = next(segments)
            except StopIteration:
                break
            except pyx12.errors.X12Error:
                # pyx12 refuses an ISA that does not have 16 elements; it cannot go on past it, so neither can we.
                where = f"segment {walker.position + 1} (ISA)"
                walker.problems.append(Problem(label, where, "an ISA without its 16 elements; the rest was not read"))
                stopped = True
            else:
                elements = tuple(element.format() for element in raw.elements)
                walker.add(raw.get_seg_id() or "", elements, reader.pop_errors())
        reader.cleanup()
        walker.end(reader.pop_errors(), unterminated=not stopped and bool(reader.raw.buffer.strip()))
    return walker.transactions, walker.problems


class _EnvelopeWalker:
    """Follows ISA/GS/ST...SE/GE/IEA and collects each transaction's segments and what is wrong with its envelope."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.transactions: list[Transaction] = []
        self.problems: list[Problem] = []
        self.position = 0
        self._interchange: Interchange | None = None
        self._implementation = ""
        self._current: Transaction | None = None

    def add(self, segment_id: str, elements: tuple[str, ...], envelope_errors: list[EnvelopeError]) -> None:
        self.position += 1
        segment = Segment(self.position, segment_id, elements)
        if segment.id == "ISA":
            self._close(_TRANSACTION_PROBLEMS["2"])
            separator = segment.elements[15][:1] if len(segment.elements) > 15 else ""
            self._interchange = Interchange(segment.get(13), segment, separator or ":")
        elif segment.id == "GS":
            self._implementation = segment.get(8)
        elif segment.id == "ST":
            self._close(f"a new ST at {segment.where()} starts before this transaction's SE")
            if self._interchange is None:
                self.problems.append(Problem(self.label, segment.where(), "ST outside an ISA interchange"))
            else:
                self._current = Transaction(self._interchange, self._implementation or segment.get(3), segment)
        elif segment.id == "SE":
            if self._current is None:
                self.problems.append(Problem(self.label, segment.where(), "SE without a matching ST"))
            else:
                self._current.defects.extend(
                    _TRANSACTION_PROBLEMS[code]
                    for kind, code, *_ in envelope_errors
                    if kind == "st" and code in _TRANSACTION_PROBLEMS
                )
                self._close()
        elif segment.id in ("GE", "IEA"):
            self._close(_TRANSACTION_PROBLEMS["2"])
        elif self._current is None:
            self.problems.append(Problem(self.label, segment.where(), "segment outside any ST/SE transaction"))
        else:
            self._current.body.append(segment)
        self.problems.extend(
            Problem(self.label, segment.where(), _ENVELOPE_PROBLEMS[(kind, code)])
            for kind, code, *_ in envelope_errors
            if (kind, code) in _ENVELOPE_PROBLEMS
        )

    def end(self, envelope_errors: list[EnvelopeError], *, unterminated: bool) -> None:
        last = f"end of file (after segment {self.position})"
        self.problems.extend(
            Problem(self.label, last, _ENVELOPE_PROBLEMS[(kind, code)])
            for kind, code, *_ in envelope_errors
            if (kind, code) in _ENVELOPE_PROBLEMS
        )
        if unterminated:
            self.problems.append(Problem(self.label, last, "the file ends inside a segment (no segment terminator)"))
        self._close(_TRANSACTION_PROBLEMS["2"])

    def _close(self, defect: str | None = None) -> None:
        """Hand over the open transaction, if any; `defect` says what is wrong when it did not end with its SE."""
        if self._current is None:
            return
        if defect is not None:
            self._current.defects.append(defect)
        self.transactions.append(self._current)
        self._current = None


# Mapping: transaction header, claims, service lines


@dataclass(frozen=True)
class _Header:
    payer_id: str
    payer_name: str
    payee: Segment | None
    occurred_at: datetime


@dataclass(frozen=True)
class _Adjustment:
    group_code: str
    reason_code: str
    amount: Decimal


@dataclass
class _Line:
    number: int
    procedure_code: str
    modifiers: list[str]
    billed: Decimal
    paid: Decimal
    service_date: date | None
    adjustments: list[_Adjustment] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)


@dataclass
class _Claim:
    clp: Segment
    charge: Decimal
    paid: Decimal
    adjustments: list[_Adjustment] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)
    names: dict[str, Segment] = field(default_factory=dict)  # NM101 entity code -> first NM1 of that code
    refs: dict[str, str] = field(default_factory=dict)
    statement_start: date | None = None
    lines: list[_Line] = field(default_factory=list)


def _map_transaction(
    transaction: Transaction, options: IngestOptions, label: str, occurrences: Counter[tuple[str, str, str]]
) -> Outcome:
    outcome = Outcome()
    if transaction.st.get(1) != "835":
        transaction.defects.append("the transaction set is not an 835 remittance")
    elif not transaction.implementation.startswith(SUPPORTED_IMPLEMENTATION):
        transaction.defects.append("the implementation is not 005010X221A1 (GS08)")
    claims = _split_claims(transaction.body)
    if transaction.defects:
        for defect in dict.fromkeys(transaction.defects):
            outcome.problems.append(Problem(label, transaction.label, f"{defect}; none of its claims were read"))
        return outcome
    try:
        header = _read_header(transaction)
    except Unreadable as error:
        if error.segment is None:
            message = f"{error.message}; none of its claims were read"
            outcome.problems.append(Problem(label, transaction.label, message))
        else:
            message = f"{error.message}; {transaction.label} was skipped, none of its claims were read"
            outcome.problems.append(Problem(label, error.segment.where(error.element), message))
        return outcome
    for segments in claims:
        clp = segments[0]
        key = (transaction.interchange.control_number, clp.get(1), clp.get(7))
        occurrences[key] += 1
        try:
            event = _claim_event(segments, transaction, header, options, occurrences[key])
        except Unreadable as error:
            where = (error.segment or clp).where(error.element)
            outcome.problems.append(Problem(label, where, f"{error.message}; the claim at {clp.where()} was skipped"))
            continue
        if event is None:
            outcome.skipped += 1
        else:
            outcome.events.append(event)
    return outcome


def _split_claims(body: list[Segment]) -> list[list[Segment]]:
    claims: list[list[Segment]] = []
    in_claim = False
    for segment in body:
        if segment.id == "CLP":
            claims.append([segment])
            in_claim = True
        elif segment.id in _CLAIM_BREAKS:
            in_claim = False
        elif in_claim:
            claims[-1].append(segment)
    return claims


def _read_header(transaction: Transaction) -> _Header:
    header: list[Segment] = []
    for segment in transaction.body:
        if segment.id in ("LX", "CLP"):
            break
        if not _SEGMENT_ID.match(segment.id):
            raise Unreadable("not a valid segment identifier", segment)
        header.append(segment)
    payer: Segment | None = None
    payee: Segment | None = None
    payer_ref = ""
    loop = ""
    production: Segment | None = None
    bpr: Segment | None = None
    trn: Segment | None = None
    for segment in header:
        if segment.id == "N1":
            loop = segment.get(1)
            if loop == "PR" and payer is None:
                payer = segment
            elif loop == "PE" and payee is None:
                payee = segment
        elif segment.id == "REF" and loop == "PR" and segment.get(1) == "2U" and not payer_ref:
            payer_ref = segment.get(2)
        elif segment.id == "DTM" and segment.get(1) == "405" and production is None:
            production = segment
        elif segment.id == "BPR":
            bpr = segment
        elif segment.id == "TRN":
            trn = segment
    if payer is None:
        raise Unreadable("the remittance names no payer (N1*PR)")
    payer_id = (payer.get(4) if payer.get(3) else "") or payer_ref or (trn.get(3) if trn else "") or payer.get(2)
    if not payer_id:
        raise Unreadable("the payer has no name or identifier (N102, N104, REF*2U, TRN03)", payer)
    if production is not None:
        occurred = _date(production, 2)
        occurred_at = datetime(occurred.year, occurred.month, occurred.day, tzinfo=UTC)
    elif bpr is not None and bpr.get(16):
        occurred = _date(bpr, 16)
        occurred_at = datetime(occurred.year, occurred.month, occurred.day, tzinfo=UTC)
    else:
        occurred_at = _isa_time(transaction.interchange.isa)
    return _Header(payer_id=payer_id, payer_name=payer.get(2), payee=payee, occurred_at=occurred_at)


def _claim_event(
    segments: list[Segment], transaction: Transaction, header: _Header, options: IngestOptions, occurrence: int
) -> ClaimDenied | None:
    claim = _read_claim(segments, transaction.interchange.component_separator)
    if claim.clp.get(2) == REVERSAL_STATUS:
        return None
    lines = _denied_lines(claim, options)
    if not lines:
        return None
    service_date = min(_line_date(claim, line) for line in lines)
    provider = _rendering_provider(claim, header, options)
    clp01, clp07 = claim.clp.get(1), claim.clp.get(7)
    id_parts = ["x12-835", transaction.interchange.control_number, clp01, clp07]
    if occurrence > 1:
        id_parts.append(f"#{occurrence}")
    patient = claim.names.get("QC") or claim.names.get("IL")
    document = {
        "event_type": "claim.denied",
        "schema_version": 1,
        "event_id": derive_event_id(*id_parts),
        "occurred_at": header.occurred_at,
        "source": options.x12_source,
        "claim_id": _claim_identifier(options.claim_id_from, claim),
        "encounter_id": _claim_identifier(options.encounter_id_from, claim),
        "patient_ref": (patient.get(9) if patient else "") or None,
        "payer": {"id": header.payer_id, "name": header.payer_name},
        "rendering_provider": {"npi": provider.npi, "name": provider.name, "department": provider.department},
        "service_date": service_date,
        "lines": [
            {
                "line_number": line.number,
                "procedure_code": line.procedure_code,
                "modifiers": line.modifiers,
                "diagnosis_codes": [],  # an 835 carries no diagnoses
                "billed_amount": line.billed,
                "paid_amount": line.paid,
                "adjustments": [
                    {"group_code": a.group_code, "reason_code": a.reason_code, "amount": a.amount}
                    for a in line.adjustments
                ],
                "remark_codes": line.remarks,
            }
            for line in lines
        ],
    }
    try:
        return ClaimDenied.model_validate(document)
    except ValidationError as error:
        raise Unreadable(describe_validation_error(error), claim.clp) from None


def _read_claim(segments: list[Segment], separator: str) -> _Claim:
    clp = segments[0]
    if not clp.get(1):
        raise Unreadable("the patient control number is missing", clp, 1)
    if not clp.get(2):
        raise Unreadable("the claim status code is missing", clp, 2)
    claim = _Claim(clp=clp, charge=_money(clp, 3), paid=_money(clp, 4))
    line: _Line | None = None
    for segment in segments[1:]:
        if not _SEGMENT_ID.match(segment.id):
            raise Unreadable("not a valid segment identifier", segment)
        if segment.id == "SVC":
            line = _read_service(segment, len(claim.lines) + 1, separator)
            claim.lines.append(line)
        elif line is not None:
            _read_line_segment(segment, line)
        else:
            _read_claim_segment(segment, claim)
    return claim


def _read_claim_segment(segment: Segment, claim: _Claim) -> None:
    if segment.id == "CAS":
        claim.adjustments.extend(_read_cas(segment))
    elif segment.id == "NM1":
        claim.names.setdefault(segment.get(1), segment)
    elif segment.id == "MOA":
        claim.remarks.extend(_remarks(segment, _MOA_REMARKS))
    elif segment.id == "MIA":
        claim.remarks.extend(_remarks(segment, _MIA_REMARKS))
    elif segment.id == "REF" and segment.get(1):
        claim.refs.setdefault(segment.get(1).upper(), segment.get(2))
    elif segment.id == "DTM" and segment.get(1) == "232":
        claim.statement_start = _date(segment, 2)


def _read_service(segment: Segment, number: int, separator: str) -> _Line:
    # SVC06 is the procedure as submitted, present when the payer adjudicated a different one (SVC01): the
    # clinician documented what was submitted, so that is the code feedback is about.
    element = 6 if segment.get(6) else 1
    parts = segment.get(element).split(separator)
    if len(parts) < 2 or not parts[1].strip():
        raise Unreadable("no procedure code in the composite", segment, element)
    return _Line(
        number=number,
        procedure_code=parts[1].strip(),
        modifiers=[part.strip() for part in parts[2:6] if part.strip()],
        billed=_money(segment, 2),
        paid=_money(segment, 3),
        service_date=None,
    )


def _read_line_segment(segment: Segment, line: _Line) -> None:
    if segment.id == "CAS":
        line.adjustments.extend(_read_cas(segment))
    elif segment.id == "DTM" and segment.get(1) == "472":
        line.service_date = _date(segment, 2)
    elif segment.id == "DTM" and segment.get(1) == "150":
        line.service_date = line.service_date or _date(segment, 2)
    elif segment.id == "DTM" and segment.get(1) == "151":
        _date(segment, 2)  # not used, but a bad period end means the period cannot be trusted
    elif segment.id == "LQ" and segment.get(1) == "HE":
        if not segment.get(2):
            raise Unreadable("the remark code is missing", segment, 2)
        line.remarks.append(segment.get(2))


def _read_cas(segment: Segment) -> list[_Adjustment]:
    group = segment.get(1)
    if group not in GROUP_CODES:
        raise Unreadable("not a claim adjustment group code (CO, PR, OA, PI or CR)", segment, 1)
    adjustments = []
    for reason_at in (2, 5, 8, 11, 14, 17):
        reason, amount = segment.get(reason_at), segment.get(reason_at + 1)
        if not reason and not amount:
            continue
        if not reason:
            raise Unreadable("an adjustment amount without a reason code", segment, reason_at)
        if not amount:
            raise Unreadable("an adjustment reason code without an amount", segment, reason_at + 1)
        adjustments.append(_Adjustment(group, reason, _money(segment, reason_at + 1)))
    if not adjustments:
        raise Unreadable("the adjustment has no reason code", segment, 2)
    return adjustments


def _remarks(segment: Segment, elements: tuple[int, ...]) -> list[str]:
    return [segment.get(index) for index in elements if segment.get(index)]


def _denied_lines(claim: _Claim, options: IngestOptions) -> list[_Line]:
    claim_denied = any(options.is_denial(a.group_code, a.reason_code) for a in claim.adjustments)
    lines = claim.lines
    if len(lines) == 1 and claim.adjustments:
        lines = [replace(lines[0], adjustments=lines[0].adjustments + claim.adjustments)]
    elif claim_denied:
        extra = _Line(
            number=len(lines) + 1,
            procedure_code=options.claim_level_procedure_code,
            modifiers=[],
            billed=claim.charge,
            paid=claim.paid,
            service_date=claim.statement_start,
            adjustments=list(claim.adjustments),
        )
        lines = [*lines, extra]
    denied = [line for line in lines if any(options.is_denial(a.group_code, a.reason_code) for a in line.adjustments)]
    # Claim-level remark codes (MOA/MIA) speak about every line of the claim.
    return [replace(line, remarks=list(dict.fromkeys(line.remarks + claim.remarks))) for line in denied]


def _line_date(claim: _Claim, line: _Line) -> date:
    dates = [line.service_date, claim.statement_start] + [other.service_date for other in claim.lines]
    found = next((value for value in dates if value is not None), None)
    if found is None:
        raise Unreadable("no service date: no DTM*472 or DTM*150 on the lines and no DTM*232 on the claim", claim.clp)
    return found


def _rendering_provider(claim: _Claim, header: _Header, options: IngestOptions) -> ResolvedProvider:
    lookup = options.providers
    rendering = claim.names.get("82")
    if rendering is not None:
        names = _person_names(rendering)
        if rendering.get(8) == "XX":
            if not npi_is_valid(rendering.get(9)):
                raise Unreadable("not a valid NPI (10 digits with a correct check digit)", rendering, 9)
            found = lookup.resolve(rendering.get(9), names=names)
        else:
            found = lookup.resolve(None, provider_ids=[rendering.get(9)], names=names)
        source = rendering
    elif header.payee is not None:
        # No NM1*82: the 835 leaves out the rendering provider when it is the payee.
        payee = header.payee
        if payee.get(3) == "XX":
            if not npi_is_valid(payee.get(4)):
                raise Unreadable("not a valid NPI (10 digits with a correct check digit)", payee, 4)
            found = lookup.resolve(payee.get(4), names=[payee.get(2)])
        else:
            found = lookup.resolve(None, provider_ids=[payee.get(4)], names=[payee.get(2)])
        source = payee
    else:
        found = lookup.resolve(None)
        source = claim.clp
    if found is None:
        raise Unreadable(
            "no rendering provider NPI (no NM1*82 or payee with qualifier XX, no provider directory match, "
            "and no default NPI configured)",
            source,
        )
    return found


def _person_names(nm1: Segment) -> list[str]:
    last, first = nm1.get(3), nm1.get(4)
    if nm1.get(2) == "1" and first:
        return [f"{first} {last}", f"{last} {first}"]
    return [last] if last else []


def _claim_identifier(source: str, claim: _Claim) -> str:
    clp01 = claim.clp.get(1)
    if source == "clp07":
        return claim.clp.get(7) or clp01
    if source.startswith("ref:"):
        return claim.refs.get(source[4:].upper()) or clp01
    return clp01


def _money(segment: Segment, element: int) -> Decimal:
    text = segment.get(element)
    if not text:
        raise Unreadable("a required amount is missing", segment, element)
    try:
        return money(text)
    except MoneyError as error:
        raise Unreadable(str(error), segment, element) from None


def _date(segment: Segment, element: int) -> date:
    text = segment.get(element)
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise Unreadable("not a valid date (CCYYMMDD)", segment, element) from None


def _isa_time(isa: Segment) -> datetime:
    day, clock = isa.get(9), isa.get(10)
    try:
        if len(day) != 6 or not day.isdigit() or len(clock) != 4 or not clock.isdigit():
            raise ValueError
        # ISA09 has a two-digit year; 835s in 5010 exist only since 2010.
        return datetime(2000 + int(day[:2]), int(day[2:4]), int(day[4:]), int(clock[:2]), int(clock[2:]), tzinfo=UTC)
    except ValueError:
        raise Unreadable("not a valid interchange date and time (YYMMDD, HHMM)", isa, 9) from None
