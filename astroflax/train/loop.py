"""``train_and_evaluate(config, workdir)``: the one training loop behind every experiment.

A run, in order: its config is checked, the workdir locked (:mod:`~astroflax.train.workdir`)
and the config recorded (:mod:`~astroflax.train.record`: a rerun resumes the workdir's
checkpoints and may change only :data:`RESUMABLE_FIELDS`); devices, data, model and train step
are built (:mod:`~astroflax.train.build`); the newest readable checkpoint is restored
(:mod:`~astroflax.train.checkpoint`); then come the steps, with logging
(:mod:`~astroflax.train.metrics`, :mod:`~astroflax.train.counters`), evaluation
(:mod:`~astroflax.train.evaluation`) and checkpoints; last the summary
(:mod:`~astroflax.train.report`, which also says what a run leaves and what its numbers mean).

SIGTERM or Ctrl-C stops a run cleanly (:mod:`~astroflax.train.preemption`): it saves a
checkpoint after the current step and returns a summary with ``status == "preempted"``. A
NaN or Inf loss stops it with :class:`NonFiniteLossError` (:mod:`~astroflax.train.divergence`).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from pathlib import Path
from typing import Any

import grain
import jax
from absl import logging
from flax import nnx

from astroflax.train import metrics as metrics_lib
from astroflax.train import report as report_lib
from astroflax.train.build import RunSetup, build_run
from astroflax.train.checkpoint import Checkpointer, in_structure_of
from astroflax.train.config import validate_config
from astroflax.train.counters import RunCounters
from astroflax.train.divergence import NonFiniteLossError, diverged
from astroflax.train.evaluation import evaluate
from astroflax.train.preemption import EXIT_PREEMPTED, StopFlag
from astroflax.train.record import RESUMABLE_FIELDS, config_json, record_config
from astroflax.train.report import params_fingerprint
from astroflax.train.workdir import lock_workdir

#: The trainer and the names of a run that callers import from here (each defined in the
#: module of its concern).
__all__ = ["EXIT_PREEMPTED", "RESUMABLE_FIELDS", "NonFiniteLossError", "RunCounters",
           "config_json", "params_fingerprint", "train_and_evaluate"]


class _Run:
    """One session of a run: its parts, in the order :func:`train_and_evaluate` calls them.

    :meth:`set_up` (config, data, model, step), :meth:`restore`, :meth:`train` (the loop, with
    :meth:`evaluate` and :meth:`save`) and :meth:`report` (the summary).
    """

    def __init__(self, config: Any, workdir: Path):
        self.cfg, self.workdir = config, workdir
        self.chief = jax.process_index() == 0
        self.status = "completed"
        self.counters = RunCounters()      # its session_start: now, before any set-up
        self.last_saved = -1
        # Made by set_up (None until then): the fixed parts, the state, data, checkpoints.
        self.setup: RunSetup | None = None
        self.state: nnx.State | None = None
        self.it: grain.DatasetIterator | None = None
        self.ckpt: Checkpointer | None = None
        # Made by restore: the step this session starts from; the writer (a run to report).
        self.start_step: int | None = None
        self.writer: metrics_lib.MetricWriter | None = None

    def set_up(self, held: contextlib.ExitStack, parts: contextlib.ExitStack) -> None:
        """Everything before the first step; config problems raise ConfigError early.

        The workdir lock goes on ``held`` (released after the report), the checkpointer on
        ``parts`` (closed before it), each as soon as it is acquired, so a failure at any
        later point of set-up still releases them.
        """
        validate_config(self.cfg)
        # Creates the workdir; refuses one that another live run is using.
        held.enter_context(lock_workdir(self.workdir))
        record_config(self.workdir, self.cfg, write=self.chief)
        self.setup, self.state, self.it = build_run(self.cfg)
        self.ckpt = parts.enter_context(contextlib.closing(Checkpointer(
            Checkpointer.directory_in(self.workdir), keep=self.cfg.train.keep_checkpoints)))

    def restore(self, parts: contextlib.ExitStack) -> None:
        """Continues from the newest readable checkpoint, if any (else from step 0).

        ``metrics.jsonl`` and the TensorBoard events are cut back to the restored step.
        """
        restored = self.ckpt.restore_latest(
            self.state, self.it,
            history=[self.workdir / "metrics.jsonl", self.workdir / "tensorboard"])
        meta: dict[str, Any] = {}
        if restored is not None:
            state, meta = restored
            self.state = in_structure_of(self.state, state)
            self.last_saved = int(meta["step"])
            logging.info("resumed from the checkpoint at step %d in %s", self.last_saved,
                         self.ckpt.directory)
        self.start_step = int(meta.get("step", 0))
        self.writer = parts.enter_context(contextlib.closing(metrics_lib.MetricWriter(
            self.workdir, resume_step=self.start_step, enabled=self.chief)))
        self.counters = RunCounters.resume(
            meta, [r["step"] for r in self.writer.records if "eval_loss" in r],
            session_start=self.counters.session_start)

    # ---- the loop ----------------------------------------------------------------------
    def compile_step(self, batch: dict[str, jax.Array]) -> Any:
        """The train step compiled for ``state`` and ``batch``; the time counts as compile.

        Compiled ahead of time, a state of another pytree structure is an error rather than
        a silent second compile counted as training time.
        """
        start = time.time()
        compiled = self.setup.train_step.lower(self.state, batch).compile()
        self.counters.compile_time_s += time.time() - start
        logging.info("train step compiled in %.1f s", time.time() - start)
        return compiled

    def train(self, stop: StopFlag) -> None:
        """Train steps up to ``total_steps``, with logging, evaluation and checkpoints."""
        c, s = self.counters, self.setup
        if not stop.requested and c.step < s.total_steps:
            self._train_steps(stop)
        if stop.requested and c.step < s.total_steps:   # also a request during set-up
            self.status = "preempted"
            return
        if c.last_eval_step < c.step:
            # Resumed a finished run (or one whose last eval record was lost): evaluate once.
            ev = self.evaluate()
            self.writer.write({"step": c.step, "epoch": s.epoch_of(c.step), **ev})
            if self.last_saved < c.step:
                self.save(s.task.score(ev))

    def _train_steps(self, stop: StopFlag) -> None:
        """Steps until ``total_steps``, or until a stop request (then saves the step)."""
        t, c, s = self.cfg.train, self.counters, self.setup
        batches = (s.put(b, s.batch_size) for b in self.it)
        first = next(batches)
        step_fn = self.compile_step(first)
        c.resume_timing()
        for batch in itertools.chain([first], batches):
            self.state, m = step_fn(self.state, batch)
            c.count_step(m, s.batch_size)
            step = c.step
            is_log = step % t.log_every_steps == 0 or step == s.total_steps
            is_eval = step % s.eval_every == 0 or step == s.total_steps
            is_save = step % t.checkpoint_every_steps == 0 or is_eval or stop.requested
            if is_log or is_save:
                self._sync()
                self._report_step(is_log, is_eval, is_save)
                c.resume_timing()
            if stop.requested and self.last_saved < step:   # the signal came just now
                self._sync()
                self.save()
            if stop.requested or step >= s.total_steps:
                return

    def _sync(self) -> None:
        """Fetches the pending step metrics; stops on the first non-finite one.

        Syncing only at log, eval and save points (not every step) keeps dispatch
        asynchronous; every step's loss and gradient norm is checked before any checkpoint
        is written, so a saved state never follows a NaN.
        """
        bad = self.counters.sync()
        if bad is not None:
            self._stop_diverged(*bad)

    def _report_step(self, is_log: bool, is_eval: bool, is_save: bool) -> None:
        """At a synced step: the metrics record and progress line, the eval, the checkpoint."""
        c, s, step = self.counters, self.setup, self.counters.step
        record: dict[str, Any] = {"step": step, "epoch": s.epoch_of(step)}
        rate = c.examples_per_sec
        if is_log:
            record.update(train_loss=c.close_interval(),
                          learning_rate=float(s.schedule(step - 1)),
                          grad_norm=c.last_grad_norm,
                          examples_per_sec=rate if math.isfinite(rate) else None)
        ev: dict[str, float] = {}
        if is_eval:
            ev = self.evaluate()
            record.update(ev)
        evals = " | ".join(f"{k} {v:.4f}" for k, v in ev.items())
        if is_log:
            eta = (s.total_steps - step) * s.batch_size / rate if rate > 0 else math.nan
            logging.info("%s", metrics_lib.progress_line(
                step, s.total_steps, s.epoch_of(step), record["train_loss"],
                rate if math.isfinite(rate) else 0, eta if math.isfinite(eta) else 0, evals))
        elif is_eval:
            logging.info("step %d/%d | epoch %.2f | %s", step, s.total_steps,
                         s.epoch_of(step), evals)
        if is_log or is_eval:
            self.writer.write(record)
        if is_save:
            self.save(s.task.score(ev) if ev else None)

    def _stop_diverged(self, bad_step: int, name: str) -> None:
        """Raises NonFiniteLossError (after the pending saves are committed) with advice.

        The parameters that gave the non-finite value are those after step ``bad_step - 1``:
        the checkpoints of that step or later are set aside, so that the rerun the message
        advises resumes from parameters whose loss was checked finite.
        """
        self.ckpt.set_aside_diverged(bad_step - 1)
        self.status = "diverged"
        raise diverged(bad_step, name, start_step=self.start_step,
                       schedule=self.setup.schedule, model_cfg=self.cfg.model,
                       good_steps=self.ckpt.all_steps(), directory=self.ckpt.directory)

    def evaluate(self) -> dict[str, float]:
        """Exact metrics over the eval split at the current step."""
        s = self.setup
        ev = evaluate(s.graphdef, self.state, s.ds, s.task, s.eval_batch_size,
                      rows=s.eval_rows, placement=s.placement,
                      put=lambda b: s.put(b, s.eval_batch_size))
        self.counters.last_eval_step = self.counters.step
        return ev

    def save(self, score: float | None = None) -> None:
        """Starts an async checkpoint of the state, the data position and the counters."""
        self.ckpt.save(self.counters.step, self.state, self.it, self.counters.meta(),
                       score=score)
        self.last_saved = self.counters.step

    # ---- the summary -------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """The summary; process 0 writes ``summary.json`` and ``curves.png``.

        A collective (the parameter fingerprint): every process calls it.
        """
        c, s, rate = self.counters, self.setup, self.counters.examples_per_sec
        summary = report_lib.summarise(
            self.cfg, s.ds, self.writer.records, status=self.status, step=c.step,
            total_steps=s.total_steps, epoch=s.epoch_of(c.step), num_params=s.num_params,
            wall_time_s=c.wall_time_s,
            examples_per_sec=round(rate, 1) if math.isfinite(rate) else None,
            compile_time_s=round(c.compile_time_s, 2), devices=len(s.devices))
        summary["params_sha256"] = (report_lib.params_fingerprint(self.state)
                                    if self.status != "failed" else None)
        if self.chief:
            report_lib.write_reports(self.workdir, self.cfg, summary, self.writer.records,
                                     eval_key=s.task.metric)
        return summary


def train_and_evaluate(config: Any, workdir: str | Path) -> dict[str, Any]:
    """Trains and evaluates the model of ``config``, resuming from ``workdir`` if it holds a run.

    Args:
      config: an ``ml_collections.ConfigDict`` with ``seed``, ``data``, ``model``, ``train``
        (see ``experiments/configs/common.py`` for every field).
      workdir: where checkpoints and reports go (created).

    Returns:
      The summary (also written to ``workdir/summary.json``).

    Raises:
      ConfigError: an invalid field (before anything is built or compiled).
      DataNotFoundError: the dataset is not prepared (the message says how).
      NonFiniteLossError: the loss became NaN/Inf (the last good checkpoint is kept).

    A SIGTERM or Ctrl-C saves a checkpoint and returns with ``summary["status"] ==
    "preempted"`` (see :data:`EXIT_PREEMPTED`).
    """
    run = _Run(config, Path(workdir).absolute())
    # Resources in two scopes: ``held`` (the stop flag, the workdir lock) outlives ``parts``
    # (checkpointer, metric writer), which are closed before the report is written, so the
    # summary follows the last committed save and the lock is released after both. From the
    # start: a Ctrl-C during set-up or compilation stops as cleanly as one later.
    with contextlib.ExitStack() as held:
        stop = held.enter_context(StopFlag())
        try:
            with contextlib.ExitStack() as parts:
                run.set_up(held, parts)
                run.restore(parts)
                run.train(stop)
        except BaseException:
            if run.status == "completed":
                run.status = "failed"
            raise
        finally:
            if run.writer is not None:   # set-up finished: there is a run to report
                summary = run.report()
    metrics_lib.log_summary(summary)
    logging.info("reports in %s (summary.json, metrics.jsonl, curves.png, tensorboard/)",
                 run.workdir)
    return summary
