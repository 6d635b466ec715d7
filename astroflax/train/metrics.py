"""Run reports: ``metrics.jsonl`` + TensorBoard events, the progress line, the PNG and summary.

``metrics.jsonl`` holds one JSON object per logged step (``step``, ``epoch`` and whatever was
measured then: ``train_loss``, ``eval_accuracy``, ...). It is the source of truth: on resume
it is cut back to the restored step, and the summary and the plot are computed from it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import logging


class MetricWriter:
    """Appends records to ``metrics.jsonl`` and scalars to TensorBoard (tensorboardX, no TF)."""

    def __init__(self, workdir: str | Path, *, resume_step: int, enabled: bool = True):
        """Opens ``workdir/metrics.jsonl``, dropping records after ``resume_step``.

        Records past the checkpoint were written by the interrupted run and will be logged
        again by this one, so keeping them would duplicate steps.
        """
        self.path = Path(workdir) / "metrics.jsonl"
        self.enabled = enabled
        self.records = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
        self._tb = None
        if enabled:
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"), purge_step=resume_step + 1)

    def write(self, record: dict[str, Any]) -> None:
        """Adds one record (``step`` and ``epoch`` required; floats must be finite or None)."""
        record = {k: _clean(v) for k, v in record.items()}
        self.records.append(record)
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in record.items():
            if k != "step" and isinstance(v, int | float) and v is not None:
                self._tb.add_scalar(k, v, record["step"])
        self._tb.flush()

    def close(self) -> None:
        """Flushes and closes the TensorBoard writer."""
        if self._tb is not None:
            self._tb.close()


def _clean(v: Any) -> Any:
    # JSON has no NaN/Inf; a non-finite value is stored as None (and the run stops anyway).
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (empty when absent; a torn last line is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    return out


def format_duration(seconds: float) -> str:
    """``3725`` -> ``"1h02m05s"``; ``65`` -> ``"1m05s"``; ``5.2`` -> ``"5s"``."""
    s = round(max(float(seconds), 0.0))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def progress_line(step: int, total: int, epoch: float, loss: float, examples_per_sec: float,
                  eta_s: float, extra: str = "") -> str:
    """``step 120/2000 (6%) | epoch 3.40 | loss 0.4123 | 850 ex/s | ETA 2m13s``.

    A throughput of 0 (nothing timed yet: the first step is compilation) prints as ``-``.
    """
    speed = (f"{examples_per_sec:,.0f} ex/s | ETA {format_duration(eta_s)}"
             if examples_per_sec > 0 else "- ex/s | ETA -")
    return (f"step {step}/{total} ({100 * step / max(total, 1):.0f}%) | epoch {epoch:.2f} | "
            f"loss {loss:.4f} | {speed}" + (f" | {extra}" if extra else ""))


def epochs_to_target(records: Sequence[dict[str, Any]], target: float,
                     key: str = "eval_accuracy") -> float | None:
    """Epoch of the first eval whose ``key`` reaches ``target`` (the paper's learning speed)."""
    for r in records:
        v = r.get(key)
        if v is not None and v >= target:
            return float(r["epoch"])
    return None


def plot_curves(records: Sequence[dict[str, Any]], path: str | Path, *, eval_key: str,
                title: str) -> None:
    """Learning-curve PNG: train loss and the eval metric against epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = [(r["epoch"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
    ev = [(r["epoch"], r[eval_key]) for r in records if r.get(eval_key) is not None]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    if tr:
        a.plot(*zip(*tr, strict=True), lw=1)
    a.set(xlabel="epoch", ylabel="train loss", title="training loss")
    if ev:
        b.plot(*zip(*ev, strict=True), marker="o", ms=3)
    b.set(xlabel="epoch", ylabel=eval_key, title=eval_key)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def log_summary(summary: dict[str, Any]) -> None:
    """Prints the summary's headline numbers as one block in the log."""
    keys = ("status", "final", "best", "epochs_to_target", "num_params", "wall_time_s",
            "examples_per_sec", "tokenizer")
    logging.info("summary:\n%s", "\n".join(f"  {k}: {summary[k]}" for k in keys if k in summary))
