"""`docloop report --format html`: the report as one self-contained page (inline CSS, inline SVG charts).

The page reads only the report dict that `build_report` returns, so every number in it is the number
`--format json` prints. Nothing is fetched when the page is viewed: no scripts, fonts or images from elsewhere.
Charts mark each data point as `class="bar"` (a rect) so that tests and people can count what is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal
from html import escape
from typing import Any

from engine.report import format_rate, week_start

MAX_MULTIPLES = 24

SECTIONS = {
    "open-patterns": "Open patterns by root cause and department",
    "amount-at-risk": "Dollars at risk in open patterns",
    "cases-per-week": "Cases per week, before and after feedback",
    "escalations": "Escalations over time",
    "loop-effect": "Loop effect: denials per 100 signed notes",
    "patterns": "All patterns",
}

_SVG_NS = "http://www.w3.org/2000/svg"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Colour-blind-safe (Okabe-Ito) for categories; counts in blue, money in orange, "after" in the accent.
_CATEGORY_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
_COUNT_COLOUR = "#0072B2"
_MONEY_COLOUR = "#D55E00"
_BEFORE_COLOUR = "#9aa5b1"
_AFTER_COLOUR = "#0072B2"

_CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --rule: #d9e2ec; --panel: #f5f7fa; --accent: #0072B2; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 6px; padding-bottom: 6px; border-bottom: 2px solid var(--rule); }
h3 { font-size: 14px; margin: 0 0 6px; color: var(--muted); font-weight: 600; }
p { margin: 6px 0 12px; max-width: 900px; }
.meta, .note { color: var(--muted); }
.note { font-size: 13px; }
nav { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 14px 0 4px; font-size: 13px; }
nav a { color: var(--accent); text-decoration: none; white-space: nowrap; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 12px; margin: 18px 0 8px; }
.kpi { background: var(--panel); border-radius: 8px; padding: 12px 14px; }
.kpi .value { font-size: 22px; white-space: nowrap; font-weight: 650; font-variant-numeric: tabular-nums; }
.kpi .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.pair { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 24px; }
figure { margin: 0; break-inside: avoid; page-break-inside: avoid; }
svg { display: block; max-width: 100%; height: auto; font-family: inherit; }
svg text { fill: var(--ink); font-size: 12px; }
svg .axis, svg .tick { fill: var(--muted); font-size: 11px; }
svg .value { font-variant-numeric: tabular-nums; }
svg .grid { stroke: var(--rule); stroke-width: 1; }
svg .baseline { stroke: #9aa5b1; stroke-width: 1; }
svg .marker { stroke: #c81e1e; stroke-width: 1.5; stroke-dasharray: 4 3; }
svg .marker-label { fill: #c81e1e; font-size: 10px; }
svg .after-zone { fill: #eef4fb; }
.multiples { display: grid; grid-template-columns: repeat(auto-fill, minmax(270px, 1fr)); gap: 14px 18px; }
.multiple { border: 1px solid var(--rule); border-radius: 6px; padding: 8px 10px 6px; }
.multiple svg { width: 100%; }
.multiple figcaption { font-size: 12px; line-height: 1.35; margin-bottom: 4px; }
.multiple figcaption .who { font-weight: 600; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; font-size: 12px; color: var(--muted); margin: 4px 0 10px; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 5px;
          vertical-align: -1px; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; margin: 8px 0 4px; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--rule); text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
tr.overall td { font-weight: 650; background: #fbfcfd; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 11px; font-weight: 600; }
.badge.open { background: #fde8e8; color: #9b1c1c; }
.badge.resolved { background: #def7ec; color: #03543f; }
.better { color: #03543f; } .worse { color: #9b1c1c; }
.empty { color: var(--muted); font-style: italic; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--rule); padding-top: 10px; }
@media print {
  main { max-width: none; padding: 0; }
  nav { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  th { position: static; }
  .kpi, .multiple { border: 1px solid var(--rule); }
  @page { margin: 14mm; }
}
"""


def render_html(report: dict[str, Any]) -> str:
    patterns: list[dict[str, Any]] = report["patterns"]
    by_id = {p["pattern_id"]: p for p in patterns}
    body = [
        "<main>",
        "<header>",
        "<h1>Docloop report</h1>",
        f'<p class="meta">Clock {escape(report["clock"] or "not started")}. Every figure on this page comes from '
        "the same data as <code>docloop report --format json</code>.</p>",
        _kpis(report),
        "<nav>" + "".join(f'<a href="#{key}">{escape(title)}</a>' for key, title in SECTIONS.items()) + "</nav>",
        "</header>",
        _section_open_patterns(report),
        _section_amount_at_risk(report),
        _section_cases_per_week(report, by_id),
        _section_escalations(report),
        _section_loop_effect(report, by_id),
        _section_patterns(patterns),
        "<footer>Docloop: the loop between clinical documentation and billing denials. Provider NPIs only; this "
        "page carries no patient identifiers.</footer>",
        "</main>",
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>Docloop report</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
        ]
    )


# ---- sections ----------------------------------------------------------------------------------------------


def _section(key: str, *parts: str) -> str:
    return "\n".join([f'<section id="{key}">', f"<h2>{escape(SECTIONS[key])}</h2>", *parts, "</section>"])


def _kpis(report: dict[str, Any]) -> str:
    totals = report["totals"]
    overall = report["effect_by_pattern"]["overall"]
    cards = [
        ("Open patterns", str(totals["open"])),
        ("Resolved patterns", str(totals["resolved"])),
        ("Acknowledged", f"{totals['acknowledged']} of {totals['patterns']}"),
        ("Open amount at risk", _dollars(totals["amount_at_risk_open"])),
        ("Escalations", str(totals["escalations"])),
        (
            "Denials / 100 notes",
            f"{format_rate(overall['before_per_100_notes'])} → {format_rate(overall['after_per_100_notes'])}",
        ),
    ]
    return (
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi"><div class="value">{escape(value)}</div><div class="label">{escape(label)}</div></div>'
            for label, value in cards
        )
        + "</div>"
    )


def _section_open_patterns(report: dict[str, Any]) -> str:
    charts = [
        _figure(
            "By root cause",
            _hbar_chart(
                "open-by-root-cause",
                [(r["root_cause"], r["patterns"], str(r["patterns"])) for r in report["open_by_root_cause"]],
                _COUNT_COLOUR,
            ),
        ),
        _figure(
            "By department",
            _hbar_chart(
                "open-by-department",
                [(r["department"], r["patterns"], str(r["patterns"])) for r in report["open_by_department"]],
                _COUNT_COLOUR,
            ),
        ),
    ]
    return _section(
        "open-patterns",
        f"<p>{report['totals']['open']} open patterns (one provider, one documentation gap, one procedure).</p>",
        f'<div class="pair">{"".join(charts)}</div>',
    )


def _section_amount_at_risk(report: dict[str, Any]) -> str:
    def money_rows(rows: list[dict[str, Any]], field: str) -> list[tuple[str, float, str]]:
        ordered = sorted(rows, key=lambda r: (-Decimal(r["amount_at_risk"]), r[field]))
        return [(r[field], float(r["amount_at_risk"]), _dollars(r["amount_at_risk"])) for r in ordered]

    charts = [
        _figure(
            "By root cause",
            _hbar_chart("at-risk-by-root-cause", money_rows(report["open_by_root_cause"], "root_cause"), _MONEY_COLOUR),
        ),
        _figure(
            "By department",
            _hbar_chart("at-risk-by-department", money_rows(report["open_by_department"], "department"), _MONEY_COLOUR),
        ),
    ]
    return _section(
        "amount-at-risk",
        f"<p>Denied amounts of the open patterns' cases: {_dollars(report['totals']['amount_at_risk_open'])} "
        "in total.</p>",
        f'<div class="pair">{"".join(charts)}</div>',
    )


def _section_cases_per_week(report: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> str:
    series = [s for s in report["weekly_cases"] if s["feedback_date"] is not None]
    if not series:
        return _section("cases-per-week", '<p class="empty">No pattern has had feedback yet.</p>')
    ranked = sorted(enumerate(series), key=lambda item: (-by_id[item[1]["pattern_id"]]["case_count"], item[0]))
    shown = [s for _, s in ranked[:MAX_MULTIPLES]]
    weeks = _week_range(shown, report["clock"])
    peak = max((n for s in shown for n in s["weeks"].values()), default=1)
    capped = (
        f" Showing the {len(shown)} patterns with the most cases, of {len(series)}; every pattern is in the "
        "table at the end."
        if len(series) > len(shown)
        else ""
    )
    multiples = "".join(_multiple(s, by_id[s["pattern_id"]], weeks, peak) for s in shown)
    return _section(
        "cases-per-week",
        "<p>Denial cases of each pattern by the week of the visit (service date, weeks start on Monday). The dashed "
        "line is the feedback date; the shaded part is after it. All panels share one time axis and one scale "
        f"(up to {peak} case{'s' if peak != 1 else ''} a week).{capped}</p>",
        f'<div class="multiples">{multiples}</div>',
    )


def _section_escalations(report: dict[str, Any]) -> str:
    weeks: list[dict[str, Any]] = report["escalations_by_week"]
    if not weeks:
        return _section("escalations", '<p class="empty">No escalations.</p>')
    reasons = list(report["totals"]["escalations_by_reason"])
    colours = {reason: _CATEGORY_COLOURS[i % len(_CATEGORY_COLOURS)] for i, reason in enumerate(reasons)}
    legend = _legend(
        [(f"{reason} ({report['totals']['escalations_by_reason'][reason]})", colours[reason]) for reason in reasons]
    )
    return _section(
        "escalations",
        f"<p>{report['totals']['escalations']} escalations to leadership, by the week they were raised and "
        "their reason.</p>",
        legend,
        _figure("", _stacked_week_chart("escalations-by-week", weeks, reasons, colours)),
    )


def _section_loop_effect(report: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> str:
    effect = report["effect_by_pattern"]
    rows: list[dict[str, Any]] = effect["patterns"]
    overall = effect["overall"]
    intro = f"<p><strong>Definition.</strong> {escape(effect['definition'])}</p>"
    if not rows:
        return _section("loop-effect", intro, '<p class="empty">No pattern has had feedback yet.</p>')
    rated = [(i, r) for i, r in enumerate(rows) if _rated(r)]
    ranked = sorted(rated, key=lambda item: (-by_id[item[1]["pattern_id"]]["case_count"], item[0]))
    shown = [r for _, r in ranked[:MAX_MULTIPLES]]
    compared = overall["patterns_compared"]
    groups = [
        (
            f"Overall ({compared} pattern{'s' if compared != 1 else ''} with notes before and after)",
            overall["before_per_100_notes"],
            overall["after_per_100_notes"],
        ),
        *((_pattern_label(by_id[r["pattern_id"]]), r["before_per_100_notes"], r["after_per_100_notes"]) for r in shown),
    ]
    unrated = len(rows) - len(rated)
    notes = []
    if len(rated) > len(shown):
        notes.append(f"The chart shows the {len(shown)} patterns with the most cases, of {len(rated)} with a rate.")
    if unrated:
        notes.append(f"{unrated} of {len(rows)} patterns have no notes in either span (n/a, in the table only).")
    table_rows = [_effect_row("Overall", "", overall, overall_row=True)]
    table_rows += [_effect_row(_pattern_label(by_id[r["pattern_id"]]), r["feedback_date"], r) for r in rows]
    return _section(
        "loop-effect",
        intro,
        f"<p>Overall, before feedback: <strong>{format_rate(overall['before_per_100_notes'])}</strong> "
        f"({overall['before_cases']} cases / {overall['before_notes']} notes); after: "
        f"<strong>{format_rate(overall['after_per_100_notes'])}</strong> ({overall['after_cases']} cases / "
        f"{overall['after_notes']} notes). {' '.join(notes)}</p>",
        _legend([("before feedback", _BEFORE_COLOUR), ("after feedback", _AFTER_COLOUR)]),
        _figure("", _grouped_hbar_chart("effect-per-pattern", groups)),
        "<table>",
        "<thead><tr><th>Pattern</th><th>Feedback</th><th class=num>Cases before</th><th class=num>Notes before</th>"
        "<th class=num>Per 100 before</th><th class=num>Cases after</th><th class=num>Notes after</th>"
        "<th class=num>Per 100 after</th></tr></thead>",
        "<tbody>",
        *table_rows,
        "</tbody></table>",
    )


def _rated(row: dict[str, Any]) -> bool:
    return row["before_per_100_notes"] is not None or row["after_per_100_notes"] is not None


def _effect_row(label: str, feedback: str, r: dict[str, Any], overall_row: bool = False) -> str:
    before, after = r["before_per_100_notes"], r["after_per_100_notes"]
    trend = "num"
    if before is not None and after is not None and before != after:
        trend = "num better" if after < before else "num worse"
    cells = [
        f"<td>{escape(label)}</td>",
        f"<td>{escape(feedback)}</td>",
        f'<td class="num">{r["before_cases"]}</td>',
        f'<td class="num">{r["before_notes"]}</td>',
        f'<td class="num">{format_rate(before)}</td>',
        f'<td class="num">{r["after_cases"]}</td>',
        f'<td class="num">{r["after_notes"]}</td>',
        f'<td class="{trend}">{format_rate(after)}</td>',
    ]
    row_class = ' class="overall"' if overall_row else ""
    return f"<tr{row_class}>{''.join(cells)}</tr>"


def _section_patterns(patterns: list[dict[str, Any]]) -> str:
    if not patterns:
        return _section("patterns", '<p class="empty">No patterns yet.</p>')
    header = (
        "<thead><tr><th>Status</th><th>Department</th><th>Root cause</th><th>Provider NPI</th><th>Code</th>"
        "<th class=num>Cases</th><th class=num>After feedback</th><th class=num>At risk</th><th>Acknowledged</th>"
        "<th>Feedback</th></tr></thead>"
    )
    rows = [
        "<tr>"
        f'<td><span class="badge {escape(p["status"])}">{escape(p["status"])}</span></td>'
        f"<td>{escape(p['department'])}</td>"
        f"<td>{escape(p['root_cause'])}</td>"
        f'<td class="mono">{escape(p["provider_npi"])}</td>'
        f'<td class="mono">{escape(p["procedure_code"])}</td>'
        f'<td class="num">{p["case_count"]}</td>'
        f'<td class="num">{p["post_feedback_cases"]}</td>'
        f'<td class="num">{_dollars(p["amount_at_risk"])}</td>'
        f"<td>{'yes' if p['acknowledged'] else 'no'}</td>"
        f"<td>{escape(p['feedback_date'] or '')}</td>"
        "</tr>"
        for p in patterns
    ]
    return _section(
        "patterns",
        f"<p>{len(patterns)} patterns that reached the threshold, open and resolved.</p>",
        f"<table>{header}<tbody>{''.join(rows)}</tbody></table>",
    )


# ---- charts ------------------------------------------------------------------------------------------------


def _svg(chart_id: str, width: float, height: float, parts: Sequence[str], label: str) -> str:
    return (
        f'<svg xmlns="{_SVG_NS}" class="chart" data-chart="{chart_id}" viewBox="0 0 {width:g} {height:g}" '
        f'width="{width:g}" height="{height:g}" role="img" aria-label="{escape(label)}">' + "".join(parts) + "</svg>"
    )


def _figure(caption: str, chart: str) -> str:
    heading = f"<h3>{escape(caption)}</h3>" if caption else ""
    return f"<figure>{heading}{chart}</figure>"


def _legend(items: Sequence[tuple[str, str]]) -> str:
    return (
        '<div class="legend">'
        + "".join(f'<span><span class="swatch" style="background:{c}"></span>{escape(t)}</span>' for t, c in items)
        + "</div>"
    )


def _hbar_chart(chart_id: str, rows: Sequence[tuple[str, float, str]], colour: str) -> str:
    """One horizontal bar per row: (label, value, value as shown)."""
    if not rows:
        return '<p class="empty">No open patterns.</p>'
    width, label_w, value_w, bar_h, gap = 540.0, 210.0, 78.0, 18.0, 8.0
    plot_w = width - label_w - value_w
    peak = max(value for _, value, _ in rows) or 1.0
    parts = []
    for i, (label, value, shown) in enumerate(rows):
        y = 6 + i * (bar_h + gap)
        w = max(plot_w * value / peak, 1.0)
        parts += [
            f'<text x="{label_w - 8:g}" y="{y + bar_h - 5:g}" text-anchor="end">{escape(_clip(label, 32))}</text>',
            f'<rect class="bar" x="{label_w:g}" y="{y:g}" width="{w:.1f}" height="{bar_h:g}" rx="2" fill="{colour}">'
            f"<title>{escape(label)}: {escape(shown)}</title></rect>",
            f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + bar_h - 5:g}">{escape(shown)}</text>',
        ]
    height = 6 + len(rows) * (bar_h + gap)
    return _svg(chart_id, width, height, parts, chart_id.replace("-", " "))


def _grouped_hbar_chart(chart_id: str, groups: Sequence[tuple[str, float | None, float | None]]) -> str:
    """Per group a "before" and an "after" bar; a missing rate is written n/a and has no bar."""
    width, label_w, value_w, bar_h, gap = 1100.0, 420.0, 70.0, 13.0, 14.0
    plot_w = width - label_w - value_w
    peak = max((v for _, b, a in groups for v in (b, a) if v is not None), default=0.0) or 1.0
    parts = []
    for i, (label, before, after) in enumerate(groups):
        y = 6 + i * (2 * bar_h + gap)
        parts.append(
            f'<text x="{label_w - 8:g}" y="{y + bar_h + 4:g}" text-anchor="end">{escape(_clip(label, 66))}</text>'
        )
        for j, (rate, colour, when) in enumerate(((before, _BEFORE_COLOUR, "before"), (after, _AFTER_COLOUR, "after"))):
            by = y + j * bar_h
            if rate is None:
                missing = f"n/a (no notes {when} feedback)"
                parts.append(f'<text class="tick" x="{label_w + 4:g}" y="{by + bar_h - 2:g}">{missing}</text>')
                continue
            w = max(plot_w * rate / peak, 1.0)
            parts += [
                f'<rect class="bar" x="{label_w:g}" y="{by:g}" width="{w:.1f}" height="{bar_h - 1:g}" fill="{colour}">'
                f"<title>{escape(label)}, {when} feedback: {format_rate(rate)} per 100 notes</title></rect>",
                f'<text class="value tick" x="{label_w + w + 5:.1f}" y="{by + bar_h - 2:g}">{format_rate(rate)}</text>',
            ]
        if i == 0 and len(groups) > 1:
            sep = y + 2 * bar_h + gap / 2
            parts.append(f'<line class="grid" x1="0" x2="{width:g}" y1="{sep:g}" y2="{sep:g}"/>')
    height = 6 + len(groups) * (2 * bar_h + gap)
    return _svg(chart_id, width, height, parts, "denials per 100 notes before and after feedback")


def _multiple(series: dict[str, Any], pattern: dict[str, Any], weeks: list[date], peak: int) -> str:
    """One small panel: cases per week of one pattern, with the feedback date marked."""
    width, height, left, right, top, bottom = 260.0, 104.0, 22.0, 6.0, 14.0, 18.0
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / len(weeks)
    start = weeks[0]

    def x_of(day: date) -> float:
        return left + (day - start).days / 7 * step

    feedback = date.fromisoformat(series["feedback_date"])
    marker_x = x_of(feedback) + step / 7  # the end of the feedback day: cases after it are post-feedback
    parts = [
        f'<rect class="after-zone" x="{marker_x:.1f}" y="{top:g}" width="{max(left + plot_w - marker_x, 0):.1f}" '
        f'height="{plot_h:g}"/>',
        f'<line class="grid" x1="{left:g}" x2="{left + plot_w:g}" y1="{top:g}" y2="{top:g}"/>',
        f'<text class="tick" x="{left - 4:g}" y="{top + 4:g}" text-anchor="end">{peak}</text>',
        f'<text class="tick" x="{left - 4:g}" y="{top + plot_h:g}" text-anchor="end">0</text>',
    ]
    for week_iso, count in series["weeks"].items():
        week = date.fromisoformat(week_iso)
        h = plot_h * count / peak
        parts.append(
            f'<rect class="bar" x="{x_of(week) + 0.5:.1f}" y="{top + plot_h - h:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="{_COUNT_COLOUR}"><title>week of {week_iso}: {count} '
            f"case{'s' if count != 1 else ''}</title></rect>"
        )
    parts += [
        f'<line class="baseline" x1="{left:g}" x2="{left + plot_w:g}" y1="{top + plot_h:g}" y2="{top + plot_h:g}"/>',
        f'<line class="marker" x1="{marker_x:.1f}" x2="{marker_x:.1f}" y1="{top - 4:g}" y2="{top + plot_h:g}"/>',
        f'<text class="marker-label" x="{marker_x + 3:.1f}" y="{top - 4:g}">feedback {_short(feedback)}</text>',
        f'<text class="tick" x="{left:g}" y="{height - 4:g}">{_short(weeks[0])}</text>',
        f'<text class="tick" x="{left + plot_w:g}" y="{height - 4:g}" text-anchor="end">{_short(weeks[-1])}</text>',
    ]
    caption = (
        f'<figcaption><span class="badge {escape(pattern["status"])}">{escape(pattern["status"])}</span> '
        f'<span class="who">{escape(pattern["root_cause"])}</span><br>'
        f"NPI {escape(pattern['provider_npi'])} · code {escape(pattern['procedure_code'])} · "
        f"{escape(pattern['department'])}<br>{pattern['case_count']} cases, {pattern['post_feedback_cases']} after "
        "feedback</figcaption>"
    )
    svg = _svg(
        f"weekly-cases-{pattern['pattern_id']}", width, height, parts, f"cases per week, {pattern['root_cause']}"
    )
    return f'<figure class="multiple">{caption}{svg}</figure>'


def _stacked_week_chart(
    chart_id: str, weeks: Sequence[dict[str, Any]], reasons: Sequence[str], colours: dict[str, str]
) -> str:
    width, height, left, right, top, bottom = 1080.0, 230.0, 34.0, 10.0, 10.0, 34.0
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / len(weeks)
    bar_w = min(step * 0.7, 48.0)
    peak = max(w["total"] for w in weeks) or 1
    ticks = _integer_ticks(peak)
    parts = []
    for tick in ticks:
        y = top + plot_h - plot_h * tick / peak
        parts += [
            f'<line class="grid" x1="{left:g}" x2="{left + plot_w:g}" y1="{y:.1f}" y2="{y:.1f}"/>',
            f'<text class="tick" x="{left - 6:g}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>',
        ]
    label_every = max(1, round(len(weeks) / 14))
    for i, week in enumerate(weeks):
        x = left + i * step
        y = top + plot_h
        for reason in reasons:
            count = week["by_reason"].get(reason, 0)
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            parts.append(
                f'<rect class="bar" x="{x + (step - bar_w) / 2:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colours[reason]}"><title>week of {week["week"]}: {count} {escape(reason)}</title></rect>'
            )
        if i % label_every == 0:
            parts.append(
                f'<text class="tick" x="{x + step / 2:.1f}" y="{top + plot_h + 16:g}" text-anchor="middle">'
                f"{_short(date.fromisoformat(week['week']))}</text>"
            )
    parts += [
        f'<line class="baseline" x1="{left:g}" x2="{left + plot_w:g}" y1="{top + plot_h:g}" y2="{top + plot_h:g}"/>',
        f'<text class="axis" x="{left + plot_w / 2:g}" y="{height - 2:g}" text-anchor="middle">week raised</text>',
    ]
    return _svg(chart_id, width, height, parts, "escalations per week by reason")


# ---- helpers -----------------------------------------------------------------------------------------------


def _week_range(series: Sequence[dict[str, Any]], clock: str | None) -> list[date]:
    """Every week from the earliest case to the clock (so a quiet spell after feedback shows as quiet)."""
    days = [date.fromisoformat(w) for s in series for w in s["weeks"]]
    days += [date.fromisoformat(s["feedback_date"]) for s in series]
    if clock:
        days.append(date.fromisoformat(clock[:10]))
    first, last = week_start(min(days)), week_start(max(days))
    return [first + timedelta(weeks=i) for i in range((last - first).days // 7 + 1)]


def _integer_ticks(peak: int) -> list[int]:
    step = max(1, -(-peak // 4))
    return list(range(0, peak + 1, step))


def _pattern_label(p: dict[str, Any]) -> str:
    return f"{p['root_cause']} · {p['procedure_code']} · NPI {p['provider_npi']}"


def _short(day: date) -> str:
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year % 100:02d}"


def _dollars(amount: str) -> str:
    return f"${Decimal(amount):,.2f}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
