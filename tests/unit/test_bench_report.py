"""The benchmark's pure helpers (bench/report.py): percentiles, ratios, the table and the summary line."""

from __future__ import annotations

import math

import pytest

from bench import report


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert report.percentile(values, 0) == 10.0
    assert report.percentile(values, 100) == 40.0
    assert report.percentile(values, 50) == pytest.approx(25.0)
    assert report.percentile([5.0], 99) == 5.0
    assert report.percentile(list(range(1, 101)), 99) == pytest.approx(99.01)


def test_percentile_ignores_input_order_and_handles_missing_values() -> None:
    assert report.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert report.percentile([], 50) is None
    with pytest.raises(ValueError):
        report.percentile([1.0], 101)


def test_a_probe_that_never_answered_makes_high_percentiles_unbounded() -> None:
    values = [100.0] * 98 + [120.0, math.inf]
    assert report.percentile(values, 50) == 100.0
    assert math.isinf(report.percentile(values, 99.5) or 0)
    assert report.percentile(values, 98) == pytest.approx(100.4)


def test_ratio_and_rate_refuse_missing_or_zero_denominators() -> None:
    assert report.ratio(150.0, 300.0) == 0.5
    assert report.ratio(None, 300.0) is None
    assert report.ratio(150.0, 0.0) is None
    assert report.ratio(150.0, None) is None
    assert report.ratio(math.inf, 1.0) is None
    assert report.rate(1000, 4.0) == 250.0
    assert report.rate(1000, 0.0) is None
    assert report.rate(1000, None) is None


def test_format_and_verdict() -> None:
    assert report.fmt(0.31234, 2) == "0.31"
    assert report.fmt(None) == "na"
    assert report.fmt(math.inf) == "inf"
    assert report.fmt(float("nan")) == "na"
    assert report.verdict(0.31, 0.3, higher_is_better=True) == "PASS"
    assert report.verdict(0.29, 0.3, higher_is_better=True) == "FAIL"
    assert report.verdict(249.9, 250, higher_is_better=False) == "PASS"
    assert report.verdict(250.0, 250, higher_is_better=False) == "FAIL"
    assert report.verdict(math.inf, 250, higher_is_better=False) == "FAIL"
    assert report.verdict(None, 250, higher_is_better=False) == "n/a"
    assert report.json_number(math.inf) is None
    assert report.json_number(1.5) == 1.5


def test_summary_line_is_stable() -> None:
    assert (
        report.summary_line(0.4567, 123.45, 0.912, 180.26, 0.934)
        == "ratio=0.46 p99_ms=123.5 scale_ratio=0.91 rss_mb=180.3 poison_ratio=0.93 scaleout_ratio=na"
    )
    assert (
        report.summary_line(None, math.inf, None, None)
        == "ratio=na p99_ms=inf scale_ratio=na rss_mb=na poison_ratio=na scaleout_ratio=na"
    )


def test_table_rows_and_alignment() -> None:
    results = {
        "throughput": {
            "events": 1000,
            "engine": {"events_per_s": 400.0},
            "pipe": {"events_per_s": 1000.0},
            "ratio": 0.4,
        },
        "latency": {"p50_ms": 50.0, "p95_ms": 90.0, "p99_ms": None, "p99_unbounded": True},
        "latency_no_wait": {"p50_ms": 30.0, "p95_ms": 40.0, "p99_ms": 45.5},
        "latency_low_rate": {"offered_rate": 5, "p50_ms": 2400.0, "p95_ms": 3000.0, "p99_ms": 3150.5},
        "scale": {
            "cases": 10,
            "empty": {"events_per_s": 400.0},
            "preloaded": {"events_per_s": 360.0},
            "scale_ratio": 0.9,
        },
        "memory": {"rss_mb": 120.0},
        "poison": {
            "events": 1000,
            "hostile": 1,
            "clean": {"events_per_s": 400.0},
            "poisoned": {"events_per_s": 300.0},
            "poison_ratio": 0.75,
        },
        "scaleout": {
            "events": 1000,
            "proxy_delay_ms": 2.0,
            "one": {"events_per_s": 400.0},
            "three": {"events_per_s": 1000.0},
            "scaleout_ratio": 2.5,
        },
        "replay": {"events": 1000, "events_per_s": 900.0},
    }
    rows = report.build_rows(results)
    verdicts = [row.result for row in rows if row.result]
    # ratio, p99 (unbounded), scale, rss, poison, scale-out
    assert verdicts == ["PASS", "FAIL", "PASS", "PASS", "FAIL", "PASS"]
    scaleout = next(row for row in rows if row.measure.startswith("3 replicas"))
    assert (scaleout.value, scaleout.baseline, scaleout.ratio) == ("1000", "400 (1 replica)", "2.500")
    poison = next(row for row in rows if "hostile" in row.measure)
    assert (poison.value, poison.baseline, poison.ratio) == ("300", "400 (clean)", "0.750")
    p99 = next(row for row in rows if row.measure.startswith("latency p99"))
    assert p99.value == "inf"
    no_wait = next(row for row in rows if row.measure.startswith("latency p99") and "=0" in row.measure)
    assert (no_wait.value, no_wait.result) == ("45.5", "")  # what the engine's own path costs: no target of its own
    low = next(row for row in rows if row.measure == "latency p99, ms, at 5 events/s")
    assert (low.value, low.result) == ("3150.5", "")  # a small hospital's feed: reported, no target of its own
    table = report.render_table(rows).splitlines()
    assert table[0].split() == ["measure", "value", "baseline", "ratio", "target", "pass/fail"]
    assert set(table[1]) <= {"-", " "}
    assert len(table) == 2 + len(rows)


def test_table_with_nothing_measured_says_so() -> None:
    rows = report.build_rows({})
    assert all(row.result in ("", "n/a") for row in rows)
    assert report.render_table(rows)


def test_median_run_picks_the_middle_one() -> None:
    runs = [{"events_per_s": 300.0, "id": "a"}, {"events_per_s": 100.0, "id": "b"}, {"events_per_s": 200.0, "id": "c"}]
    assert report.median_run(runs)["id"] == "c"
    assert report.median_run(runs[:2])["id"] == "b"  # the lower middle of an even count
    assert report.median_run([{"events_per_s": None, "id": "x"}, *runs])["id"] == "b"
    with pytest.raises(ValueError):
        report.median_run([])
