"""README's configuration reference is generated from the settings model and must not drift from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from engine.settings import REFERENCE_BEGIN, REFERENCE_END, Settings, reference, replace_reference

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    assert REFERENCE_BEGIN in text and REFERENCE_END in text, "README.md lost its settings markers"
    return text.split(REFERENCE_BEGIN, 1)[1].split(REFERENCE_END, 1)[0].lstrip("\n")


def test_readme_configuration_matches_the_settings_model() -> None:
    assert readme_section() == reference(), (
        "README.md's configuration reference is out of date: run `python -m engine.settings --write README.md`"
    )


def test_every_setting_is_documented_with_a_description() -> None:
    undocumented = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undocumented == []
    table = reference()
    for name in Settings.model_fields:
        assert f"`DOCLOOP_{name.upper()}`" in table


def test_secrets_are_never_shown() -> None:
    table = reference()
    assert "docloop-development-key" not in table
    row = next(line for line in table.splitlines() if "`DOCLOOP_PHI_HASH_KEY`" in line)
    assert "(unset)" in row  # no built-in key: unset means a random key made at the first start
    row = next(line for line in table.splitlines() if "`DOCLOOP_KAFKA_SASL_PASSWORD`" in line)
    assert "| secret |" in row


def test_replace_reference_rewrites_only_between_the_markers() -> None:
    document = f"# title\n\nbefore\n{REFERENCE_BEGIN}\nstale\n{REFERENCE_END}\nafter\n"
    updated = replace_reference(document)
    assert updated == f"# title\n\nbefore\n{REFERENCE_BEGIN}\n{reference()}{REFERENCE_END}\nafter\n"
    assert replace_reference(updated) == updated


def test_python_m_engine_settings_prints_the_reference() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "engine.settings"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout == reference()
