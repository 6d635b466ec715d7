"""Shared benchmark helpers: timing, machine description, tables, reports, signalled runs."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Where and when a benchmark ran: date, CPU, core count, load, JAX version and backend."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(load, 2),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }


def best_time(fn: Callable[..., Any], *args: Any, repeats: int = 7, clock: str = "wall") -> float:
    """Seconds of the fastest of ``repeats`` calls after one warm-up (compile) call.

    The minimum, not the mean: on a shared machine, noise only ever adds time.
    ``clock="cpu"`` counts this process's CPU time (all its threads) instead of wall time:
    on a machine shared with other jobs it does not grow with the time spent waiting for a
    core, so it is the steadier measure of work (it does include XLA's idle-spinning threads).
    """
    now = {"wall": time.perf_counter, "cpu": time.process_time}[clock]
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        start = now()
        jax.block_until_ready(fn(*args))
        best = min(best, now() - start)
    return best


def uptime() -> str:
    """The output of ``uptime`` (load averages), to print beside every timing table."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        load = os.getloadavg() if hasattr(os, "getloadavg") else ()
        return f"load average: {', '.join(f'{x:.2f}' for x in load)}"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Prints a Markdown table (so it can be pasted into a README as is)."""
    def fmt(x: Any) -> str:
        if isinstance(x, float):
            return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
        return str(x)

    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(fmt(x) for x in row) + " |")


def report(results: dict[str, Any], json_path: str | None) -> None:
    """Prints the load before and after and the machine line; saves ``results`` to ``json_path``.

    ``results`` holds ``machine`` (from :func:`machine`), ``uptime_before`` and ``uptime_after``
    (from :func:`uptime`); ``json_path`` ``None`` saves nothing.
    """
    print(f"\nuptime before: {results['uptime_before']}\nuptime after:  {results['uptime_after']}")
    m = results["machine"]
    print(f"{m['date']} | {m['cpu']} | {m['cpu_count']} cores | jax {m['jax']} {m['backend']}")
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
        print(f"saved {json_path}")


def run_until_logged(cmd: Sequence[str], *, cwd: Path, env: dict[str, str], marker: str,
                     sig: int, timeout: float) -> tuple[int, str]:
    """Starts ``cmd``, sends ``sig`` once a stderr line holds ``marker``: ``(exit code, stderr)``.

    The rest of stderr is read to the end after the signal (so a process that saves and exits
    on it says so); ``timeout`` seconds bound the wait for the exit after the stream closes.
    """
    p = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    log = []
    for line in p.stderr:
        log.append(line)
        if marker in line:
            p.send_signal(sig)
            break
    log.extend(p.stderr)
    return p.wait(timeout=timeout), "".join(log)
