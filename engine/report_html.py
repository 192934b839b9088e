"""`docloop report --format html`: the page a revenue-cycle director opens on Monday, as one self-contained file.

The summary comes first (dollars at risk and their trend, the data's date range, where the loop works and where it
does not, what is escalated to whom and for how long); then the tables, sorted by dollars at risk and then cases and
cut to the top N (`--limit`; every row is in `--format csv` / `--format json`). The page reads only the report dict
that `build_report` returns, so every number in it is a number `--format json` prints. Nothing is fetched when the
page is viewed. Charts scale to the width of the screen (viewBox, width 100%); wide tables scroll inside their own
box, never the page. Status is written as a word with a symbol, never as a colour alone. Each data point of a chart
is a `class="bar"` rect so that tests and people can count what is drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta
from decimal import Decimal
from html import escape
from typing import Any

from engine.report import (
    DEFAULT_LIMIT,
    co_signed_note,
    date_range_text,
    dollars,
    escalation_order,
    escalation_text,
    format_rate,
    owner_label,
    plural,
    provider_title,
    reason_label,
    root_cause_label,
    scope_title,
    signed_dollars,
    status_text,
    two_providers_note,
    verdict,
    week_start,
)

SECTIONS = {
    "summary": "Summary",
    "providers": "Providers by dollars at risk",
    "departments": "Departments by dollars at risk",
    "root-causes": "Root causes by dollars at risk",
    "escalations": "Escalations: owner, reason, age",
    "volume": "Messages per recipient",
    "loop": "Where the loop works",
    "cases-per-week": "Cases per week, before and after feedback",
    "patterns": "Patterns by dollars at risk",
}

_SVG_NS = "http://www.w3.org/2000/svg"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Colour-blind-safe (Okabe-Ito): counts in blue, money in vermillion, notes (exposure) in grey.
_COUNT_COLOUR = "#0072B2"
_MONEY_COLOUR = "#D55E00"
_NOTES_COLOUR = "#9aa5b1"
_BEFORE_COLOUR = "#9aa5b1"
_AFTER_COLOUR = "#0072B2"
_VERDICTS = {"works": "▼ works", "does_not_work": "▲ does not work", "no_data": "– no notes after feedback"}

_CSS = """
:root { --ink: #1f2933; --muted: #52606d; --rule: #d9e2ec; --panel: #f5f7fa; --accent: #0b5394; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 25px; margin: 0 0 4px; line-height: 1.2; }
h2 { font-size: 19px; margin: 34px 0 8px; padding-bottom: 6px; border-bottom: 2px solid var(--rule); }
h3 { font-size: 14px; margin: 14px 0 6px; color: var(--muted); font-weight: 600; }
p, li { max-width: 900px; }
p { margin: 6px 0 12px; }
code { font-size: 13px; overflow-wrap: anywhere; }
.meta, .note { color: var(--muted); }
.note { font-size: 13px; }
nav { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 12px 0 0; font-size: 13px; }
nav a { color: var(--accent); }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 200px), 1fr)); gap: 12px;
        margin: 14px 0 8px; }
.kpi { background: var(--panel); border-radius: 8px; padding: 12px 14px; }
.kpi .value { font-size: 23px; font-weight: 650; font-variant-numeric: tabular-nums; overflow-wrap: break-word; }
.kpi .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.kpi .sub { font-size: 13px; margin-top: 2px; }
.findings { padding-left: 20px; margin: 12px 0; }
.findings li { margin: 4px 0; }
.pair { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 420px), 1fr)); gap: 8px 28px; }
figure { margin: 0; min-width: 0; max-width: 100%; break-inside: avoid; page-break-inside: avoid; }
figure.weekly { max-width: 680px; }
svg.chart { display: block; width: 100%; max-width: 100%; height: auto; font-family: inherit; }
svg text { fill: var(--ink); font-size: 12px; }
svg .tick { fill: var(--muted); font-size: 11px; }
svg.weekly-chart .tick { font-size: 14px; }
svg .grid { stroke: var(--rule); stroke-width: 1; }
svg .baseline { stroke: #9aa5b1; stroke-width: 1; }
svg .marker { stroke: #a61b1b; stroke-width: 1.5; stroke-dasharray: 4 3; }
svg .marker-label { fill: #a61b1b; font-size: 11px; }
svg .after-zone { fill: #eef4fb; }
svg .no-data { fill: url(#no-data-hatch); stroke: #cbd2d9; }
svg .no-data-label { fill: var(--muted); font-size: 11px; font-style: italic; }
.multiples { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 300px), 1fr)); gap: 14px 18px; }
.multiple { border: 1px solid var(--rule); border-radius: 6px; padding: 8px 10px 6px; }
.multiple figcaption { font-size: 13px; line-height: 1.35; margin-bottom: 4px; overflow-wrap: anywhere; }
.multiple figcaption .who { font-weight: 600; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; font-size: 13px; color: var(--muted); margin: 4px 0 10px; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 5px;
          vertical-align: -1px; }
.swatch.hatch { background: repeating-linear-gradient(45deg, #cbd2d9 0 2px, #fff 2px 5px); border: 1px solid #cbd2d9; }
.table-wrap { overflow-x: auto; max-width: 100%; margin: 8px 0 4px; border: 1px solid var(--rule); border-radius: 6px; }
.table-wrap:focus { outline: 2px solid var(--accent); }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
caption { text-align: left; padding: 6px 8px; color: var(--muted); font-size: 12px; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--rule); text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td { overflow-wrap: break-word; }
td.code { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.nowrap { white-space: nowrap; }
.npi { color: var(--muted); font-size: 12px; white-space: nowrap; }
tr.overall td { font-weight: 650; background: #fbfcfd; }
.status { white-space: nowrap; font-weight: 600; }
.status.open { color: #9b1c1c; } .status.resolved, .status.closed { color: #03543f; }
.better { color: #03543f; } .worse { color: #9b1c1c; }
.empty { color: var(--muted); font-style: italic; }
.more { font-size: 13px; color: var(--muted); }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--rule); padding-top: 10px; }
@media (max-width: 600px) {
  main { padding: 14px 12px 32px; }
  h1 { font-size: 21px; }
  h2 { font-size: 17px; margin-top: 26px; }
  .kpi .value { font-size: 20px; }
}
@media print {
  main { max-width: none; padding: 0; }
  nav { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  .table-wrap { overflow: visible; border: none; }
  @page { margin: 14mm; }
}
"""

# One hatch pattern for every chart's "no data" weeks (an inline SVG's defs serve the whole document).
_DEFS = (
    f'<svg xmlns="{_SVG_NS}" width="0" height="0" style="position:absolute" aria-hidden="true" focusable="false">'
    '<defs><pattern id="no-data-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/>'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#cbd2d9" stroke-width="3"/></pattern></defs></svg>'
)


def render_html(report: dict[str, Any], limit: int | None = DEFAULT_LIMIT) -> str:
    """The page; `limit` rows per table and panels per chart (None or 0: all)."""
    page = _Page(report, limit or None)
    title = f"Docloop report: {scope_title(report)}"
    body = [
        _DEFS,
        "<main>",
        "<header>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">Data: {escape(date_range_text(report))}. Clock {escape(report["clock"] or "not started")}. '
        "Every figure on this page comes from the same data as <code>docloop report --format json</code>; every "
        "pattern, one row each, is in <code>--format csv</code>.</p>",
        '<nav aria-label="sections">'
        + "".join(f'<a href="#{key}">{escape(name)}</a>' for key, name in SECTIONS.items())
        + "</nav>",
        "</header>",
        page.summary(),
        page.providers(),
        page.departments(),
        page.root_causes(),
        page.escalations(),
        page.volume(),
        page.loop(),
        page.cases_per_week(),
        page.patterns(),
        "<footer>Docloop: the loop between clinical documentation and billing denials. Provider names and NPIs only; "
        "this page carries no patient identifiers.</footer>",
        "</main>",
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
        ]
    )


class _Page:
    def __init__(self, report: dict[str, Any], limit: int | None) -> None:
        self.report = report
        self.limit = limit
        # Every listed pattern's provider (undercoding and withdrawn patterns are listed, not in the figures).
        self.names = {p["provider_npi"]: p["provider_name"] for p in report["patterns"]}
        self.names |= {r["provider_npi"]: r["provider_name"] for r in report["by_provider"]}
        self.by_id = {p["pattern_id"]: p for p in report["patterns"]}

    def top(self, rows: Sequence[Any]) -> Sequence[Any]:
        return rows[: self.limit] if self.limit else rows

    def more(self, shown: int, total: int, what: str, export: str) -> str:
        if shown >= total:
            return ""
        return (
            f'<p class="more">Showing the top {shown:,} of {total:,} {what}. Every row: <code>docloop report '
            f"--format {export}</code> (or <code>--limit 0</code>).</p>"
        )

    def who(self, npi: str) -> str:
        name = self.names.get(npi)
        if not name:
            return f'<span class="npi">NPI {escape(npi)}</span>'
        return f'{escape(name)} <span class="npi">NPI {escape(npi)}</span>'

    # ---- sections --------------------------------------------------------------------------------------------

    def summary(self) -> str:
        report, totals = self.report, self.report["totals"]
        trend = report["at_risk_trend"]
        overall = report["effect"]["overall"]
        owners = report["escalations_open_by_owner"]
        oldest = max((o["oldest_age_days"] for o in owners), default=None)
        trend_sub = ""
        if trend["weeks"]:
            change = Decimal(trend["change"])
            arrow = "▲" if change > 0 else "▼" if change < 0 else "="
            trend_sub = f"{arrow} {signed_dollars(trend['change'])} over {plural(trend['weeks'], 'week')}"
        trend_sub += two_providers_note(totals)
        cards = [
            ("amount_at_risk_open", "Dollars at risk", dollars(totals["amount_at_risk_open"]), trend_sub),
            (
                "open",
                "Open patterns",
                f"{totals['open']:,}",
                f"{plural(totals['cases_open'], 'case')}; {totals['patterns']:,} patterns in all",
            ),
            (
                "escalations_open",
                "Open escalations",
                f"{totals['escalations_open']:,}",
                f"oldest {plural(oldest, 'day')}" if oldest is not None else "none open",
            ),
            self._effect_card(overall),
        ]
        kpis = (
            '<div class="kpis">'
            + "".join(
                f'<div class="kpi"><div class="label">{escape(label)}</div>'
                f'<div class="value" data-key="{key}">{escape(value)}</div>'
                f'<div class="sub">{escape(sub)}</div></div>'
                for key, label, value, sub in cards
            )
            + "</div>"
        )
        works = [r for r in report["loop"]["by_department"] if r["verdict"] == "works"]
        fails = [r for r in report["loop"]["by_department"] if r["verdict"] == "does_not_work"]
        unmeasured = [r for r in report["loop"]["by_department"] if r["verdict"] == "no_data"]

        def loop_phrase(r: dict[str, Any]) -> str:
            return (
                f"<strong>{escape(r['department'])}</strong> ({format_rate(r['before_per_100_notes'])} → "
                f"{format_rate(r['after_per_100_notes'])} per 100 notes, {plural(r['patterns_compared'], 'pattern')})"
            )

        findings = [
            "<strong>Where the loop works</strong> (fewer denials per 100 notes after feedback): "
            + ("; ".join(loop_phrase(r) for r in works) or "nowhere measurable yet"),
            "<strong>Where it does not</strong>: "
            + ("; ".join(loop_phrase(r) for r in fails) or "nowhere measurable yet"),
        ]
        if unmeasured:
            findings.append(
                "<strong>Not measurable yet</strong> (no notes signed after feedback): "
                + ", ".join(escape(r["department"]) for r in unmeasured)
            )
        findings.append(f"<strong>Escalated</strong>: {escape(escalation_text(report))}")
        estimate = report.get("effect_estimate")
        if estimate:
            clinical = estimate["clinical"]
            figure = (
                f"{clinical['estimate_per_100_notes']:+.2f} denials per 100 notes (95% interval "
                f"{clinical['interval_95'][0]:+.2f} to {clinical['interval_95'][1]:+.2f}): {clinical['verdict']}"
                if clinical["estimate_per_100_notes"] is not None
                else clinical["verdict"]
            )
            findings.append(
                "<strong>Effect of feedback to clinicians</strong> (against providers not told, difference in "
                f"differences): {escape(figure)}; {plural(clinical['patterns'], 'pattern')}, "
                f"{plural(clinical['providers'], 'provider')}"
            )
        findings.append(
            f"<strong>Not counted as working</strong>: {plural(totals['dormant'], 'dormant pattern')} (no visits to "
            f"judge by), {plural(totals['withdrawn'], 'withdrawn pattern')} (disputed and withdrawn on review); "
            f"{plural(totals['disputes'], 'dispute')}, {totals['under_review']:,} under review"
        )
        under = report.get("undercoding")
        if under and under["patterns"]:
            findings.append(
                f"<strong>Undercoding</strong> (apart from denials): {plural(under['patterns'], 'pattern')}, "
                f"{plural(under['cases'], 'note')}, {dollars(under['unbilled_estimate'])} estimated left unbilled"
                f"{co_signed_note(under)}"
            )
        worst = [*report["by_provider"][:3]]
        if worst and Decimal(worst[0]["amount_at_risk"]) > 0:
            findings.append(
                "<strong>Most at risk</strong>: "
                + "; ".join(
                    f"{escape(provider_title(r['provider_npi'], r['provider_name']))} {dollars(r['amount_at_risk'])}"
                    for r in worst
                    if Decimal(r["amount_at_risk"]) > 0
                )
            )
        chart = self._at_risk_chart()
        return _section(
            "summary",
            kpis,
            '<ul class="findings">' + "".join(f"<li>{f}</li>" for f in findings) + "</ul>",
            chart,
        )

    def _effect_card(self, overall: dict[str, Any]) -> tuple[str, str, str, str]:
        """The headline is the clinical estimate against providers not told (issue #12), not the raw
        before/after rates, which would credit feedback with what a quiet season or a lost payer did."""
        estimate = self.report.get("effect_estimate")
        if not estimate:
            return (
                "effect",
                "Denials / 100 notes",
                f"{format_rate(overall['before_per_100_notes'])} → {format_rate(overall['after_per_100_notes'])}",
                f"before → after feedback, {plural(overall['patterns_compared'], 'pattern')} compared",
            )
        clinical = estimate["clinical"]
        if clinical["estimate_per_100_notes"] is None:
            return (
                "effect",
                "Effect of feedback",
                clinical["verdict"],
                "clinical patterns, against providers not told",
            )
        low, high = clinical["interval_95"]
        return (
            "effect",
            "Effect of feedback",
            f"{clinical['estimate_per_100_notes']:+.2f} / 100 notes",
            f"95% interval {low:+.2f} to {high:+.2f}: {clinical['verdict']}",
        )

    def _at_risk_chart(self) -> str:
        weeks: list[dict[str, Any]] = self.report["at_risk_by_week"]
        if not weeks:
            return '<p class="empty">No dollars at risk yet.</p>'
        bars = [
            (
                date.fromisoformat(w["week"]),
                float(w["amount_at_risk"]),
                f"{dollars(w['amount_at_risk'])}, {plural(w['open_patterns'], 'open pattern')}",
            )
            for w in weeks
        ]
        last_visit = self.report["data_range"]["last_service_date"]
        no_data_from = week_start(date.fromisoformat(last_visit)) + timedelta(weeks=1) if last_visit else None
        chart = _figure(
            "Dollars at risk in open patterns, at the end of each week",
            _week_bars("at-risk-by-week", bars, _MONEY_COLOUR, _short_money, "dollars at risk by week", no_data_from),
            "weekly",
        )
        if no_data_from is None or no_data_from > date.fromisoformat(weeks[-1]["week"]):
            return chart
        return chart + (
            f'<p class="note">Hatched: weeks after the last visit in the data ({escape(last_visit or "")}). There, '
            "patterns resolve for want of new visits, not because documentation improved.</p>"
        )

    def providers(self) -> str:
        rows = self.report["by_provider"]
        if not rows:
            return _section("providers", '<p class="empty">No patterns yet.</p>')
        shown = self.top(rows)
        body = [
            [
                self.who(r["provider_npi"]),
                _num_text(dollars(r["amount_at_risk"])),
                _num(r["open_patterns"]),
                _num(r["cases"]),
                _num(r["escalations_open"]),
                escape(r["department"]),
            ]
            for r in shown
        ]
        return _section(
            "providers",
            _table(
                "providers",
                ["Provider", "#At risk", "#Open patterns", "#Cases", "#Open escalations", "Department"],
                body,
            ),
            self.more(len(shown), len(rows), "providers", "json"),
        )

    def departments(self) -> str:
        rows = self.report["by_department"]
        if not rows:
            return _section("departments", '<p class="empty">No patterns yet.</p>')
        shown = self.top(rows)
        body = [
            [
                escape(r["department"]),
                _num_text(dollars(r["amount_at_risk"])),
                _num(r["open_patterns"]),
                _num(r["cases"]),
                _num(r["providers_open"]),
                _num(r["escalations_open"]),
            ]
            for r in shown
        ]
        return _section(
            "departments",
            _table(
                "departments",
                ["Department", "#At risk", "#Open patterns", "#Cases", "#Providers", "#Open escalations"],
                body,
            ),
            self.more(len(shown), len(rows), "departments", "json"),
        )

    def root_causes(self) -> str:
        rows = [r for r in self.report["by_root_cause"] if r["open_patterns"]]
        if not rows:
            return _section("root-causes", '<p class="empty">No open patterns.</p>')
        shown = self.top(rows)
        chart = _labelled_bars(
            "at-risk-by-root-cause",
            [
                (
                    r["label"],
                    float(r["amount_at_risk"]),
                    f"{dollars(r['amount_at_risk'])} · {plural(r['open_patterns'], 'pattern')}",
                )
                for r in shown
            ],
            _MONEY_COLOUR,
            "dollars at risk by root cause",
        )
        body = [
            [
                escape(r["label"]),
                _num_text(dollars(r["amount_at_risk"])),
                _num(r["open_patterns"]),
                _num(r["cases"]),
                "clinician feedback" if r["clinician_facing"] else "billing only",
            ]
            for r in shown
        ]
        return _section(
            "root-causes",
            '<div class="pair">',
            _figure("", chart),
            _table("root-causes", ["Root cause", "#At risk", "#Open patterns", "#Cases", "Who acts"], body),
            "</div>",
            self.more(len(shown), len(rows), "root causes", "json"),
        )

    def escalations(self) -> str:
        escalations = escalation_order(self.report["escalations"])
        if not escalations:
            return _section("escalations", '<p class="empty">No escalations.</p>')
        shown = self.top(escalations)
        body = []
        for e in shown:
            providers = e["providers"]
            listed = ", ".join(self.who(npi) for npi in providers[:3])
            if len(providers) > 3:
                listed += f" and {len(providers) - 3} more"
            body.append(
                [
                    _status("open" if e["open"] else "closed"),
                    _num_text("–" if e["age_days"] is None else f"{e['age_days']:,}"),
                    escape(owner_label(e["owner"] or "unassigned")),
                    escape(reason_label(e["reason"])),
                    escape(root_cause_label(e["root_cause"])),
                    listed or "–",
                    escape(e["department"]),
                    f'<td class="nowrap">{escape(e["created_at"][:10])}</td>',
                ]
            )
        totals = self.report["totals"]
        weeks = self.report["escalations_by_week"]
        chart = _week_bars(
            "escalations-by-week",
            [
                (
                    date.fromisoformat(w["week"]),
                    float(w["total"]),
                    f"{w['total']}: " + ", ".join(f"{n} {reason_label(r)}" for r, n in w["by_reason"].items()),
                )
                for w in weeks
            ],
            _COUNT_COLOUR,
            lambda v: f"{v:g}",
            "escalations raised per week",
        )
        reasons = ", ".join(
            f"{reason_label(r)} {n:,}" for r, n in sorted(totals["escalations_by_reason"].items(), key=lambda i: -i[1])
        )
        return _section(
            "escalations",
            f"<p>{totals['escalations']:,} raised ({escape(reasons)}); {escape(escalation_text(self.report))}. Age: "
            "days from raised to the clock, or to the day its pattern resolved. Open while its pattern (for a "
            "systemic escalation: any pattern of its department and root cause) is open.</p>",
            _table(
                "escalations",
                ["Status", "#Age (days)", "Owner", "Reason", "Root cause", "Provider(s)", "Department", "Raised"],
                body,
            ),
            self.more(len(shown), len(escalations), "escalations, open and oldest first", "json"),
            _figure("Escalations raised per week", chart, "weekly"),
        )

    def volume(self) -> str:
        audiences = self.report["volume"]
        if not any(a["received"] or a["grouped"] or a["inhibited"] or a["silenced"] for a in audiences):
            return _section("volume", '<p class="empty">No messages routed yet.</p>')
        body = [
            [
                escape(a["audience"]),
                _num(a["recipients"]),
                _num(a["received"]),
                _num(a["digests"]),
                _num_text("/".join(str(a["per_day"][k]) for k in ("p50", "p90", "max"))),
                _num_text("/".join(str(a["per_week"][k]) for k in ("p50", "p90", "max"))),
                _num(a["grouped"]),
                _num(a["inhibited"]),
                _num(a["silenced"]),
                _num(a["rate_limited"]),
            ]
            for a in audiences
        ]
        return _section(
            "volume",
            "<p>What people received (a digest, or a message sent on its own), per recipient on the days and weeks "
            "they received any: median, 90th percentile and most. Grouped: listed in a digest instead of sent "
            "alone; inhibited: an escalation covered by its department's systemic one; silenced: held by a "
            "silence; rate limited: over a route's limit (a second pre-bill alert in a day).</p>",
            _table(
                "volume",
                ["Audience", "#Recipients", "#Received", "#Digests", "#Per day p50/p90/max"]
                + ["#Per week p50/p90/max", "#Grouped", "#Inhibited", "#Silenced", "#Rate limited"],
                body,
            ),
        )

    def loop(self) -> str:
        loop = self.report["loop"]
        effect = self.report["effect"]
        overall = effect["overall"]
        intro = (
            "<p>Denial cases per 100 signed notes of the provider, before and after feedback, for the root causes "
            "clinicians get feedback on. Only patterns with notes signed after feedback can show whether the loop "
            "works; the others are counted as not measurable yet.</p>"
        )
        if not loop["by_department"]:
            return _section("loop", intro, '<p class="empty">No clinician has had feedback yet.</p>')

        def rows(field: str, label: Callable[[dict[str, Any]], str]) -> list[list[str]]:
            result = [
                [
                    escape(label(r)),
                    _verdict(r["verdict"]),
                    _num_text(f"{format_rate(r['before_per_100_notes'])} ({r['before_cases']}/{r['before_notes']})"),
                    _num_text(f"{format_rate(r['after_per_100_notes'])} ({r['after_cases']}/{r['after_notes']})"),
                    _num(r["patterns_compared"]),
                    _num(r["patterns_with_feedback"]),
                ]
                for r in self.top(loop[field])
            ]
            return result

        header = [
            "{}",
            "Verdict",
            "#Before: per 100 (cases/notes)",
            "#After: per 100 (cases/notes)",
            "#Compared",
            "#With feedback",
        ]
        overall_row = [
            "<strong>Overall</strong>",
            _verdict(_overall_verdict(overall)),
            _num_text(
                f"{format_rate(overall['before_per_100_notes'])} ({overall['before_cases']}/{overall['before_notes']})"
            ),
            _num_text(
                f"{format_rate(overall['after_per_100_notes'])} ({overall['after_cases']}/{overall['after_notes']})"
            ),
            _num(overall["patterns_compared"]),
            _num(len([r for r in effect["patterns"] if r["clinician_facing"]])),
        ]
        by_department = [overall_row, *rows("by_department", lambda r: r["department"])]
        by_cause = rows("by_root_cause", lambda r: r["label"])
        return _section(
            "loop",
            intro,
            "<h3>By department</h3>",
            _table("loop-by-department", [header[0].format("Department"), *header[1:]], by_department),
            "<h3>By root cause</h3>",
            _table("loop-by-root-cause", [header[0].format("Root cause"), *header[1:]], by_cause),
            f'<p class="note"><strong>Definition.</strong> {escape(effect["definition"])}</p>',
        )

    def cases_per_week(self) -> str:
        report = self.report
        effects = {r["pattern_id"]: r for r in report["effect"]["patterns"]}
        with_feedback = [
            s
            for s in report["weekly_cases"]
            if s["feedback_date"] is not None and self.by_id[s["pattern_id"]]["clinician_facing"]
        ]
        # A pattern whose provider signed no note after feedback shows no cases after it: that is no evidence of
        # success, so it gets no panel.
        candidates = [s for s in with_feedback if effects[s["pattern_id"]]["after_notes"]]
        unmeasured = len(with_feedback) - len(candidates)
        intro = (
            "<p>Denial cases of each pattern by the week of the visit (weeks start on Monday), for root causes "
            "clinicians get feedback on and providers who signed notes after feedback. Grey bars below: the "
            "provider's signed notes that week (how many visits there were to go wrong). The dashed line is the "
            "feedback date. Hatched weeks come after the last visit "
            "in the data: no data, not success. Recent weeks fill in as denials arrive, weeks after the visit.</p>"
        )
        left_out = (
            f'<p class="note">{plural(unmeasured, "pattern")} with feedback but no note signed after it '
            f"{'is' if unmeasured == 1 else 'are'} left out: not measurable yet.</p>"
            if unmeasured
            else ""
        )
        if not candidates:
            return _section(
                "cases-per-week", intro, left_out, '<p class="empty">No pattern with notes after feedback yet.</p>'
            )
        shown = self.top(candidates)
        data_range = report["data_range"]
        last_visit = date.fromisoformat(data_range["last_service_date"]) if data_range["last_service_date"] else None
        weeks = _week_span(shown, report["clock"], last_visit)
        peak = max((n for s in shown for n in s["weeks"].values()), default=1) or 1
        notes = report["weekly_notes"]
        panels = "".join(
            _multiple(
                s,
                self.by_id[s["pattern_id"]],
                notes.get(self.by_id[s["pattern_id"]]["provider_npi"], {}),
                weeks,
                peak,
                last_visit,
                self.names,
                effects.get(s["pattern_id"]),
            )
            for s in shown
        )
        return _section(
            "cases-per-week",
            intro,
            _legend(
                [
                    (f'<span class="swatch" style="background:{_COUNT_COLOUR}"></span>', "denial cases"),
                    (f'<span class="swatch" style="background:{_NOTES_COLOUR}"></span>', "signed notes (exposure)"),
                    ('<span class="swatch hatch"></span>', "no data (after the last visit)"),
                ]
            ),
            f'<div class="multiples">{panels}</div>',
            self.more(len(shown), len(candidates), "patterns with notes after feedback", "csv"),
            left_out,
        )

    def patterns(self) -> str:
        patterns = self.report["patterns"]
        if not patterns:
            return _section("patterns", '<p class="empty">No patterns yet.</p>')
        shown = self.top(patterns)
        body = [
            [
                _status(p["status"]),
                self.who(p["provider_npi"]),
                _num_text(dollars(p["amount_at_risk"])),
                _num(p["case_count"]),
                _num(p["post_feedback_cases"]),
                escape(p["root_cause_label"]),
                f'<td class="code">{escape(p["procedure_code"])}</td>',
                escape(p["department"]),
                "yes" if p["acknowledged"] else "no",
                f'<td class="nowrap">{escape(p["feedback_date"] or "")}</td>',
            ]
            for p in shown
        ]
        return _section(
            "patterns",
            f"<p>{len(patterns):,} patterns that reached the threshold (one provider, one documentation gap, one "
            "procedure), open first, then by dollars at risk and cases.</p>",
            _table(
                "patterns",
                [
                    "Status",
                    "Provider",
                    "#At risk",
                    "#Cases",
                    "#After feedback",
                    "Root cause",
                    "Code",
                    "Department",
                    "Acknowledged",
                    "Feedback",
                ],
                body,
            ),
            self.more(len(shown), len(patterns), "patterns", "csv"),
        )


# ---- building blocks ---------------------------------------------------------------------------------------


def _section(key: str, *parts: str) -> str:
    return "\n".join([f'<section id="{key}">', f"<h2>{escape(SECTIONS[key])}</h2>", *parts, "</section>"])


def _table(name: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table in its own scrolling box (the page never scrolls sideways). A header starting with # is numeric."""
    head = "".join(
        f'<th scope="col" class="num">{escape(h[1:])}</th>'
        if h.startswith("#")
        else f'<th scope="col">{escape(h)}</th>'
        for h in header
    )
    body = "".join(
        "<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        f'<div class="table-wrap" role="region" aria-label="{escape(name.replace("-", " "))} table" tabindex="0">'
        f'<table data-table="{name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    )


def _num(value: int) -> str:
    return f'<td class="num">{value:,}</td>'


def _num_text(text: str) -> str:
    return f'<td class="num">{escape(text)}</td>'


def _status(status: str) -> str:
    return f'<td><span class="status {escape(status)}">{escape(status_text(status))}</span></td>'


def _verdict(verdict: str) -> str:
    css = {"works": "better", "does_not_work": "worse"}.get(verdict, "")
    return f'<td class="{css}">{escape(_VERDICTS.get(verdict, verdict))}</td>'


def _overall_verdict(overall: dict[str, Any]) -> str:
    return verdict(overall["before_per_100_notes"], overall["after_per_100_notes"])


def _legend(items: Sequence[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(f"<span>{swatch}{escape(text)}</span>" for swatch, text in items) + "</div>"


def _figure(caption: str, chart: str, css: str = "") -> str:
    heading = f"<h3>{escape(caption)}</h3>" if caption else ""
    attribute = f' class="{css}"' if css else ""
    return f"<figure{attribute}>{heading}{chart}</figure>"


def _svg(chart_id: str, width: float, height: float, parts: Sequence[str], label: str) -> str:
    return (
        f'<svg xmlns="{_SVG_NS}" class="chart" data-chart="{chart_id}" viewBox="0 0 {width:g} {height:g}" '
        f'role="img" aria-label="{escape(label)}">' + "".join(parts) + "</svg>"
    )


def _labelled_bars(chart_id: str, rows: Sequence[tuple[str, float, str]], colour: str, label: str) -> str:
    """Horizontal bars with the label above each bar, so long names stay readable on a narrow screen."""
    width, bar_h, row_h, value_w = 460.0, 14.0, 40.0, 150.0
    plot_w = width - value_w
    peak = max(value for _, value, _ in rows) or 1.0
    parts = []
    for i, (name, value, shown) in enumerate(rows):
        y = 4 + i * row_h
        w = max(plot_w * value / peak, 1.0)
        parts += [
            f'<text x="0" y="{y + 12:g}">{escape(_clip(name, 60))}</text>',
            f'<rect class="bar" x="0" y="{y + 17:g}" width="{w:.1f}" height="{bar_h:g}" rx="2" fill="{colour}">'
            f"<title>{escape(name)}: {escape(shown)}</title></rect>",
            f'<text class="tick" x="{w + 6:.1f}" y="{y + 28:g}">{escape(shown)}</text>',
        ]
    return _svg(chart_id, width, 4 + len(rows) * row_h, parts, label)


def _week_bars(
    chart_id: str,
    bars: Sequence[tuple[date, float, str]],
    colour: str,
    tick: Callable[[float], str],
    label: str,
    no_data_from: date | None = None,
) -> str:
    """One bar per week, with a few value ticks and month labels."""
    width, height, left, right, top, bottom = 520.0, 180.0, 50.0, 8.0, 10.0, 26.0
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(len(bars), 1)
    peak = max((v for _, v, _ in bars), default=0.0) or 1.0
    parts = []
    for fraction in (0.0, 0.5, 1.0):
        y = top + plot_h - plot_h * fraction
        parts += [
            f'<line class="grid" x1="{left:g}" x2="{left + plot_w:g}" y1="{y:.1f}" y2="{y:.1f}"/>',
            f'<text class="tick" x="{left - 6:g}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(tick(peak * fraction))}</text>",
        ]
    hatched = [i for i, (week, _, _) in enumerate(bars) if no_data_from is not None and week >= no_data_from]
    if hatched:
        x = left + hatched[0] * step
        parts.append(
            f'<rect class="no-data" x="{x:.1f}" y="{top:g}" width="{left + plot_w - x:.1f}" height="{plot_h:g}">'
            "<title>no data: after the last visit in the data</title></rect>"
        )
    label_every = max(1, -(-len(bars) // 5))  # at most five labels: readable on a phone
    for i, (week, value, shown) in enumerate(bars):
        x = left + i * step
        h = plot_h * value / peak
        parts.append(
            f'<rect class="bar" x="{x + step * 0.15:.1f}" y="{top + plot_h - h:.1f}" width="{max(step * 0.7, 1):.1f}" '
            f'height="{h:.1f}" fill="{colour}"><title>week of {week.isoformat()}: {escape(shown)}</title></rect>'
        )
        if i % label_every == 0:
            parts.append(
                f'<text class="tick" x="{x + step / 2:.1f}" y="{height - 8:g}" text-anchor="middle">'
                f"{_short(week)}</text>"
            )
    parts.append(
        f'<line class="baseline" x1="{left:g}" x2="{left + plot_w:g}" y1="{top + plot_h:g}" y2="{top + plot_h:g}"/>'
    )
    return _svg(chart_id, width, height, parts, label).replace('class="chart"', 'class="chart weekly-chart"', 1)


def _multiple(
    series: dict[str, Any],
    pattern: dict[str, Any],
    notes: dict[str, int],
    weeks: list[date],
    peak: int,
    last_visit: date | None,
    names: dict[str, str | None],
    effect: dict[str, Any] | None,
) -> str:
    """One panel: cases per week of one pattern over the provider's notes per week, feedback and no-data marked."""
    width, left, right, top = 300.0, 36.0, 6.0, 16.0
    case_h, gap, note_h, bottom = 62.0, 6.0, 22.0, 18.0
    height = top + case_h + gap + note_h + bottom
    plot_w = width - left - right
    step = plot_w / len(weeks)
    start = weeks[0]
    note_peak = max((notes.get(w.isoformat(), 0) for w in weeks), default=0) or 1

    def x_of(day: date) -> float:
        return left + (day - start).days / 7 * step

    feedback = date.fromisoformat(series["feedback_date"])
    marker_x = x_of(feedback) + step / 7  # the end of the feedback day: cases after it are post-feedback
    no_data_x = x_of(last_visit + timedelta(days=1)) if last_visit else left + plot_w
    no_data_x = min(max(no_data_x, left), left + plot_w)
    fits_right = marker_x < width - 110
    base = top + case_h
    notes_base = base + gap + note_h
    parts = [
        f'<rect class="after-zone" x="{marker_x:.1f}" y="{top:g}" width="{max(no_data_x - marker_x, 0):.1f}" '
        f'height="{case_h:g}"/>',
        f'<line class="grid" x1="{left:g}" x2="{left + plot_w:g}" y1="{top:g}" y2="{top:g}"/>',
        f'<text class="tick" x="{left - 4:g}" y="{top + 4:g}" text-anchor="end">{peak}</text>',
        f'<text class="tick" x="{left - 4:g}" y="{base:g}" text-anchor="end">0</text>',
    ]
    for week_iso, count in series["weeks"].items():
        week = date.fromisoformat(week_iso)
        h = case_h * count / peak
        parts.append(
            f'<rect class="bar" x="{x_of(week) + 0.5:.1f}" y="{base - h:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="{_COUNT_COLOUR}"><title>week of {week_iso}: {plural(count, "case")}, '
            f"{plural(notes.get(week_iso, 0), 'note')}</title></rect>"
        )
    for week in weeks:
        count = notes.get(week.isoformat(), 0)
        if not count:
            continue
        h = note_h * count / note_peak
        parts.append(
            f'<rect class="notes" x="{x_of(week) + 0.5:.1f}" y="{notes_base - h:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="{_NOTES_COLOUR}"><title>week of {week.isoformat()}: '
            f"{plural(count, 'signed note')}</title></rect>"
        )
    parts.append(f'<text class="tick" x="{left - 4:g}" y="{notes_base - 6:g}" text-anchor="end">notes</text>')
    if no_data_x < left + plot_w:
        zone_w = left + plot_w - no_data_x
        parts.append(
            f'<rect class="no-data" x="{no_data_x:.1f}" y="{top:g}" width="{zone_w:.1f}" '
            f'height="{notes_base - top:g}"><title>no data: after the last visit in the data</title></rect>'
        )
        if zone_w > 34:
            parts.append(
                f'<text class="no-data-label" x="{no_data_x + zone_w / 2:.1f}" y="{top + case_h / 2:g}" '
                'text-anchor="middle">no data</text>'
            )
    parts += [
        f'<line class="baseline" x1="{left:g}" x2="{left + plot_w:g}" y1="{base:g}" y2="{base:g}"/>',
        f'<line class="baseline" x1="{left:g}" x2="{left + plot_w:g}" y1="{notes_base:g}" y2="{notes_base:g}"/>',
        f'<line class="marker" x1="{marker_x:.1f}" x2="{marker_x:.1f}" y1="{top - 4:g}" y2="{notes_base:g}"/>',
        # Near the right edge the label goes to the left of the line, so it is never cut off.
        f'<text class="marker-label" x="{marker_x + 3 if fits_right else marker_x - 3:.1f}" y="{top - 4:g}" '
        f'text-anchor="{"start" if fits_right else "end"}">feedback {_short(feedback)}</text>',
        f'<text class="tick" x="{left:g}" y="{height - 4:g}">{_short(weeks[0])}</text>',
        f'<text class="tick" x="{left + plot_w:g}" y="{height - 4:g}" text-anchor="end">{_short(weeks[-1])}</text>',
    ]
    name = names.get(pattern["provider_npi"])
    caption = (
        f'<figcaption><span class="status {escape(pattern["status"])}">{escape(status_text(pattern["status"]))}</span> '
        f'<span class="who">{escape(pattern["root_cause_label"])}</span><br>'
        f"{escape(provider_title(pattern['provider_npi'], name))} · code {escape(pattern['procedure_code'])} · "
        f"{escape(pattern['department'])}<br>{plural(pattern['case_count'], 'case')}, "
        f"{pattern['post_feedback_cases']:,} after feedback{_exposure(effect)}</figcaption>"
    )
    svg = _svg(
        f"weekly-cases-{pattern['pattern_id']}",
        width,
        height,
        parts,
        f"cases and signed notes per week, {root_cause_label(pattern['root_cause'])}, "
        f"{provider_title(pattern['provider_npi'], name)}",
    )
    return f'<figure class="multiple">{caption}{svg}</figure>'


def _exposure(effect: dict[str, Any] | None) -> str:
    """The provider's signed notes before and after feedback: without notes after it, no case is no evidence."""
    if effect is None:
        return ""
    text = f"<br>signed notes: {effect['before_notes']:,} before, {effect['after_notes']:,} after feedback"
    return text + (" (<strong>not measurable yet</strong>)" if not effect["after_notes"] else "")


def _week_span(series: Sequence[dict[str, Any]], clock: str | None, last_visit: date | None) -> list[date]:
    """Every week from the earliest case to the clock, so the weeks with no data show as such."""
    days = [date.fromisoformat(w) for s in series for w in s["weeks"]]
    days += [date.fromisoformat(s["feedback_date"]) for s in series]
    if clock:
        days.append(date.fromisoformat(clock[:10]))
    if last_visit:
        days.append(last_visit)
    first, last = week_start(min(days)), week_start(max(days))
    return [first + timedelta(weeks=i) for i in range((last - first).days // 7 + 1)]


def _short(day: date) -> str:
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year % 100:02d}"


def _short_money(value: float) -> str:
    if value >= 1_000_000:
        return f"${value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"${value / 1_000:.0f}k"
    return f"${value:.0f}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
