"""The HTML report in a real browser (Debian's chromium, driven headless by Playwright), at 1400 and 400 px.

Screenshots of both widths land in test-artifacts/report/ (git-ignored) for people to look at."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.report import status_text
from engine.report_html import SECTIONS

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "report"
WIDTHS = (1400, 400)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (make test installs it: make chromium)"
)


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return done.stdout


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        # Never `playwright install`: the system's chromium, and no sandbox because the tests may run as root.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


def replayed(tmp_path_factory: pytest.TempPathFactory, name: str, *simulate: str) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp(name)
    events = ROOT / "engine" / "examples" / "scenario.jsonl"
    if simulate:
        events = out / "events.jsonl"
        cli("simulate", *simulate, "--out", str(events))
    cli("replay", str(events), "--out", str(out / "store"))
    store = f"sqlite+aiosqlite:///{out / 'store' / 'docloop.db'}"
    page = out / "report.html"
    cli("report", "--database-url", store, "--format", "html", "--out", str(page))
    report: dict[str, Any] = json.loads(cli("report", "--database-url", store, "--format", "json"))
    return page, report


@pytest.fixture(scope="module", params=["scenario", "quarter"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, Any]]:
    if request.param == "scenario":
        return request.param, *replayed(tmp_path_factory, "scenario")
    return request.param, *replayed(tmp_path_factory, "quarter", "--seed", "7", "--providers", "20", "--days", "91")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_report_reads_well_in_chromium(browser: Any, world: tuple[str, Path, dict[str, Any]], width: int) -> None:
    name, path, report = world
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)

    assert errors == []
    assert requests == [path.as_uri()]  # offline: the page fetches nothing
    # No sideways scroll: wide tables scroll inside their own box, charts shrink to the width.
    assert page.evaluate("document.documentElement.scrollWidth") <= page.evaluate("window.innerWidth")
    too_wide = page.evaluate(
        "[...document.querySelectorAll('svg.chart')].filter(s => s.getBoundingClientRect().right > innerWidth + 1)"
        ".length"
    )
    assert too_wide == 0
    headings = page.locator("h2").all_inner_texts()
    assert headings == list(SECTIONS.values())
    for key in SECTIONS:
        assert page.locator(f"section#{key}").is_visible()

    # The numbers shown are the numbers of `--format json`.
    totals = report["totals"]
    shown = {key: page.locator(f'[data-key="{key}"]').inner_text() for key in ("amount_at_risk_open", "open")}
    assert shown == {
        "amount_at_risk_open": f"${Decimal(totals['amount_at_risk_open']):,.2f}",
        "open": str(totals["open"]),
    }
    assert page.locator('[data-key="escalations_open"]').inner_text() == f"{totals['escalations_open']:,}"
    providers = rows(page, "providers")
    assert [r[1] for r in providers] == [f"${Decimal(p['amount_at_risk']):,.2f}" for p in report["by_provider"][:20]]
    assert [r[0].split("NPI ")[-1] for r in providers] == [p["provider_npi"] for p in report["by_provider"][:20]]
    patterns = rows(page, "patterns")
    assert [(r[2], r[3]) for r in patterns] == [
        (f"${Decimal(p['amount_at_risk']):,.2f}", str(p["case_count"])) for p in report["patterns"][:20]
    ]
    # Status is a word with a symbol, not a colour alone.
    assert all(r[0] in {status_text(s) for s in ("open", "resolved", "dormant", "withdrawn")} for r in patterns)
    escalations = rows(page, "escalations")
    assert len(escalations) == min(20, len(report["escalations"]))
    assert all(r[0] in {"● open", "✓ closed"} and r[1].isdigit() for r in escalations)
    page.close()


def rows(page: Any, table: str) -> list[list[str]]:
    cells: list[list[str]] = page.eval_on_selector_all(
        f'table[data-table="{table}"] tbody tr', "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )
    return cells
