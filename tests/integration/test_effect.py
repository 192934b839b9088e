"""The effect figure on simulated worlds whose truth is known: it finds learning where the simulator put it,
and says "no measurable effect" in the same world where nobody learns."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.database import connect
from engine.report import build_report
from engine.simulate import SimulationConfig, simulate
from engine.simulate.cli import write_events

ROOT = Path(__file__).resolve().parents[2]
# Every provider with a habit learns (or, with factor 1.0, nobody does: the same roster, the same habits).
WORLD = {"seed": 1, "days": 120, "habit_share": 0.6, "learner_share": 1.0}


def clinical_effect(tmp: Path, learned_gap_factor: float) -> dict[str, Any]:
    events = tmp / "events.jsonl"
    with events.open("w", encoding="utf-8") as stream:
        write_events(simulate(SimulationConfig(**WORLD, learned_gap_factor=learned_gap_factor)).events, stream)
    out = tmp / "out"
    subprocess.run(
        [sys.executable, "-m", "engine.cli", "replay", str(events), "--out", str(out)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )

    async def report() -> dict[str, Any]:
        database = connect(f"sqlite+aiosqlite:///{out / 'docloop.db'}")
        try:
            return await build_report(database, denial_lag_days=45)
        finally:
            await database.dispose()

    effect: dict[str, Any] = asyncio.run(report())["effect_estimate"]
    assert effect["headline"] == "clinical"
    clinical: dict[str, Any] = effect["clinical"]
    return clinical


def test_the_estimate_recovers_the_simulated_learning_within_its_interval(tmp_path: Path) -> None:
    factor = 0.1
    clinical = clinical_effect(tmp_path, factor)
    assert clinical["verdict"] == "fewer cases after feedback"
    # The simulator's learners cut their gaps (so their documentation denials) to `factor` of the rate before
    # feedback: on the treated units that is a change of (factor - 1) x their rate before.
    simulated = (factor - 1) * clinical["treated_per_100_notes"]["before"]
    low, high = clinical["interval_95"]
    assert low <= simulated <= high < 0
    assert clinical["patterns"] >= 20 and clinical["providers"] >= 10 and clinical["notes"]["treated_after"] > 1000


def test_a_world_where_nobody_learns_shows_no_measurable_effect(tmp_path: Path) -> None:
    clinical = clinical_effect(tmp_path, 1.0)
    assert clinical["verdict"] == "no measurable effect"
    low, high = clinical["interval_95"]
    assert low <= 0 <= high
