"""Building blocks shared by every Docloop event: the envelope, money, NPIs and the root-cause vocabulary."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema
from pydantic_core import core_schema as cs

SCHEMA_VERSION = 1

# What both stores hold and every later computation survives: PostgreSQL and SQLite both keep any of these
# dates, and a time this far from year 1 and 9999 converts to UTC (or adds a window) without overflowing.
EARLIEST_DATE, LATEST_DATE = date(1900, 1, 1), date(2199, 12, 31)
EARLIEST_TIME, TIME_LIMIT = datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
INT32_MAX = 2**31 - 1

# An inbound amount is at most 99,999,999.99 (8 integer digits): a pattern's or a department's sum of them
# stays well inside the 12 integer digits an outbound amount may have (10,000 maximal lines to reach it).
AMOUNT_INTEGER_DIGITS = 8
AMOUNT_PATTERN = rf"^[0-9]{{1,{AMOUNT_INTEGER_DIGITS}}}(\.[0-9]{{1,2}})?$"
MAX_AMOUNT = Decimal("9" * AMOUNT_INTEGER_DIGITS + ".99")
# RFC 3339 date-time with seconds and a zone (pydantic would also take a space for the T, no seconds, or digits).
TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"


class RootCause(StrEnum):
    """Why a claim line was denied, in words both clinicians and billing staff can act on."""

    EM_LEVEL_UNSUPPORTED = "em_level_unsupported"
    # Found in a signed note, not a denial: the documentation supports a higher E/M level than the code on it.
    EM_LEVEL_UNDERCODED = "em_level_undercoded"
    RECORDS_MISSING = "records_missing"
    MEDICAL_NECESSITY_UNSUPPORTED = "medical_necessity_unsupported"
    FREQUENCY_UNSUPPORTED = "frequency_unsupported"
    DIAGNOSIS_MISMATCH = "diagnosis_mismatch"
    BUNDLING = "bundling"
    MODIFIER_OR_CODE_INVALID = "modifier_or_code_invalid"
    PROVIDER_IDENTIFIER_MISSING = "provider_identifier_missing"
    CLAIM_DATA_INCOMPLETE = "claim_data_incomplete"
    AUTHORIZATION_MISSING = "authorization_missing"
    ELIGIBILITY = "eligibility"
    TIMELY_FILING = "timely_filing"
    DUPLICATE = "duplicate"
    NOT_COVERED = "not_covered"
    UNCLASSIFIED = "unclassified"


def npi_is_valid(npi: str) -> bool:
    """NPI check digit: Luhn over the card-issuer prefix 80840 followed by the first nine digits."""
    # isdigit() alone would take other scripts' digits (Arabic-Indic, fullwidth...): an NPI is ASCII.
    return len(npi) == 10 and npi.isascii() and npi.isdigit() and _check_digit_holds(npi)


@functools.lru_cache(maxsize=65536)  # events name the same few thousand NPIs over and over (10 bytes each)
def _check_digit_holds(npi: str) -> bool:
    digits = [int(c) for c in "80840" + npi[:9]]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 0:  # every second digit from the right, starting with the rightmost
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10 == int(npi[9])


def _check_npi(value: str) -> str:
    # The message never repeats the value: an NPI is not PHI, but error texts follow one rule for all fields.
    if not npi_is_valid(value):
        raise ValueError("not a valid NPI (10 digits with a correct check digit)")
    return value


def _money_from_string(value: object) -> object:
    if isinstance(value, (float, int)) and not isinstance(value, bool):
        raise ValueError('money must be a decimal string such as "125.40", not a JSON number')
    return value


def _money_to_string(value: Decimal) -> str:
    return f"{value:.2f}"


@dataclass(frozen=True)
class StrictOnTheWire:
    """On the wire (JSON) a value must already have its JSON type: no number for a time or a date, no `true` or
    `1.0` for an integer. Python callers (the ingest adapters, tests) keep pydantic's usual conversions.

    Done in pydantic-core, so the one-pass decoding of a valid event stays one pass with no Python call.
    """

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        schema = handler(source)
        if schema["type"] == "literal":  # a literal has no strict flag: require a JSON integer first
            wire: CoreSchema = cs.chain_schema([cs.int_schema(strict=True), schema])
        else:
            wire = {**schema, "strict": True}
        return cs.json_or_python_schema(json_schema=wire, python_schema=schema)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        # The same constraints either way; the Python side keeps a literal's `const` (the chain would drop it).
        return handler(schema["python_schema"] if schema["type"] == "json-or-python" else schema)


@dataclass(frozen=True)
class WireText:
    """On the wire the value is a JSON string matching `pattern`, then read as the field's type. pydantic alone
    would also read a sign, an exponent or padding in an amount, and a number (or a string of digits) as a
    unix time. Python callers (the ingest adapters, tests) may pass the type itself."""

    pattern: str
    format: str | None = None  # the JSON Schema `format` to keep stating

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        schema = handler(source)
        wire = cs.chain_schema([cs.str_schema(pattern=self.pattern, strict=True), schema])
        return cs.json_or_python_schema(json_schema=wire, python_schema=schema)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        stated = {"type": "string", "pattern": self.pattern}
        return stated if self.format is None else {**stated, "format": self.format}


NPI = Annotated[str, Field(pattern=r"^[0-9]{10}$"), AfterValidator(_check_npi)]
# Inbound amounts (line and adjustment amounts): bounded so that every sum the engine forms stays publishable.
Amount = Annotated[
    Decimal,
    Field(ge=0, le=MAX_AMOUNT, decimal_places=2, allow_inf_nan=False),
    WireText(AMOUNT_PATTERN),
    PlainSerializer(_money_to_string, return_type=str, when_used="always"),
]
# Outbound amounts (sums of inbound ones).
Money = Annotated[
    Decimal,
    BeforeValidator(_money_from_string),
    Field(max_digits=14, decimal_places=2, allow_inf_nan=False),
    PlainSerializer(_money_to_string, return_type=str, when_used="always"),
]
Code = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9.]+$")]
Identifier = Annotated[str, Field(min_length=1, max_length=128)]
EventDate = Annotated[
    date,
    Field(
        ge=EARLIEST_DATE,
        le=LATEST_DATE,
        json_schema_extra={"formatMinimum": EARLIEST_DATE.isoformat(), "formatMaximum": LATEST_DATE.isoformat()},
    ),
    StrictOnTheWire(),
]
EventTime = Annotated[
    AwareDatetime,
    Field(
        ge=EARLIEST_TIME,
        lt=TIME_LIMIT,
        json_schema_extra={"formatMinimum": "1900-01-01T00:00:00Z", "formatExclusiveMaximum": "2200-01-01T00:00:00Z"},
    ),
    WireText(TIME_PATTERN, format="date-time"),
]
SchemaVersion = Annotated[Literal[1], StrictOnTheWire()]
LineNumber = Annotated[int, Field(ge=1, le=INT32_MAX), StrictOnTheWire()]
Minutes = Annotated[int, Field(ge=0, le=24 * 60), StrictOnTheWire()]


class Contract(BaseModel):
    """Inbound contracts tolerate fields they do not know, so publishers can add data without breaking us."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Envelope(Contract):
    event_type: str
    schema_version: SchemaVersion
    event_id: Identifier
    occurred_at: EventTime
    source: Identifier
