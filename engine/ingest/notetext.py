"""Documentation facts read from the plain text of a note, conservatively.

Only two explicit statements are read: a total time ("Total time: 45 minutes") and a medical decision making
level ("MDM: moderate", "Medical decision making: high complexity", "Moderate complexity MDM").
Anything hedged, ranged, negated or contradicted stays unknown (None): a wrong fact would send a clinician
a wrong pre-bill alert, an unknown one only means the check cannot pass on this note.
The text itself never leaves this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.inbound import MdmLevel

_LEVEL = r"(straightforward|low|moderate|high)"
_MDM = r"(?:medical\s+decision[\s-]+making|mdm)"
_NOT_A_RANGE = r"(?!\s*(?:to|-|/|or|and)\s*(?:straightforward|low|moderate|high))"

_TOTAL_TIME = re.compile(
    r"\btotal\s+time"
    r"(?:\s+(?:spent|personally\s+spent))?"
    r"(?:\s+(?:on|for|with|in|during)\s+[a-z ,']{1,60}?)?"
    r"\s*(?::|=|-|\bwas\b|\bof\b|\bis\b)?\s*"
    r"(\d{1,3})\s*(?:minutes|minute|mins|min)\b"
    r"(?!\s*(?:to|-|or)\s*\d)",
    re.IGNORECASE,
)
_MDM_STATED = re.compile(
    _MDM
    + r"(?:\s+(?:level|complexity))?\s*(?::|=|-|\bis\b|\bwas\b)\s*(?:of\s+)?"
    + _LEVEL
    + r"\b"
    + _NOT_A_RANGE
    + r"(?!\s+risk)",  # "MDM: moderate risk" speaks of one element of MDM, not its level
    re.IGNORECASE,
)
_MDM_QUALIFIED = re.compile(
    r"(?<![a-z])" + _LEVEL + r"(?:\s+|-)(?:complexity|level)\s+(?:of\s+)?" + _MDM + r"\b",
    re.IGNORECASE,
)
_RANGE_WORD_BEFORE = re.compile(r"(?:to|-|/|or|and)\s*$", re.IGNORECASE)
_LEVELS: dict[str, MdmLevel] = {
    "straightforward": "straightforward",
    "low": "low",
    "moderate": "moderate",
    "high": "high",
}


@dataclass(frozen=True)
class TextFacts:
    total_time_minutes: int | None = None
    mdm_level: MdmLevel | None = None


def read_text_facts(text: str) -> TextFacts:
    return TextFacts(total_time_minutes=_total_time(text), mdm_level=_mdm_level(text))


def _total_time(text: str) -> int | None:
    values = set()
    for match in _TOTAL_TIME.finditer(text):
        values.add(int(match.group(1)))
    # Two different totals in one note: we cannot tell which one the clinician meant.
    return values.pop() if len(values) == 1 else None


def _mdm_level(text: str) -> MdmLevel | None:
    levels: set[str] = {match.group(1).lower() for match in _MDM_STATED.finditer(text)}
    for match in _MDM_QUALIFIED.finditer(text):
        if _RANGE_WORD_BEFORE.search(text[: match.start()]):
            return None  # "low to moderate complexity MDM" states no one level
        levels.add(match.group(1).lower())
    return _LEVELS[levels.pop()] if len(levels) == 1 else None
