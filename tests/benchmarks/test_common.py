"""benchmarks._common: the report footer."""

import json

from benchmarks._common import report


def test_report_prints_the_load_and_machine_lines_and_saves_the_results(tmp_path, capsys):
    results = {"machine": {"date": "2026-01-02T03:04:05+00:00", "cpu": "cpu X", "cpu_count": 2,
                           "jax": "0.0", "backend": "cpu"},
               "uptime_before": "load 1", "uptime_after": "load 2", "rows": [1, 2]}
    path = tmp_path / "r.json"
    report(results, str(path))
    assert capsys.readouterr().out.splitlines() == [
        "", "uptime before: load 1", "uptime after:  load 2",
        "2026-01-02T03:04:05+00:00 | cpu X | 2 cores | jax 0.0 cpu", f"saved {path}"]
    assert json.loads(path.read_text()) == results
    report(results, None)
    assert "saved" not in capsys.readouterr().out

