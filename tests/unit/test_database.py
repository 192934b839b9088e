"""engine/database.py: how JSON columns are read back."""

from __future__ import annotations

from engine.database import _json_value


def test_json_columns_read_back_as_new_values_each_time() -> None:
    """Empty lists skip the parser, but each read is a list of its own: rules change what they load."""
    first, second = _json_value("[]"), _json_value("[]")
    assert first == [] and first is not second
    first.append("x")
    assert _json_value("[]") == []
    assert _json_value('[{"claim_id": "c1"}, ["2026-03-02", "e1"]]') == [{"claim_id": "c1"}, ["2026-03-02", "e1"]]
    assert _json_value('{"a": [1]}') == {"a": [1]}
