"""What both adapters share: problems worth reporting, money, derived ids, and who the rendering provider is.

A `Problem` says where the input went wrong (file, segment or JSON path) and what kind of wrong, never the value:
the values of a remittance or a note are patient data.
"""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from schemas import ClaimDenied, NoteSigned, npi_is_valid

IngestedEvent = ClaimDenied | NoteSigned

# Every id the adapters derive lives under this namespace, so the same input always yields the same event ids
# and a re-ingested file is recognised as duplicates downstream.
EVENT_ID_NAMESPACE = uuid.UUID("6f1d3c1e-8a0b-5d0e-9b1a-2f6c4d7e8a90")

DEFAULT_DEPARTMENT = "Unassigned"
# The procedure code of the line that carries claim-level adjustments when no single service line can (see x12.py).
CLAIM_LEVEL_PROCEDURE_CODE = "CLAIM"


def default_not_denials() -> frozenset[str]:
    """The code book is the one list of what is not a denial (it includes CO-A2, a contractual adjustment)."""
    from engine.domain.codebook import CodeBook

    return CodeBook.load().not_denials


@dataclass(frozen=True)
class Problem:
    """One thing in one file that could not be turned into an event. Safe to print: it carries no field values."""

    file: str
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.location}: {self.message}"


@dataclass
class Outcome:
    """What reading some input produced: the good events, and a problem for each part that failed."""

    events: list[IngestedEvent] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped: int = 0  # parts read fine that are not events (paid claims, unsigned notes, reversals)

    def merge(self, other: Outcome) -> None:
        self.events.extend(other.events)
        self.problems.extend(other.problems)
        self.skipped += other.skipped


def derive_event_id(*parts: str) -> str:
    """A UUIDv5 over the parts. Hashing also keeps patient account numbers (CLP01) out of the id itself."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, "\x1f".join(parts)))


class MoneyError(ValueError):
    pass


_DECIMAL_TEXT = re.compile(r"^-?(?:\d+(?:\.\d*)?|\.\d+)$")
CENT = Decimal("0.01")


def money(value: str | Decimal) -> Decimal:
    """An amount in cents, exactly: text like X12's R type ("6", "-12.5", "210.00") or a Decimal.

    More than two decimal places is an error rather than a rounding, because it means we misread the amount.
    """
    if isinstance(value, str):
        if not _DECIMAL_TEXT.match(value):
            raise MoneyError("not a decimal amount")
        try:
            value = Decimal(value)
        except InvalidOperation:
            raise MoneyError("not a decimal amount") from None
    if not value.is_finite():
        raise MoneyError("not a finite amount")
    cents = value.quantize(CENT)
    if cents != value:
        raise MoneyError("more than two decimal places")
    return cents


@dataclass(frozen=True)
class DirectoryEntry:
    npi: str
    name: str = ""
    department: str = ""
    provider_id: str = ""


def _name_key(name: str) -> str:
    return " ".join(re.sub(r"[^0-9A-Za-z]+", " ", name).upper().split())


class DirectoryError(ValueError):
    pass


class ProviderDirectory:
    """Who is who when the source names a provider without an NPI, and which department each NPI belongs to.

    A CSV with a header row: `npi` (required), and any of `department`, `name`, `provider_id` (the id a payer or
    EHR uses for the provider, such as an NM1*82 number with a qualifier other than XX).
    """

    def __init__(self, entries: Iterable[DirectoryEntry] = ()) -> None:
        self._by_npi: dict[str, DirectoryEntry] = {}
        self._by_id: dict[str, DirectoryEntry] = {}
        self._by_name: dict[str, DirectoryEntry] = {}
        for entry in entries:
            self._by_npi.setdefault(entry.npi, entry)
            if entry.provider_id:
                self._by_id.setdefault(entry.provider_id.strip(), entry)
            if entry.name:
                self._by_name.setdefault(_name_key(entry.name), entry)

    @classmethod
    def from_csv(cls, path: Path) -> ProviderDirectory:
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                columns = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
                if "npi" not in columns:
                    raise DirectoryError(f"{path}: the provider directory needs an 'npi' column")
                entries = []
                for row_number, row in enumerate(reader, start=2):

                    def cell(column: str, row: dict[str, str | None] = row) -> str:
                        original = columns.get(column)
                        return (row.get(original) or "").strip() if original else ""

                    npi = cell("npi")
                    if not npi_is_valid(npi):
                        raise DirectoryError(f"{path}: row {row_number}: npi is not a valid NPI")
                    entries.append(DirectoryEntry(npi, cell("name"), cell("department"), cell("provider_id")))
        except OSError as error:
            raise DirectoryError(f"{path}: cannot read the provider directory ({error.strerror})") from None
        except (csv.Error, UnicodeDecodeError):
            raise DirectoryError(f"{path}: the provider directory is not a readable UTF-8 CSV file") from None
        return cls(entries)

    def by_npi(self, npi: str) -> DirectoryEntry | None:
        return self._by_npi.get(npi)

    def by_provider_id(self, provider_id: str) -> DirectoryEntry | None:
        return self._by_id.get(provider_id.strip())

    def by_name(self, name: str) -> DirectoryEntry | None:
        key = _name_key(name)
        return self._by_name.get(key) if key else None


@dataclass(frozen=True)
class ResolvedProvider:
    npi: str
    name: str
    department: str


@dataclass(frozen=True)
class ProviderLookup:
    """Turns what a source says about a provider into an NPI, a name and a department.

    Order: the NPI the source states; else a directory match on the source's other id, then on the name;
    else the configured default NPI. The department comes from the directory entry of the NPI, else the default.
    """

    directory: ProviderDirectory = field(default_factory=ProviderDirectory)
    default_npi: str | None = None
    default_department: str = DEFAULT_DEPARTMENT

    def resolve(
        self, npi: str | None = None, *, provider_ids: Iterable[str] = (), names: Iterable[str] = ()
    ) -> ResolvedProvider | None:
        names = [name for name in names if name.strip()]
        entry: DirectoryEntry | None = None
        if npi is None:
            candidates = [self.directory.by_provider_id(pid) for pid in provider_ids if pid.strip()]
            candidates += [self.directory.by_name(name) for name in names]
            entry = next((found for found in candidates if found is not None), None)
            npi = entry.npi if entry else self.default_npi
        if npi is None:
            return None
        entry = self.directory.by_npi(npi) or entry
        name = names[0] if names else (entry.name if entry else "")
        department = (entry.department if entry else "") or self.default_department
        return ResolvedProvider(npi=npi, name=name[:256], department=department)


@dataclass(frozen=True)
class IngestOptions:
    """Choices an integration engineer makes once per feed."""

    providers: ProviderLookup = field(default_factory=ProviderLookup)
    not_denials: frozenset[str] = field(default_factory=default_not_denials)
    claim_level_procedure_code: str = CLAIM_LEVEL_PROCEDURE_CODE
    # X12 only: where claim_id and encounter_id come from: "clp01", "clp07" or "ref:<qualifier>" (a claim REF).
    claim_id_from: str = "clp01"
    encounter_id_from: str = "clp01"
    x12_source: str = "x12-835"
    fhir_source: str = "fhir"

    def is_denial(self, group_code: str, reason_code: str) -> bool:
        return f"{group_code}-{reason_code}" not in self.not_denials
