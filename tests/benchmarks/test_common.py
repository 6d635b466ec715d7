"""benchmarks._common: the report footer and a subprocess stopped at a logged marker."""

import json
import os
import signal
import sys

from benchmarks._common import report, run_until_logged
from tests.helpers import REPO


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


def test_run_until_logged_signals_at_the_marker_and_keeps_the_log_after_it():
    # The child logs "ready", then on SIGTERM says so and exits 3; without the signal it would
    # sleep past the timeout.
    child = ("import signal, sys, time\n"
             "def stop(*_):\n"
             "    print('got it', file=sys.stderr, flush=True); sys.exit(3)\n"
             "signal.signal(signal.SIGTERM, stop)\n"
             "print('before', file=sys.stderr, flush=True)\n"
             "print('ready', file=sys.stderr, flush=True)\n"
             "time.sleep(60)\n")
    rc, log = run_until_logged([sys.executable, "-c", child], cwd=REPO, env=dict(os.environ),
                               marker="ready", sig=signal.SIGTERM, timeout=30)
    assert rc == 3
    assert log == "before\nready\ngot it\n"
