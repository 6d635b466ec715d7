"""``train_and_evaluate(config, workdir)``: the one training loop behind every experiment.

What a run leaves in ``workdir``: ``config.json``, ``metrics.jsonl``, ``tensorboard/``,
``checkpoints/``, ``curves.png`` and ``summary.json``. Rerunning with the same workdir resumes
from the newest readable checkpoint (model, optimizer, dropout RNG, data-iterator position),
and an interrupted-then-resumed run ends with exactly the parameters of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding

from astroflax.data import load_dataset, train_iterator
from astroflax.data.pipeline import Dataset, describe, eval_batches
from astroflax.train import metrics as metrics_lib
from astroflax.train.checkpoint import Checkpointer
from astroflax.train.config import (
    ConfigError,
    mesh_config,
    model_overrides,
    run_device_count,
    validate_config,
)
from astroflax.train.mesh import batch_sharding, make_mesh, process_rows
from astroflax.train.steps import (
    StepSharding,
    create_train_state,
    eval_step,
    make_optimizer,
    make_schedule,
    make_train_step,
    state_shardings,
)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf; the last good checkpoint is kept."""


def _config_json(cfg: Any) -> dict[str, Any]:
    return json.loads(cfg.to_json_best_effort(sort_keys=True))


def _check_workdir(workdir: Path, cfg_json: dict[str, Any]) -> None:
    """Refuses to resume a workdir whose checkpoints came from a different config."""
    old_path = workdir / "config.json"
    if not old_path.exists() or not (workdir / "checkpoints").exists():
        return
    old = json.loads(old_path.read_text())
    if old == cfg_json:
        return

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
        return out

    a, b = flat(old), flat(cfg_json)
    # The mesh and the host count may change between sessions: sharded checkpoints restore
    # onto any mesh, and iterator positions onto any process count.
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)
                  and not k.startswith("mesh.")
                  and k not in ("train.data_parallel", "distributed"))
    if not diff:
        return
    raise ConfigError(f"workdir {workdir} holds checkpoints of a different config (fields "
                      f"{diff} differ); pass another --workdir or delete that one to start over")


class _StopFlag:
    """Set by SIGTERM (preemption, ``kill``): the loop saves a checkpoint and exits cleanly."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        logging.warning("SIGTERM received: saving a checkpoint, then stopping")
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _to_global(batch: dict[str, np.ndarray], sharding: NamedSharding, batch_size: int
               ) -> dict[str, jax.Array]:
    """This process's rows -> one global ``[batch_size, ...]`` array per key."""
    return {k: jax.make_array_from_process_local_data(sharding, v, (batch_size, *v.shape[1:]))
            for k, v in batch.items()}


def _evaluate(graphdef: nnx.GraphDef, state: nnx.State, ds: Dataset, batch_size: int,
              rows: tuple[int, int], sharding: NamedSharding, placement: StepSharding
              ) -> dict[str, float]:
    """Exact metrics over the whole eval split (padding weighted out).

    ``rows``: this process's rows of each eval batch.
    """
    totals: dict[str, jax.Array] | None = None
    for b in eval_batches(ds, batch_size, rows):
        out = eval_step(graphdef, state, _to_global(b, sharding, batch_size), task=ds.task,
                        placement=placement)
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    t = {k: float(v) for k, v in (totals or {}).items()}
    mean_nll = t["nll"] / t["count"]
    if ds.task == "lm":
        return {"eval_loss": mean_nll, "eval_perplexity": math.exp(min(mean_nll, 700.0)),
                "eval_token_accuracy": t["correct"] / t["count"]}
    return {"eval_loss": mean_nll, "eval_accuracy": t["correct"] / t["count"]}


def _score(ev: dict[str, float]) -> float:
    """Higher is better: accuracy, or minus perplexity."""
    return ev["eval_accuracy"] if "eval_accuracy" in ev else -ev["eval_perplexity"]


def _summary(cfg: Any, ds: Dataset, records: list[dict[str, Any]], *, status: str, step: int,
             total_steps: int, epoch: float, num_params: int, wall_time_s: float,
             examples_per_sec: float | None, compile_time_s: float | None,
             devices: int) -> dict[str, Any]:
    key = "eval_perplexity" if ds.task == "lm" else "eval_accuracy"
    evals = [r for r in records if r.get(key) is not None]
    eval_keys = [k for k in (evals[-1] if evals else {}) if k.startswith("eval_")]
    pick = min if ds.task == "lm" else max
    best = pick(evals, key=lambda r: r[key]) if evals else None
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
    if ds.task == "classification":
        out["target_accuracy"] = target
        out["epochs_to_target"] = metrics_lib.epochs_to_target(records, target)
    if "tokenizer" in ds.info:
        out["tokenizer"] = ds.info["tokenizer"]
    return out


def params_fingerprint(state: nnx.State) -> str:
    """SHA-256 of the model's parameters (path order, raw bytes): equal iff bitwise equal.

    A collective when parameters span several processes (every process must call it).
    """
    h = hashlib.sha256()
    params = nnx.filter_state(state.model, nnx.Param)
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        h.update(jax.tree_util.keystr(path).encode())
        if not leaf.is_fully_addressable:
            leaf = multihost_utils.process_allgather(leaf, tiled=True)
        h.update(np.asarray(jax.device_get(leaf)).tobytes())
    return h.hexdigest()


def _batches(it: Iterator[dict[str, np.ndarray]], sharding: NamedSharding, batch_size: int
             ) -> Iterator[dict[str, jax.Array]]:
    for b in it:
        yield _to_global(b, sharding, batch_size)


@dataclasses.dataclass
class RunCounters:
    """The run's counters and timers: every number the loop measures lives here.

    Those that add up over the sessions of a run (a run interrupted and resumed) travel in
    each checkpoint's metadata (:meth:`meta`, :meth:`resume`). Throughput counts training steps
    only (no compile, eval or checkpoint time).
    """

    step: int = 0
    wall_before_s: float = 0.0       # wall time of the earlier sessions
    train_time_s: float = 0.0        # time in train steps, all sessions
    trained_examples: int = 0        # examples those steps trained on
    last_eval_step: int = -1
    compile_time_s: float | None = None   # this session's first step (compile + run)
    session_start: float = dataclasses.field(default_factory=time.time)
    # The current logging interval: losses summed on the device (no sync per step).
    loss_sum: jax.Array = dataclasses.field(default_factory=lambda: jnp.zeros((), jnp.float32))
    loss_steps: int = 0
    tick: float = dataclasses.field(default_factory=time.time)

    @classmethod
    def resume(cls, meta: dict[str, Any], eval_steps: list[int]) -> RunCounters:
        """Counters continued from a checkpoint's ``meta`` (empty: a fresh run).

        ``eval_steps``: steps with eval records in ``metrics.jsonl``, for checkpoints that
        predate ``last_eval_step`` in the metadata.
        """
        return cls(step=int(meta.get("step", 0)),
                   wall_before_s=float(meta.get("wall_time_s", 0.0)),
                   train_time_s=float(meta.get("train_time_s", 0.0)),
                   trained_examples=int(meta.get("trained_examples", 0)),
                   # From the checkpoint, which every process reads alike: only process 0
                   # writes metrics.jsonl, and eval is a collective all processes must enter.
                   last_eval_step=int(meta.get("last_eval_step", max(eval_steps, default=-1))))

    @property
    def wall_time_s(self) -> float:
        """Wall time of the whole run so far, all sessions."""
        return self.wall_before_s + time.time() - self.session_start

    @property
    def examples_per_sec(self) -> float:
        """Training throughput (NaN before anything was timed)."""
        return self.trained_examples / self.train_time_s if self.train_time_s > 0 else math.nan

    def meta(self) -> dict[str, Any]:
        """What a checkpoint stores so that a resumed session continues these counters."""
        return {"step": self.step, "wall_time_s": self.wall_time_s,
                "trained_examples": self.trained_examples, "train_time_s": self.train_time_s,
                "last_eval_step": self.last_eval_step}

    def count_step(self, loss: jax.Array, batch_size: int) -> None:
        """One train step done (``loss`` still on the device)."""
        self.step += 1
        if self.compile_time_s is None:
            jax.block_until_ready(loss)
            self.compile_time_s = time.time() - self.tick
            self.tick = time.time()
        else:
            self.trained_examples += batch_size
        self.loss_sum, self.loss_steps = self.loss_sum + loss, self.loss_steps + 1

    def close_interval(self) -> float:
        """Syncs: adds the interval's time to the training time; its mean loss."""
        loss = float(self.loss_sum) / self.loss_steps
        self.train_time_s += time.time() - self.tick
        return loss

    def start_interval(self) -> None:
        """A new logging interval (after the eval and the checkpoint, which are not timed)."""
        self.loss_sum, self.loss_steps = jnp.zeros((), jnp.float32), 0
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
        self.counters = RunCounters()

    # ---- set-up: config, devices, data, model, train step ------------------------------
    def set_up(self) -> None:
        """Everything before the first step; config problems raise ConfigError early."""
        cfg, t = self.cfg, self.cfg.train
        validate_config(cfg)
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg_json = _config_json(cfg)
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

        self.ds = ds = load_dataset(cfg.data.to_dict())
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
        self.num_params = sum(int(x.size) for x in
                              jax.tree.leaves(nnx.filter_state(self.state.model, nnx.Param)))
        logging.info("model %s (attention=%s): %s parameters; %d steps (%d per epoch), batch %d "
                     "on %d device(s)", cfg.model.name, cfg.model.attention,
                     f"{self.num_params:,}", self.total_steps, steps_per_epoch, t.batch_size,
                     len(self.devices))
        self.placement = StepSharding.gather_over(self.state, tuple(mesh_cfg["batch_axes"]))
        self.train_step = make_train_step(self.graphdef, task=ds.task, placement=self.placement,
                                          shardings=state_shardings(self.state))
        self.it = train_iterator(ds, t.batch_size, seed=cfg.seed,
                                 augment=bool(cfg.data.get("augment")), rows=train_rows)
        self.ckpt = Checkpointer(self.workdir / "checkpoints", keep=t.keep_checkpoints)

    def epoch_of(self, step: int) -> float:
        """Epochs trained after ``step`` steps."""
        return step * self.cfg.train.batch_size / self.ds.num_train

    # ---- restore: the newest readable checkpoint, the reports cut back to it -------------
    def restore(self) -> None:
        """Continues from the newest readable checkpoint, if any (else from step 0)."""
        restored = self.ckpt.restore_latest(self.state, self.it)
        meta: dict[str, Any] = {}
        if restored is not None:
            self.state, meta = restored
            self.last_saved = int(meta["step"])
            logging.info("resumed from the checkpoint at step %d in %s", self.last_saved,
                         self.ckpt.directory)
        start_step = int(meta.get("step", 0))
        self.writer = metrics_lib.MetricWriter(self.workdir, resume_step=start_step,
                                               enabled=self.chief)
        self.counters = RunCounters.resume(
            meta, [r["step"] for r in self.writer.records if "eval_loss" in r])

    # ---- the loop ----------------------------------------------------------------------
    def train(self, stop: _StopFlag) -> None:
        """Train steps up to ``total_steps``, with logging, evaluation and checkpoints."""
        t, c, total = self.cfg.train, self.counters, self.total_steps
        batches = _batches(self.it, self.data_sharding, t.batch_size)
        c.start_interval()
        while c.step < total:
            self.state, m = self.train_step(self.state, next(batches))
            c.count_step(m["loss"], t.batch_size)
            step = c.step
            is_eval = step % self.eval_every == 0 or step == total
            is_save = step % t.checkpoint_every_steps == 0 or is_eval or stop.requested
            if not (is_save or step % t.log_every_steps == 0):
                continue
            # Syncing here (not every step) keeps dispatch asynchronous; the sum of the
            # interval's losses is non-finite iff one of them is, and it is checked before
            # any checkpoint is written, so a saved state never follows a NaN.
            steps = c.loss_steps
            loss = c.close_interval()
            if not math.isfinite(loss):
                self._stop_diverged(loss, step - steps + 1)
            rate = c.examples_per_sec
            eta = (total - step) * t.batch_size / rate if rate > 0 else float("nan")
            record = {"step": step, "epoch": self.epoch_of(step), "train_loss": loss,
                      "learning_rate": float(self.schedule(step - 1)),
                      "grad_norm": float(m["grad_norm"]),
                      "examples_per_sec": rate if math.isfinite(rate) else None}
            extra = ""
            if is_eval:
                ev = self.evaluate()
                record.update(ev)
                extra = " | ".join(f"{k} {v:.4f}" for k, v in ev.items())
            logging.info("%s", metrics_lib.progress_line(
                step, total, self.epoch_of(step), loss, rate if math.isfinite(rate) else 0,
                eta if math.isfinite(eta) else 0, extra))
            self.writer.write(record)
            if is_save:
                self.save(_score(ev) if is_eval else None)
            c.start_interval()
            if stop.requested:
                self.status = "preempted"
                return
        if c.last_eval_step < c.step:
            # Resumed a finished run (or one whose last eval record was lost): evaluate once.
            ev = self.evaluate()
            self.writer.write({"step": c.step, "epoch": self.epoch_of(c.step), **ev})
            if self.last_saved < c.step:
                self.save(_score(ev))

    def _stop_diverged(self, loss: float, first_step: int) -> None:
        """Raises NonFiniteLossError after the pending checkpoint saves are committed."""
        self.ckpt.wait()
        good = self.ckpt.all_steps()
        self.status = "diverged"
        raise NonFiniteLossError(
            f"non-finite training loss ({loss}) between steps {first_step} and "
            f"{self.counters.step}; stopping. The last good checkpoint "
            f"({'step ' + str(good[-1]) if good else 'none yet'}) is kept in "
            f"{self.ckpt.directory}; lower train.learning_rate or set "
            "train.grad_clip_norm, then rerun (it resumes from there).")

    # ---- evaluation ------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Exact metrics over the eval split at the current step."""
        ev = _evaluate(self.graphdef, self.state, self.ds, self.eval_bs, self.eval_rows,
                       self.data_sharding, self.placement)
        self.counters.last_eval_step = self.counters.step
        return ev

    # ---- saving ------------------------------------------------------------------------------
    def save(self, score: float | None = None) -> None:
        """Starts an async checkpoint of the state, the data position and the counters."""
        self.ckpt.save(self.counters.step, self.state, self.it, self.counters.meta(),
                       score=score)
        self.last_saved = self.counters.step

    def close(self) -> None:
        """Waits for pending saves; closes the checkpoint manager and the metric writer."""
        self.ckpt.close()
        if hasattr(self, "writer"):
            self.writer.close()

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
            compile_time_s=None if c.compile_time_s is None else round(c.compile_time_s, 2),
            devices=len(self.devices))
        summary["params_sha256"] = (params_fingerprint(self.state) if self.status != "failed"
                                    else None)
        if self.chief:
            (self.workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            with contextlib.suppress(Exception):  # a plotting failure must not hide the result
                metrics_lib.plot_curves(
                    self.writer.records, self.workdir / "curves.png",
                    eval_key="eval_perplexity" if ds.task == "lm" else "eval_accuracy",
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
    """
    run = _Run(config, Path(workdir).absolute())
    run.set_up()
    run.restore()
    try:
        with _StopFlag() as stop:
            run.train(stop)
    except BaseException:
        if run.status == "completed":
            run.status = "failed"
        raise
    finally:
        run.close()
        summary = run.report()
    metrics_lib.log_summary(summary)
    logging.info("reports in %s (summary.json, metrics.jsonl, curves.png, tensorboard/)",
                 run.workdir)
    return summary
