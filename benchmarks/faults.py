"""Fault probe of the runner: ``python -m benchmarks.faults [--steps=30] [--keep=DIR]``.

Runs ``python -m experiments.run --config=digits_astro:smoke`` (small step counts, one CPU
device) end to end through the faults a user meets, and prints one table row per scenario:
what was done, what the run did, and whether it ended **identical** to the uninterrupted run
(bitwise-equal parameters, same metrics) or was **clearly refused** (non-zero exit, one
``error:`` paragraph, no traceback).

Scenarios: SIGKILL mid-run then rerun (the dead run's lock is taken over), also with the
newest checkpoint damaged; 64 bytes of the latest checkpoint of a finished run overwritten;
every checkpoint unreadable (starts over, old history kept); a second run started on a busy
workdir; a diverging learning rate; a mistyped field. A few minutes on a 2-core CPU (the runs
share a persistent compilation cache).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from astroflax.train.checkpoint import Checkpointer
from benchmarks._common import machine, print_table, run_until_logged

REPO = Path(__file__).resolve().parents[1]


class Probe:
    """Starts runner subprocesses on workdirs under ``root`` (one CPU device, shared cache)."""

    def __init__(self, root: Path, steps: int):
        self.root, self.steps = root, steps
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
        self.env.update(JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(root / "jax_cache"),
                        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

    def cmd(self, workdir: Path, *extra: str) -> list[str]:
        """The runner command: ``steps`` steps, a log line and a checkpoint every 5."""
        return [sys.executable, "-m", "experiments.run", "--config=digits_astro:smoke",
                f"--config.train.num_train_steps={self.steps}",
                "--config.train.log_every_steps=5", "--config.train.checkpoint_every_steps=5",
                "--config.train.eval_every_steps=10", f"--workdir={workdir}", *extra]

    def start(self, workdir: Path, *extra: str) -> subprocess.Popen:
        """Starts a run in the background (its stderr piped)."""
        return subprocess.Popen(self.cmd(workdir, *extra), cwd=REPO, env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def run(self, workdir: Path, *extra: str) -> tuple[int, str]:
        """Runs to the end: ``(exit code, stderr)``."""
        p = subprocess.run(self.cmd(workdir, *extra), cwd=REPO, env=self.env, text=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
        return p.returncode, p.stderr

    def run_until(self, workdir: Path, marker: str, sig: int) -> tuple[int, str]:
        """Starts a run and sends ``sig`` once ``marker`` is logged: ``(exit code, stderr)``."""
        return run_until_logged(self.cmd(workdir), cwd=REPO, env=self.env, marker=marker,
                                sig=sig, timeout=300)


def _result(workdir: Path) -> dict[str, Any]:
    """What must match the uninterrupted run: parameters, evals and every metrics record."""
    summary = json.loads((workdir / "summary.json").read_text())
    records = [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines()
               if ln.strip()]
    return {"status": summary["status"], "step": summary["step"],
            "params_sha256": summary["params_sha256"], "final": summary["final"],
            "best": summary["best"],
            "metrics": [{k: v for k, v in r.items() if k != "examples_per_sec"}
                        for r in records]}


def _verdict(workdir: Path, ref: dict[str, Any]) -> str:
    try:
        got = _result(workdir)
    except (OSError, ValueError, KeyError) as e:
        return f"NO RESULT ({type(e).__name__})"
    if got == ref:
        return "identical"
    diff = [k for k in ref if got.get(k) != ref[k]]
    return f"DIFFERENT ({', '.join(diff)})"


def _refused(rc: int, log: str, expected: str) -> str:
    last = log.strip().splitlines()[-1] if log.strip() else ""
    ok = rc != 0 and "Traceback" not in log and last.startswith("error:") and expected in last
    return "clearly refused" if ok else f"NOT CLEAR (rc {rc}: {last[:80]!r})"


def _damage(step_dir: Path) -> None:
    """Overwrites 64 bytes mid-way in the largest file of ``model/ocdbt.process_*/d/``."""
    files = [f for f in (step_dir / "model").glob("ocdbt.process_*/d/*") if f.is_file()]
    target = max(files, key=lambda f: f.stat().st_size)
    data = bytearray(target.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = b"\xff" * 64
    target.write_bytes(bytes(data))


def _truncate(step_dir: Path) -> None:
    """Cuts every parameter data file to half its size (an interrupted copy, a full disk)."""
    for f in (step_dir / "model").rglob("*"):
        if f.is_file() and "/d/" in str(f):
            os.truncate(f, f.stat().st_size // 2)


def _resumed_step(log: str) -> str:
    m = re.search(r"resumed from the checkpoint at step (\d+)", log)
    return m.group(1) if m else "none"


def _unreadable(workdir: Path) -> Path:
    """Where the checkpointer sets aside the checkpoints of ``workdir`` it could not read."""
    return Checkpointer.aside_of(Checkpointer.directory_in(workdir), "unreadable")


def _steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in Checkpointer.directory_in(workdir).iterdir()
                  if p.name.isdigit())


def _damage_newest_and_rerun(probe: Probe, workdir: Path) -> tuple[int, int, str, bool]:
    """Damages the newest checkpoint, reruns: ``(its step, exit code, stderr, detected)``."""
    newest = _steps(workdir)[-1]
    _damage(Checkpointer.directory_in(workdir) / str(newest))
    rc, log = probe.run(workdir)
    detected = "does not match the fingerprint" in log or "non-finite values" in log
    return newest, rc, log, detected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps per run")
    parser.add_argument("--keep", default=None, help="keep the workdirs here (default: temp)")
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="astroflax_faults_"))
    root.mkdir(parents=True, exist_ok=True)
    probe, n = Probe(root, args.steps), args.steps
    rows: list[list[str]] = []
    t0 = time.time()

    rc, log = probe.run(root / "ref")
    assert rc == 0, log[-3000:]
    ref = _result(root / "ref")
    rows.append(["uninterrupted", f"{n} steps", f"exit {rc}, {ref['status']}", "reference"])

    # Kill mid-run, then rerun: resumes from the last checkpoint; the dead run's lock is stale.
    w = root / "kill"
    kill_at = 2 * n // 3  # late enough for a few committed checkpoints
    rc1, _ = probe.run_until(w, f"step {kill_at}/{n}", signal.SIGKILL)
    shutil.copytree(w, root / "kill_corrupt")
    rc, log = probe.run(w)
    took_over = "ended without releasing its lock" in log
    resumed = "resumed from the checkpoint at step" in log
    rows.append(["SIGKILL mid-run, rerun", f"killed at step {kill_at} (exit {rc1}), rerun",
                 f"exit {rc}; resumed: {resumed}; stale lock taken over: {took_over}",
                 _verdict(w, ref)])

    # The same killed run, its newest checkpoint damaged: resumes from the one before.
    w = root / "kill_corrupt"
    newest, rc, log, detected = _damage_newest_and_rerun(probe, w)
    rows.append(["SIGKILL mid-run, newest checkpoint damaged, rerun",
                 f"killed at step {kill_at}, damaged step {newest}",
                 f"exit {rc}; detected: {detected}; resumed from step "
                 f"{_resumed_step(log)}", _verdict(w, ref)])

    # Bytes of the newest checkpoint damaged after the write: detected, the previous one used.
    w = root / "corrupt_latest"
    shutil.copytree(root / "ref", w)
    latest, rc, log, detected = _damage_newest_and_rerun(probe, w)
    rows.append(["64 bytes of the latest checkpoint overwritten, rerun",
                 f"damaged step {latest}'s largest parameter file",
                 f"exit {rc}; detected: {detected}; set aside: "
                 f"{(_unreadable(w) / str(latest)).is_dir()}", _verdict(w, ref)])

    # Every checkpoint unreadable: starts over from step 0, says so, keeps the old history.
    w = root / "corrupt_all"
    shutil.copytree(root / "ref", w)
    for s in _steps(w):
        _truncate(Checkpointer.directory_in(w) / str(s))
    rc, log = probe.run(w)
    kept = list(_unreadable(w).glob("history-*/metrics.jsonl"))
    noise = "Exception ignored" in log or "'driver'" in log
    rows.append(["every checkpoint unreadable, rerun",
                 f"truncated the parameter files of {len(_steps(root / 'ref'))} checkpoints",
                 f"exit {rc}; said STARTING OVER: {'STARTING OVER' in log}; "
                 f"old metrics kept: {len(kept) == 1}; library noise: {noise}",
                 _verdict(w, ref)])

    # A second run on a busy workdir: refused while the first goes on undisturbed.
    w = root / "concurrent"
    first = probe.start(w)
    first_log = []
    for line in first.stderr:
        first_log.append(line)
        if f"step 5/{n}" in line:
            break
    rc2, log2 = probe.run(w)
    first_log.extend(first.stderr)
    rc1 = first.wait(timeout=600)
    rows.append(["second run on a busy workdir", "started at step 5 of the first",
                 f"second: {_refused(rc2, log2, 'in use by another run')}; first: exit {rc1}",
                 _verdict(w, ref)])

    # A learning rate that diverges: stops before saving a NaN state, with a clear message.
    w = root / "nan"
    rc, log = probe.run(w, "--config.train.learning_rate=1e30",
                        "--config.train.schedule=constant", "--config.train.warmup_steps=0")
    last = log.strip().splitlines()[-1] if log.strip() else ""
    rows.append(["learning_rate=1e30", "diverges at once",
                 f"exit {rc}: {last[:90]}", "clearly refused" if rc != 0 and "Traceback"
                 not in log and "non-finite" in last else "NOT CLEAR"])

    # A mistyped field: one paragraph before any work.
    w = root / "typo"
    rc, log = probe.run(w, "--config.train.lerning_rate=1")
    rows.append(["--config.train.lerning_rate=1", "mistyped field", f"exit {rc}",
                 _refused(rc, log, "did you mean learning_rate")])

    info = machine()
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"{info['date']}, {info['cpu']} ({info['cpu_count']} cores), load "
          f"{info['load_avg_1min']} at the end, jax {info['jax']}; {time.time() - t0:.0f} s; "
          f"workdirs in {root}")
    print_table(f"Fault probe (digits_astro:smoke, {n} steps)",
                ["scenario", "what was done", "what the run did", "result"], rows)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
