"""The code book: which root cause a denial adjustment points to. The mapping is data, so coders can tune it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path

from schemas import DenialLine, RootCause


@dataclass(frozen=True)
class CarcRule:
    root_cause: RootCause
    refined_by_rarc: bool = False


@dataclass(frozen=True)
class Finding:
    """What one denied line says about one root cause: the money at stake and the codes that said so."""

    root_cause: RootCause
    amount: Decimal
    reason_codes: tuple[str, ...]


@dataclass(frozen=True)
class CodeBook:
    not_denials: frozenset[str]
    carc: dict[str, CarcRule]
    unknown_carc: CarcRule
    rarc: dict[str, RootCause]
    category: dict[RootCause, str]
    clinician_facing: frozenset[RootCause]
    owner: dict[RootCause, str]  # the team that can fix it; teams are defined in routing.json

    @classmethod
    def load(cls, path: Path | None = None) -> CodeBook:
        if path is None:
            text = resources.files("engine.domain").joinpath("data/codebook.json").read_text("utf-8")
        else:
            text = path.read_text("utf-8")
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CodeBook:
        def rule(entry: dict[str, object]) -> CarcRule:
            return CarcRule(RootCause(str(entry["root_cause"])), bool(entry.get("refined_by_rarc", False)))

        carc = data["carc"]
        rarc = data["rarc"]
        causes = data["root_causes"]
        assert isinstance(carc, dict) and isinstance(rarc, dict) and isinstance(causes, dict)
        unknown = data["unknown_carc"]
        assert isinstance(unknown, dict)
        missing = set(RootCause) - {RootCause(name) for name in causes}
        if missing:
            raise ValueError(f"code book has no entry for root causes: {sorted(missing)}")
        for name, entry in causes.items():
            owner = entry.get("owner") if isinstance(entry, dict) else None
            if not isinstance(owner, str) or not owner:
                raise ValueError(
                    f"codebook.json: root_causes.{name}.owner: missing; name the team that can fix it "
                    "(one of the teams in routing.json)"
                )
        return cls(
            not_denials=frozenset(str(code) for code in data["not_denials"]),  # type: ignore[attr-defined]
            carc={str(code): rule(entry) for code, entry in carc.items()},
            unknown_carc=rule(unknown),
            rarc={str(code): RootCause(cause) for code, cause in rarc.items()},
            category={RootCause(name): str(entry["category"]) for name, entry in causes.items()},
            clinician_facing=frozenset(RootCause(name) for name, entry in causes.items() if entry["clinician"]),
            owner={RootCause(name): str(entry["owner"]) for name, entry in causes.items()},
        )

    def is_clinician_facing(self, root_cause: RootCause) -> bool:
        return root_cause in self.clinician_facing

    def root_cause_of(self, group_code: str, reason_code: str, remark_codes: list[str]) -> RootCause | None:
        """None when the adjustment is not a denial (cost sharing, fee schedule, sequestration)."""
        if f"{group_code}-{reason_code}" in self.not_denials:
            return None
        rule = self.carc.get(reason_code, self.unknown_carc)
        if rule.refined_by_rarc:
            # Umbrella CARCs (16, 252, 96...) only say "something is wrong"; the first RARC that names it wins.
            for remark in remark_codes:
                if remark in self.rarc:
                    return self.rarc[remark]
        return rule.root_cause

    def classify(self, line: DenialLine) -> list[Finding]:
        """One finding per root cause on the line, in the order the adjustments name them."""
        amounts: dict[RootCause, Decimal] = {}
        codes: dict[RootCause, list[str]] = {}
        for adjustment in line.adjustments:
            cause = self.root_cause_of(adjustment.group_code, adjustment.reason_code, line.remark_codes)
            if cause is None:
                continue
            amounts[cause] = amounts.get(cause, Decimal("0")) + adjustment.amount
            reason = f"{adjustment.group_code}-{adjustment.reason_code}"
            cause_codes = codes.setdefault(cause, [])
            if reason not in cause_codes:
                cause_codes.append(reason)
        findings = []
        for cause, amount in amounts.items():
            remarks = [r for r in line.remark_codes if self.rarc.get(r, cause) == cause]
            findings.append(Finding(cause, amount, tuple(codes[cause] + [r for r in remarks if r not in codes[cause]])))
        return findings
