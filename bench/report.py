"""Pure helpers of the benchmark: percentiles, ratios, the results table and the last summary line.

No I/O here, so `tests/unit/test_bench_report.py` can test them without Kafka or PostgreSQL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

# Targets of issue #5 (measured and reported, never asserted by `make test`).
TARGET_RATIO = 0.3  # engine events/s over a bare aiokafka pipe's (aim 0.5)
AIM_RATIO = 0.5
TARGET_P99_MS = 250.0  # claim denied -> pattern_opened readable, at 200 events/s offered load
TARGET_SCALE_RATIO = 0.8  # events/s with 1M stored cases over events/s on an empty store
TARGET_RSS_MB = 300.0  # peak RSS of `docloop serve` during the throughput run
TARGET_POISON_RATIO = 0.8  # events/s with 0.1% hostile events mixed in over events/s without (issue #10)
TARGET_SCALEOUT_RATIO = 2.4  # events/s with 3 replicas over 1, PostgreSQL behind a delaying proxy (issue #13)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between closest ranks (numpy's default).

    `math.inf` values (probes that never answered) sort last, so a percentile that lands on one is inf.
    Returns None for no values.
    """
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError("q must lie in [0, 100]")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high or ordered[low] == ordered[high]:
        return ordered[low]
    if math.isinf(ordered[high]):
        return math.inf
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    if math.isinf(numerator) or math.isinf(denominator):
        return None
    return numerator / denominator


def rate(events: int, seconds: float | None) -> float | None:
    """Events per second, or None for a missing or non-positive duration."""
    if seconds is None or seconds <= 0:
        return None
    return events / seconds


def median_run(runs: Sequence[dict[str, Any]], key: str = "events_per_s") -> dict[str, Any]:
    """The run with the median `key` (the lower middle one for an even count; a missing value sorts first)."""
    if not runs:
        raise ValueError("no runs")
    ordered = sorted(runs, key=lambda run: -math.inf if run.get(key) is None else run[key])
    return ordered[(len(ordered) - 1) // 2]


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for the table and the summary line: `na` when missing, `inf` when unbounded."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "na"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    """PASS/FAIL against a target; `n/a` when the measure is missing."""
    if value is None or math.isnan(value):
        return "n/a"
    ok = value >= target if higher_is_better else value < target
    return "PASS" if ok else "FAIL"


def json_number(value: float | None) -> float | None:
    """JSON has no inf or nan: those become null (the report says why next to it)."""
    if value is None or math.isinf(value) or math.isnan(value):
        return None
    return value


@dataclass(frozen=True)
class Row:
    measure: str
    value: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    result: str = ""


def render_table(rows: Sequence[Row]) -> str:
    """A plain-text table with a header and aligned columns."""
    header = Row("measure", "value", "baseline", "ratio", "target", "pass/fail")
    cells = [[r.measure, r.value, r.baseline, r.ratio, r.target, r.result] for r in (header, *rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header.__dataclass_fields__))]
    lines = []
    for index, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_line(
    ratio_value: float | None,
    p99_ms: float | None,
    scale_ratio: float | None,
    rss_mb: float | None,
    poison_ratio: float | None = None,
    scaleout_ratio: float | None = None,
) -> str:
    """The last line of `make bench`, for scripts to grep."""
    return (
        f"ratio={fmt(ratio_value, 2)} p99_ms={fmt(p99_ms, 1)} scale_ratio={fmt(scale_ratio, 2)} "
        f"rss_mb={fmt(rss_mb, 1)} poison_ratio={fmt(poison_ratio, 2)} scaleout_ratio={fmt(scaleout_ratio, 2)}"
    )


def _median_of(phase: dict[str, Any]) -> str:
    repeat = phase.get("repeat") or 1
    return f", median of {repeat}" if repeat > 1 else ""


def _percentile(latency: dict[str, Any], name: str) -> float | None:
    """A latency run's percentile in ms; infinite when probes went unanswered past it (JSON has no infinity)."""
    value = latency.get(f"{name}_ms")
    if value is None and latency.get(f"{name}_unbounded"):
        return math.inf
    return cast(float | None, value)


def build_rows(results: dict[str, Any]) -> list[Row]:
    """The table rows from the results dict that `bench.run` also writes as JSON."""
    rows: list[Row] = []
    tp = results.get("throughput") or {}
    engine = (tp.get("engine") or {}).get("events_per_s")
    pipe = (tp.get("pipe") or {}).get("events_per_s")
    r = tp.get("ratio")
    rows.append(
        Row(
            f"throughput, events/s (N={tp.get('events', 'na')}{_median_of(tp)})",
            fmt(engine, 0),
            fmt(pipe, 0) + " (pipe)" if pipe is not None else "na",
            fmt(r, 3),
            f">= {TARGET_RATIO} (aim {AIM_RATIO})",
            verdict(r, TARGET_RATIO, True),
        )
    )
    lat = results.get("latency") or {}
    for name in ("p50", "p95", "p99"):
        value = _percentile(lat, name)
        is_p99 = name == "p99"
        rows.append(
            Row(
                f"latency {name}, ms (denial -> pattern_opened)",
                fmt(value, 1),
                target=f"< {TARGET_P99_MS:g}" if is_p99 else "",
                result=verdict(value, TARGET_P99_MS, False) if is_p99 else "",
            )
        )
    no_wait = results.get("latency_no_wait") or {}
    if no_wait:
        for name in ("p50", "p99"):
            value = _percentile(no_wait, name)
            rows.append(Row(f"latency {name}, ms, DOCLOOP_TASK_IDLE_MS=0 (no wait)", fmt(value, 1)))
    low = results.get("latency_low_rate") or {}
    if low:
        for name in ("p50", "p99"):
            value = _percentile(low, name)
            rows.append(Row(f"latency {name}, ms, at {low.get('offered_rate')} events/s", fmt(value, 1)))
    sc = results.get("scale") or {}
    loaded = (sc.get("preloaded") or {}).get("events_per_s")
    empty = (sc.get("empty") or {}).get("events_per_s")
    s = sc.get("scale_ratio")
    rows.append(
        Row(
            f"with {sc.get('cases', 'na')} cases stored, events/s (N={sc.get('events', 'na')}{_median_of(sc)})",
            fmt(loaded, 0),
            fmt(empty, 0) + " (empty)" if empty is not None else "na",
            fmt(s, 3),
            f">= {TARGET_SCALE_RATIO}",
            verdict(s, TARGET_SCALE_RATIO, True),
        )
    )
    rss = (results.get("memory") or {}).get("rss_mb")
    rows.append(
        Row(
            "peak RSS of serve, MB",
            fmt(rss, 1),
            target=f"< {TARGET_RSS_MB:g}",
            result=verdict(rss, TARGET_RSS_MB, False),
        )
    )
    po = results.get("poison") or {}
    poisoned = (po.get("poisoned") or {}).get("events_per_s")
    clean = (po.get("clean") or {}).get("events_per_s")
    pr = po.get("poison_ratio")
    rows.append(
        Row(
            f"with {po.get('hostile', 'na')} hostile mixed in, events/s (N={po.get('events', 'na')}{_median_of(po)})",
            fmt(poisoned, 0),
            fmt(clean, 0) + " (clean)" if clean is not None else "na",
            fmt(pr, 3),
            f">= {TARGET_POISON_RATIO}",
            verdict(pr, TARGET_POISON_RATIO, True),
        )
    )
    so = results.get("scaleout") or {}
    three = (so.get("three") or {}).get("events_per_s")
    one = (so.get("one") or {}).get("events_per_s")
    xr = so.get("scaleout_ratio")
    rows.append(
        Row(
            f"3 replicas, events/s (N={so.get('events', 'na')}, "
            f"+{so.get('proxy_delay_ms', 'na')} ms to PG, "
            f"{so.get('replica_cpu') or 'shared'} cores each{_median_of(so)})",
            fmt(three, 0),
            fmt(one, 0) + " (1 replica)" if one is not None else "na",
            fmt(xr, 3),
            f">= {TARGET_SCALEOUT_RATIO}",
            verdict(xr, TARGET_SCALEOUT_RATIO, True),
        )
    )
    rp = results.get("replay") or {}
    rows.append(Row(f"replay on SQLite, events/s (N={rp.get('events', 'na')})", fmt(rp.get("events_per_s"), 0)))
    return rows
