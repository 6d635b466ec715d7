"""The run's counters and timers (:class:`RunCounters`), continued across resumed sessions.

What the numbers mean in the reports (``summary.json``, ``metrics.jsonl``) is in
:mod:`astroflax.train.report`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import jax


@dataclasses.dataclass
class RunCounters:
    """The run's counters and timers: every number the loop measures lives here.

    All of them add up over the sessions of a run (a run interrupted and resumed): they travel
    in each checkpoint's metadata (:meth:`meta`, :meth:`resume`), including the open logging
    interval, so a resumed run reports exactly what an uninterrupted one does. What each
    number means is in :mod:`astroflax.train.report`.
    """

    step: int = 0
    wall_before_s: float = 0.0        # wall time of the earlier sessions
    train_time_s: float = 0.0         # time in train steps (no compile, eval, checkpoint)
    trained_examples: int = 0         # examples those steps trained on
    compile_time_s: float = 0.0       # compiling the train step
    last_eval_step: int = -1
    session_start: float = dataclasses.field(default_factory=time.time)
    # The open logging interval: the sum and count of its synced step losses, and the step
    # metrics not yet synced (device scalars: no sync per step).
    interval_loss_sum: float = 0.0
    interval_steps: int = 0
    pending: list[dict[str, jax.Array]] = dataclasses.field(default_factory=list)
    last_grad_norm: float = math.nan
    tick: float = dataclasses.field(default_factory=time.time)

    @classmethod
    def resume(cls, meta: dict[str, Any], eval_steps: list[int], session_start: float
               ) -> RunCounters:
        """Counters continued from a checkpoint's ``meta`` (empty: a fresh run).

        ``eval_steps``: steps with eval records in ``metrics.jsonl``, for checkpoints that
        predate ``last_eval_step`` in the metadata.
        """
        return cls(step=int(meta.get("step", 0)),
                   wall_before_s=float(meta.get("wall_time_s", 0.0)),
                   train_time_s=float(meta.get("train_time_s", 0.0)),
                   trained_examples=int(meta.get("trained_examples", 0)),
                   compile_time_s=float(meta.get("compile_time_s", 0.0)),
                   # From the checkpoint, which every process reads alike: only process 0
                   # writes metrics.jsonl, and eval is a collective all processes must enter.
                   last_eval_step=int(meta.get("last_eval_step", max(eval_steps, default=-1))),
                   session_start=session_start,
                   interval_loss_sum=float(meta.get("interval_loss_sum", 0.0)),
                   interval_steps=int(meta.get("interval_steps", 0)))

    @property
    def wall_time_s(self) -> float:
        """Wall time of the whole run so far, all sessions."""
        return self.wall_before_s + time.time() - self.session_start

    @property
    def examples_per_sec(self) -> float:
        """Training throughput (NaN before anything was timed)."""
        return self.trained_examples / self.train_time_s if self.train_time_s > 0 else math.nan

    def meta(self) -> dict[str, Any]:
        """What a checkpoint stores so that a resumed session continues these counters.

        Only valid right after :meth:`sync` (nothing pending).
        """
        assert not self.pending, "meta() before sync()"
        return {"step": self.step, "wall_time_s": self.wall_time_s,
                "trained_examples": self.trained_examples, "train_time_s": self.train_time_s,
                "compile_time_s": self.compile_time_s, "last_eval_step": self.last_eval_step,
                "interval_loss_sum": self.interval_loss_sum,
                "interval_steps": self.interval_steps}

    def count_step(self, metrics: dict[str, jax.Array], batch_size: int) -> None:
        """One train step done; ``metrics`` (``loss``, ``grad_norm``) stay on the device."""
        self.step += 1
        self.trained_examples += batch_size
        self.pending.append(metrics)

    def sync(self) -> tuple[int, str] | None:
        """Fetches the pending step metrics; adds the time since :meth:`resume_timing`.

        Returns:
          ``(step, name)`` of the first non-finite ``loss`` or ``grad_norm`` among them (its
          update made the parameters non-finite), else None.
        """
        values = jax.device_get(self.pending)
        self.train_time_s += time.time() - self.tick
        first = self.step - len(values) + 1
        self.pending = []
        for i, m in enumerate(values):
            for name in ("loss", "grad_norm"):
                if not math.isfinite(float(m[name])):
                    return first + i, name
            self.interval_loss_sum += float(m["loss"])
            self.interval_steps += 1
        self.last_grad_norm = float(values[-1]["grad_norm"]) if values else math.nan
        return None

    def close_interval(self) -> float:
        """The logging interval's mean loss; the next interval starts empty."""
        loss = self.interval_loss_sum / self.interval_steps
        self.interval_loss_sum, self.interval_steps = 0.0, 0
        return loss

    def resume_timing(self) -> None:
        """Train steps are timed from here (after an eval or a checkpoint, which are not)."""
        self.tick = time.time()
