"""Reading total time and MDM level from a note's text: explicit statements only, anything unclear stays unknown."""

from __future__ import annotations

import pytest

from engine.ingest.notetext import TextFacts, read_text_facts


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("Total time: 45 minutes", 45),
        ("Total time spent on the date of the encounter: 41 minutes.", 41),
        ("I spent a total time of 32 min with the patient and family.", 32),
        ("total time was 20 minutes", 20),
        ("Total time: 45 minutes.\n...\nTotal time: 45 minutes", 45),  # a repeated statement is still one
        ("Total time: 30-45 minutes", None),  # a range is not a total
        ("Total time 45 minutes to 60 minutes", None),
        ("Total time: 45 minutes. Addendum: total time: 50 minutes", None),  # contradicting statements
        ("Total time not documented", None),
        ("Time: 45 minutes", None),  # not stated as the total
        ("Total time: greater than 40 minutes", None),
        ("", None),
    ],
)
def test_total_time_is_read_only_from_an_explicit_statement(text: str, minutes: int | None) -> None:
    assert read_text_facts(text).total_time_minutes == minutes


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("MDM: Moderate", "moderate"),
        ("Medical decision making: high complexity", "high"),
        ("Medical Decision-Making: Straightforward", "straightforward"),
        ("Level of MDM: low", "low"),
        ("MDM is moderate.", "moderate"),
        ("Moderate complexity MDM.", "moderate"),
        ("high-complexity medical decision making", "high"),
        ("MDM: low to moderate", None),  # a range states no level
        ("Low to moderate complexity MDM", None),
        ("MDM: [ ] Straightforward [x] Low", None),  # a template is not a statement
        ("MDM is not high", None),
        ("MDM: moderate risk of complications", None),  # one element of MDM, not its level
        ("Level of MDM: Moderate\nMDM: high", None),  # contradicting statements
        ("The patient is at high risk.", None),
    ],
)
def test_mdm_level_is_read_only_from_an_explicit_statement(text: str, level: str | None) -> None:
    assert read_text_facts(text).mdm_level == level


def test_both_facts_are_read_from_one_note() -> None:
    text = "HPI: follow-up.\nAssessment and plan: continue.\nTotal time: 42 minutes\nMDM: moderate\n"

    assert read_text_facts(text) == TextFacts(total_time_minutes=42, mdm_level="moderate")
