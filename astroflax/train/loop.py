"""``train_and_evaluate(config, workdir)``: the one training loop behind every experiment.

What a run leaves in ``workdir``: ``config.json``, ``metrics.jsonl``, ``tensorboard/``,
``checkpoints/``, ``curves.png`` and ``summary.json``. Rerunning with the same workdir resumes
from the newest readable checkpoint (model, optimizer, dropout RNG, data-iterator position, the
run's counters), and an interrupted-then-resumed run ends with exactly the parameters and the
metrics of an uninterrupted one. A resume may change the fields in :data:`RESUMABLE_FIELDS`
(each change is logged); any other difference is refused.

SIGTERM or Ctrl-C (SIGINT) stops a run cleanly: it saves a checkpoint after the current step
and returns a summary with ``status == "preempted"``; ``experiments.run`` then exits with
:data:`EXIT_PREEMPTED`. A second Ctrl-C interrupts at once.

What the summary and ``metrics.jsonl`` report (each number means one thing):

- ``train_loss``: the mean training loss over the ``log_every_steps`` steps ending at the
  record's step (records at multiples of ``log_every_steps``; the run's last step closes a
  possibly shorter interval). Eval-only records carry no training fields.
- ``examples_per_sec``: examples trained per second spent in train steps (no compile, eval or
  checkpoint time), over all sessions of the run.
- ``compile_time_s``: seconds spent compiling the train step, summed over all sessions.
- ``wall_time_s``: seconds from the call of ``train_and_evaluate`` (config checks, data, model,
  compile, training, evaluation, checkpoints) to the summary, summed over all sessions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding

from astroflax.data import DataConfigError, Dataset, describe, load_dataset, train_iterator
from astroflax.train import metrics as metrics_lib
from astroflax.train.checkpoint import Checkpointer, tree_fingerprint
from astroflax.train.config import (
    ConfigError,
    mesh_config,
    model_overrides,
    run_device_count,
    validate_against_data,
    validate_config,
)
from astroflax.train.evaluation import evaluate
from astroflax.train.mesh import batch_sharding, make_mesh, process_rows
from astroflax.train.steps import (
    StepSharding,
    create_train_state,
    load_pretrained,
    make_optimizer,
    make_schedule,
    make_train_step,
    state_shardings,
)
from astroflax.train.tasks import for_dataset
from astroflax.train.workdir import lock_workdir

#: Exit status of ``experiments.run`` when a run stopped on SIGTERM or Ctrl-C after saving a
#: checkpoint: rerunning the same command resumes it. (75 is ``EX_TEMPFAIL`` of BSD's
#: sysexits.h, "temporary failure, the user is invited to retry".) A completed run exits 0.
EXIT_PREEMPTED = 75

#: Config fields a resumed run may change: the optimisation schedule, the step counts, how
#: often it logs, evaluates and saves, and where it runs (``mesh.*``: sharded checkpoints
#: restore onto any mesh, iterator positions onto any process count). The model, the data, the
#: seed, the batch size and the optimizer's form would make the checkpoint another run's.
RESUMABLE_FIELDS = (
    "train.learning_rate", "train.schedule", "train.warmup_steps", "train.num_train_steps",
    "train.num_epochs", "train.log_every_steps", "train.eval_every_steps",
    "train.checkpoint_every_steps", "train.keep_checkpoints", "train.eval_batch_size",
    "train.target_accuracy", "train.data_parallel", "distributed", "mesh.*",
)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf; the last good checkpoint is kept."""


def config_json(cfg: Any) -> dict[str, Any]:
    """The config as the plain, key-sorted JSON a run writes to ``config.json``.

    Resuming and the study's "finished run of this config" check compare against it.
    """
    return json.loads(cfg.to_json_best_effort(sort_keys=True))


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"batch_size": 8}}`` -> ``{"train.batch_size": 8}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def _resumable(field: str) -> bool:
    return any(field == f or (f.endswith(".*") and field.startswith(f[:-1]))
               for f in RESUMABLE_FIELDS)


def _check_workdir(workdir: Path, cfg_json: dict[str, Any]) -> None:
    """Checks that ``cfg_json`` may resume ``workdir``'s checkpoints; logs what it changes.

    Raises:
      ConfigError: the workdir holds checkpoints and a field outside
        :data:`RESUMABLE_FIELDS` differs.
    """
    old_path, ckpt_dir = workdir / "config.json", workdir / "checkpoints"
    # Without a committed checkpoint there is nothing to resume (a run that stopped before its
    # first save, e.g. on a NaN): any config may start over here.
    if not old_path.exists() or not ckpt_dir.is_dir() or not any(
            p.name.isdigit() for p in ckpt_dir.iterdir()):
        return
    a, b = _flat(json.loads(old_path.read_text())), _flat(cfg_json)
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    refused = [k for k in diff if not _resumable(k)]
    if refused:
        raise ConfigError(
            f"workdir {workdir} holds checkpoints of a different config (fields {refused} "
            f"differ; a resume may change only {list(RESUMABLE_FIELDS)}); pass another "
            "--workdir or delete that one to start over")
    for k in diff:
        logging.warning("resuming with config.%s changed: %r -> %r", k, a.get(k), b.get(k))


class _StopFlag:
    """Set by SIGTERM (preemption, ``kill``) or Ctrl-C: the loop saves, then stops cleanly.

    A second Ctrl-C raises ``KeyboardInterrupt`` as usual (to stop a save that hangs).
    """

    _SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self._SIGNALS}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        logging.warning("%s received: saving a checkpoint after this step, then stopping "
                        "(rerun the same command to resume)", signal.Signals(signum).name)
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)


def _in_structure_of(target: nnx.State, restored: nnx.State) -> nnx.State:
    """``restored``'s arrays in ``target``'s exact pytree structure.

    orbax gives back nested ``nnx.State`` s where a fresh state holds plain dicts; the same
    leaves in another structure would make the compiled train step reject the state (or, if
    jitted lazily, compile the step a second time).

    Raises:
      ValueError: the two do not hold the same paths (another model's checkpoint).
    """
    want, treedef = jax.tree_util.tree_flatten_with_path(target)
    got = jax.tree_util.tree_flatten_with_path(restored)[0]
    keys = [jax.tree_util.keystr(p) for p, _ in want]
    if keys != [jax.tree_util.keystr(p) for p, _ in got]:
        raise ValueError("the restored state's paths differ from the model's: "
                         f"{sorted(set(keys) ^ {jax.tree_util.keystr(p) for p, _ in got})[:5]}")
    return jax.tree_util.tree_unflatten(treedef, [x for _, x in got])


def _to_global(batch: dict[str, np.ndarray], sharding: NamedSharding, batch_size: int
               ) -> dict[str, jax.Array]:
    """This process's rows -> one global ``[batch_size, ...]`` array per key."""
    return {k: jax.make_array_from_process_local_data(sharding, v, (batch_size, *v.shape[1:]))
            for k, v in batch.items()}


def _summary(cfg: Any, ds: Dataset, records: list[dict[str, Any]], *, status: str, step: int,
             total_steps: int, epoch: float, num_params: int, wall_time_s: float,
             examples_per_sec: float | None, compile_time_s: float | None,
             devices: int) -> dict[str, Any]:
    task = for_dataset(ds)
    key = task.metric
    evals = [r for r in records if r.get(key) is not None]
    eval_keys = [k for k in (evals[-1] if evals else {}) if k.startswith("eval_")]
    best = None
    for r in evals:   # the first of tied evals
        if best is None or task.better(r[key], best[key]):
            best = r
    target = float(cfg.train.target_accuracy)
    out: dict[str, Any] = {
        "config": cfg.get("name", None), "status": status, "dataset": ds.name, "task": ds.task,
        "model": cfg.model.name, "attention": cfg.model.attention,
        "step": step, "total_steps": total_steps, "epochs": epoch,
        "final": {k: evals[-1][k] for k in eval_keys} if evals else None,
        "best": ({"step": best["step"], "epoch": best["epoch"], key: best[key]}
                 if best else None),
        "num_params": num_params, "wall_time_s": round(wall_time_s, 2),
        "examples_per_sec": examples_per_sec, "compile_time_s": compile_time_s,
        "num_devices": devices, "backend": jax.default_backend(),
        "eval_split": ds.info.get("eval_split"),
    }
    if task.has_accuracy_target:
        out["target_accuracy"] = target
        out["epochs_to_target"] = metrics_lib.epochs_to_target(records, target)
    if "tokenizer" in ds.info:
        out["tokenizer"] = ds.info["tokenizer"]
    return out


def params_fingerprint(state: nnx.State) -> str:
    """SHA-256 of the model's parameters (path order, raw bytes): equal iff bitwise equal.

    A collective when parameters span several processes (every process must call it).
    """
    return tree_fingerprint(nnx.filter_state(state.model, nnx.Param))


def _batches(it: Iterator[dict[str, np.ndarray]], sharding: NamedSharding, batch_size: int
             ) -> Iterator[dict[str, jax.Array]]:
    for b in it:
        yield _to_global(b, sharding, batch_size)


@dataclasses.dataclass
class RunCounters:
    """The run's counters and timers: every number the loop measures lives here.

    All of them add up over the sessions of a run (a run interrupted and resumed): they travel
    in each checkpoint's metadata (:meth:`meta`, :meth:`resume`), including the open logging
    interval, so a resumed run reports exactly what an uninterrupted one does. What each
    number means is in the module docstring.
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


class _Run:
    """One session of a run: its parts, in the order :func:`train_and_evaluate` calls them.

    :meth:`set_up` (config, data, model, step), :meth:`restore`, :meth:`train` (the loop, with
    :meth:`evaluate` and :meth:`save`), :meth:`close` and :meth:`report` (the summary).
    """

    def __init__(self, config: Any, workdir: Path):
        self.cfg, self.workdir = config, workdir
        self.chief = jax.process_index() == 0
        self.status = "completed"
        self.last_saved = -1
        self.counters = RunCounters()      # its session_start: now, before any set-up
        self.writer: metrics_lib.MetricWriter | None = None

    # ---- set-up: config, devices, data, model, train step ------------------------------
    def set_up(self, held: contextlib.ExitStack, parts: contextlib.ExitStack) -> None:
        """Everything before the first step; config problems raise ConfigError early.

        The workdir lock goes on ``held`` (released after the report), the checkpointer on
        ``parts`` (closed before it), each as soon as it is acquired, so a failure at any
        later point of set-up still releases them.
        """
        cfg, t = self.cfg, self.cfg.train
        validate_config(cfg)
        # Creates the workdir; refuses one that another live run is using.
        held.enter_context(lock_workdir(self.workdir))
        cfg_json = config_json(cfg)
        _check_workdir(self.workdir, cfg_json)
        if self.chief:
            (self.workdir / "config.json").write_text(json.dumps(cfg_json, indent=2) + "\n")

        self.devices = jax.devices()[:run_device_count(cfg)]
        mesh_cfg = mesh_config(cfg)
        mesh = make_mesh(mesh_cfg, self.devices)
        self.data_sharding = batch_sharding(mesh, mesh_cfg)
        self.eval_bs = t.eval_batch_size or t.batch_size
        try:  # before any data is read: the rows of each global batch this process feeds
            train_rows = process_rows(self.data_sharding, t.batch_size)
            self.eval_rows = process_rows(self.data_sharding, self.eval_bs)
        except ValueError as e:
            raise ConfigError(f"config.mesh: {e}") from None

        try:
            self.ds = ds = load_dataset(cfg.data.to_dict())
        except DataConfigError as e:
            raise ConfigError(f"config.{e}") from None
        validate_against_data(cfg, ds)
        logging.info("data: %s", describe(ds))
        model_kw = model_overrides(cfg.model, ds.model_overrides)
        steps_per_epoch = max(ds.num_train // t.batch_size, 1)
        self.total_steps = int(t.num_train_steps or math.ceil(t.num_epochs * steps_per_epoch))
        self.eval_every = t.eval_every_steps or steps_per_epoch
        self.schedule = make_schedule(learning_rate=t.learning_rate, schedule=t.schedule,
                                      warmup_steps=t.warmup_steps, total_steps=self.total_steps)
        tx = make_optimizer(self.schedule, weight_decay=t.weight_decay, b1=t.b1, b2=t.b2,
                            grad_clip_norm=t.grad_clip_norm)
        try:
            self.graphdef, self.state = create_train_state(
                cfg.model.name, model_kw, tx, cfg.seed, mesh=mesh, rules=tuple(mesh_cfg["rules"]))
        except ValueError as e:  # the model rejected a value the generic checks let through
            raise ConfigError(f"config.model: {e}") from None
        if ds.pretrained:   # read once by the data, copied in after init
            try:
                self.state = load_pretrained(self.graphdef, self.state, ds.pretrained)
            except ValueError as e:
                raise ConfigError(f"config.model: {e}") from None
        self.num_params = sum(int(x.size) for x in
                              jax.tree.leaves(nnx.filter_state(self.state.model, nnx.Param)))
        logging.info("model %s (attention=%s): %s parameters; %d steps (%d per epoch), batch %d "
                     "on %d device(s)", cfg.model.name, cfg.model.attention,
                     f"{self.num_params:,}", self.total_steps, steps_per_epoch, t.batch_size,
                     len(self.devices))
        self.placement = StepSharding.gather_over(self.state, tuple(mesh_cfg["batch_axes"]))
        self.task = for_dataset(ds)
        self.train_step = make_train_step(self.graphdef, task=self.task, placement=self.placement,
                                          shardings=state_shardings(self.state))
        self.it = train_iterator(ds, t.batch_size, seed=cfg.seed,
                                 augment=bool(cfg.data.get("augment")), rows=train_rows)
        self.ckpt = parts.enter_context(contextlib.closing(
            Checkpointer(self.workdir / "checkpoints", keep=t.keep_checkpoints)))

    def epoch_of(self, step: int) -> float:
        """Epochs trained after ``step`` steps."""
        return step * self.cfg.train.batch_size / self.ds.num_train

    # ---- restore: the newest readable checkpoint, the reports cut back to it -------------
    def restore(self, parts: contextlib.ExitStack) -> None:
        """Continues from the newest readable checkpoint, if any (else from step 0)."""
        restored = self.ckpt.restore_latest(
            self.state, self.it,
            history=[self.workdir / "metrics.jsonl", self.workdir / "tensorboard"])
        meta: dict[str, Any] = {}
        if restored is not None:
            state, meta = restored
            self.state = _in_structure_of(self.state, state)
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
        compiled = self.train_step.lower(self.state, batch).compile()
        self.counters.compile_time_s += time.time() - start
        logging.info("train step compiled in %.1f s", time.time() - start)
        return compiled

    def train(self, stop: _StopFlag) -> None:
        """Train steps up to ``total_steps``, with logging, evaluation and checkpoints."""
        c = self.counters
        if not stop.requested and c.step < self.total_steps:
            self._train_steps(stop)
        if stop.requested and c.step < self.total_steps:   # also a request during set-up
            self.status = "preempted"
            return
        if c.last_eval_step < c.step:
            # Resumed a finished run (or one whose last eval record was lost): evaluate once.
            ev = self.evaluate()
            self.writer.write({"step": c.step, "epoch": self.epoch_of(c.step), **ev})
            if self.last_saved < c.step:
                self.save(self.task.score(ev))

    def _train_steps(self, stop: _StopFlag) -> None:
        """Steps until ``total_steps``, or until a stop request (then saves the step)."""
        t, c, total = self.cfg.train, self.counters, self.total_steps
        batches = _batches(self.it, self.data_sharding, t.batch_size)
        first = next(batches)
        step_fn = self.compile_step(first)
        c.resume_timing()
        for batch in itertools.chain([first], batches):
            self.state, m = step_fn(self.state, batch)
            c.count_step(m, t.batch_size)
            step = c.step
            is_log = step % t.log_every_steps == 0 or step == total
            is_eval = step % self.eval_every == 0 or step == total
            is_save = step % t.checkpoint_every_steps == 0 or is_eval or stop.requested
            if is_log or is_save:
                self._sync()
                self._report_step(is_log, is_eval, is_save)
                c.resume_timing()
            if stop.requested and self.last_saved < step:   # the signal came just now
                self._sync()
                self.save()
            if stop.requested or step >= total:
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
        t, c, step = self.cfg.train, self.counters, self.counters.step
        record: dict[str, Any] = {"step": step, "epoch": self.epoch_of(step)}
        rate = c.examples_per_sec
        if is_log:
            record.update(train_loss=c.close_interval(),
                          learning_rate=float(self.schedule(step - 1)),
                          grad_norm=c.last_grad_norm,
                          examples_per_sec=rate if math.isfinite(rate) else None)
        ev: dict[str, float] = {}
        if is_eval:
            ev = self.evaluate()
            record.update(ev)
        evals = " | ".join(f"{k} {v:.4f}" for k, v in ev.items())
        if is_log:
            eta = (self.total_steps - step) * t.batch_size / rate if rate > 0 else math.nan
            logging.info("%s", metrics_lib.progress_line(
                step, self.total_steps, self.epoch_of(step), record["train_loss"],
                rate if math.isfinite(rate) else 0, eta if math.isfinite(eta) else 0, evals))
        elif is_eval:
            logging.info("step %d/%d | epoch %.2f | %s", step, self.total_steps,
                         self.epoch_of(step), evals)
        if is_log or is_eval:
            self.writer.write(record)
        if is_save:
            self.save(self.task.score(ev) if ev else None)

    def _stop_diverged(self, bad_step: int, name: str) -> None:
        """Raises NonFiniteLossError (after the pending saves are committed) with advice.

        A non-finite value before the parameters were ever changed (the first step, or only
        zero learning rates so far) comes from the model or the data, not the learning rate.

        The parameters that gave it are those after step ``bad_step - 1``: a checkpoint of
        that step or later is moved to ``checkpoints.diverged/``, so that the rerun the
        message advises resumes from parameters whose loss was checked finite.
        """
        self.ckpt.wait()
        self._set_aside_diverged(bad_step - 1)
        good = self.ckpt.all_steps()
        self.status = "diverged"
        what = "training loss" if name == "loss" else "gradient norm"
        untouched = self.start_step == 0 and all(
            float(self.schedule(i)) == 0.0 for i in range(bad_step - 1))
        if untouched:
            m = self.cfg.model
            raise NonFiniteLossError(
                f"non-finite {what} at step {bad_step}, computed with the initial parameters "
                "(no update had changed them yet), so the learning rate is not the cause: a "
                f"model setting is out of range (config.model: attention={m.attention!r}, "
                f"alpha={m.get('alpha')!r}, ...; e.g. a huge alpha) or the data holds "
                "non-finite values. Fix that setting and rerun"
                + (f" with another --workdir ({self.ckpt.directory} holds checkpoints of this "
                   "model)." if good else "; nothing was saved, so the same workdir starts over."))
        raise NonFiniteLossError(
            f"non-finite {what} at step {bad_step}; stopping. The last good checkpoint "
            f"({'step ' + str(good[-1]) if good else 'none yet'}) is kept in "
            f"{self.ckpt.directory}; lower train.learning_rate (or lengthen "
            "train.warmup_steps) and rerun the same command with that change: it "
            f"{'resumes from there' if good else 'starts over'}.")

    def _set_aside_diverged(self, first: int) -> None:
        """Moves the checkpoints of steps ``>= first`` to ``checkpoints.diverged/``."""
        steps = [s for s in self.ckpt.all_steps() if s >= first]
        if not steps:
            return
        if self.chief:
            aside = self.ckpt.directory.with_name(self.ckpt.directory.name + ".diverged")
            for s in steps:
                dest = aside / str(s)
                if dest.exists():
                    shutil.rmtree(dest)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(self.ckpt.directory / str(s)), dest)
                logging.warning("moved the checkpoint of step %d to %s: its parameters gave "
                                "the non-finite value", s, dest)
        multihost_utils.sync_global_devices("astroflax: diverged checkpoints set aside")
        self.ckpt.manager.reload()

    # ---- evaluation ------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Exact metrics over the eval split at the current step."""
        ev = evaluate(self.graphdef, self.state, self.ds, self.task, self.eval_bs,
                      rows=self.eval_rows, placement=self.placement,
                      put=lambda b: _to_global(b, self.data_sharding, self.eval_bs))
        self.counters.last_eval_step = self.counters.step
        return ev

    # ---- saving ------------------------------------------------------------------------------
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
        cfg, c, ds = self.cfg, self.counters, self.ds
        rate = c.examples_per_sec
        summary = _summary(
            cfg, ds, self.writer.records, status=self.status, step=c.step,
            total_steps=self.total_steps, epoch=self.epoch_of(c.step), num_params=self.num_params,
            wall_time_s=c.wall_time_s,
            examples_per_sec=round(rate, 1) if math.isfinite(rate) else None,
            compile_time_s=round(c.compile_time_s, 2),
            devices=len(self.devices))
        summary["params_sha256"] = (params_fingerprint(self.state) if self.status != "failed"
                                    else None)
        if self.chief:
            (self.workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            with contextlib.suppress(Exception):  # a plotting failure must not hide the result
                metrics_lib.plot_curves(
                    self.writer.records, self.workdir / "curves.png",
                    eval_key=self.task.metric,
                    title=f"{cfg.get('name', None) or cfg.model.name} ({cfg.model.attention})")
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
        stop = held.enter_context(_StopFlag())
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
