"""replay's progress line: silent on short input, then at most one line per period, on stderr."""

from __future__ import annotations

import pytest

from engine.cli import Progress


def test_progress_speaks_at_most_once_per_period(capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]
    progress = Progress(clock=lambda: now[0], every=5.0)
    for lines in range(1000, 5000, 1000):  # a short replay: under one period
        now[0] += 1.0
        progress(lines)
    assert capsys.readouterr().err == ""
    now[0] = 5.0
    progress(50_000)
    now[0] = 6.0
    progress(60_000)  # too soon for another line
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "replay: 50,000 events applied so far (10,000/s)\n"
