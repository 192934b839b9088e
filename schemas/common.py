"""Building blocks shared by every Docloop event: the envelope, money, NPIs and the root-cause vocabulary."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

SCHEMA_VERSION = 1


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
    if len(npi) != 10 or not npi.isdigit():
        return False
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


NPI = Annotated[str, Field(pattern=r"^\d{10}$"), AfterValidator(_check_npi)]
Money = Annotated[
    Decimal,
    BeforeValidator(_money_from_string),
    Field(max_digits=14, decimal_places=2, allow_inf_nan=False),
    PlainSerializer(_money_to_string, return_type=str, when_used="always"),
]
Code = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9.]+$")]
Identifier = Annotated[str, Field(min_length=1, max_length=128)]


class Contract(BaseModel):
    """Inbound contracts tolerate fields they do not know, so publishers can add data without breaking us."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Envelope(Contract):
    event_type: str
    schema_version: int = Field(ge=1)
    event_id: Identifier
    occurred_at: AwareDatetime
    source: Identifier
