"""``train_and_evaluate(config, workdir)``: the one training loop behind every experiment.

What a run leaves in ``workdir``: ``config.json``, ``metrics.jsonl``, ``tensorboard/``,
``checkpoints/``, ``curves.png`` and ``summary.json``. Rerunning with the same workdir resumes
from the newest readable checkpoint (model, optimizer, dropout RNG, data-iterator position),
and an interrupted-then-resumed run ends with exactly the parameters of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
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
from jax.sharding import NamedSharding

from astroflax.data import load_dataset, train_iterator
from astroflax.data.pipeline import Dataset, describe, eval_batches
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
from astroflax.train.mesh import batch_sharding, make_mesh, process_rows
from astroflax.train.steps import (
    StepSharding,
    eval_step,
    init_state,
    make_optimizer,
    make_schedule,
    sharded_train_step,
    state_shardings,
)
from astroflax.train.workdir import lock_workdir


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
    return tree_fingerprint(nnx.filter_state(state[0], nnx.Param))


def _batches(it: Iterator[dict[str, np.ndarray]], sharding: NamedSharding, batch_size: int
             ) -> Iterator[dict[str, jax.Array]]:
    for b in it:
        yield _to_global(b, sharding, batch_size)


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
    cfg, t = config, config.train
    validate_config(cfg)
    workdir = Path(workdir).absolute()
    lock = lock_workdir(workdir)  # creates it; refuses a workdir another live run is using
    chief = jax.process_index() == 0
    cfg_json = _config_json(cfg)
    _check_workdir(workdir, cfg_json)
    if chief:
        (workdir / "config.json").write_text(json.dumps(cfg_json, indent=2) + "\n")

    devices = jax.devices()[:run_device_count(cfg)]
    mesh_cfg = mesh_config(cfg)
    mesh = make_mesh(mesh_cfg, devices)
    data_sharding = batch_sharding(mesh, mesh_cfg)
    eval_bs = t.eval_batch_size or t.batch_size
    try:  # before any data is read: the rows of each global batch this process feeds
        train_rows = process_rows(data_sharding, t.batch_size)
        eval_rows = process_rows(data_sharding, eval_bs)
    except ValueError as e:
        raise ConfigError(f"config.mesh: {e}") from None

    ds = load_dataset(cfg.data.to_dict())
    validate_against_data(cfg, ds)
    logging.info("data: %s", describe(ds))
    model_kw = model_overrides(cfg.model, ds.model_overrides)
    steps_per_epoch = max(ds.num_train // t.batch_size, 1)
    total_steps = int(t.num_train_steps or math.ceil(t.num_epochs * steps_per_epoch))
    eval_every = t.eval_every_steps or steps_per_epoch
    schedule = make_schedule(learning_rate=t.learning_rate, schedule=t.schedule,
                             warmup_steps=t.warmup_steps, total_steps=total_steps)
    tx = make_optimizer(schedule, weight_decay=t.weight_decay, b1=t.b1, b2=t.b2,
                        grad_clip_norm=t.grad_clip_norm)
    try:
        graphdef, state = init_state(cfg.model.name, model_kw, tx, cfg.seed, mesh=mesh,
                                     rules=tuple(mesh_cfg["rules"]))
    except ValueError as e:  # the model rejected a value the generic checks let through
        raise ConfigError(f"config.model: {e}") from None
    num_params = sum(int(x.size) for x in jax.tree.leaves(nnx.filter_state(state[0], nnx.Param)))
    logging.info("model %s (attention=%s): %s parameters; %d steps (%d per epoch), batch %d "
                 "on %d device(s)", cfg.model.name, cfg.model.attention, f"{num_params:,}",
                 total_steps, steps_per_epoch, t.batch_size, len(devices))
    train_step = sharded_train_step(state_shardings(state))
    placement = StepSharding.gather_over(state, tuple(mesh_cfg["batch_axes"]))

    it = train_iterator(ds, t.batch_size, seed=cfg.seed, augment=bool(cfg.data.get("augment")),
                        rows=train_rows)
    ckpt = Checkpointer(workdir / "checkpoints", keep=t.keep_checkpoints)
    start_step, meta = 0, {}
    restored = ckpt.restore_latest(state, it, history=[workdir / "metrics.jsonl",
                                                       workdir / "tensorboard"])
    if restored is not None:
        state, meta = restored
        start_step = int(meta["step"])
        logging.info("resumed from the checkpoint at step %d in %s", start_step, ckpt.directory)
    writer = metrics_lib.MetricWriter(workdir, resume_step=start_step, enabled=chief)
    epoch_of = lambda s: s * t.batch_size / ds.num_train  # noqa: E731

    session_start = time.time()
    status, step = "completed", start_step
    loss_sum, n_sum = jnp.zeros((), jnp.float32), 0
    # Throughput counts training steps only (no compile, eval or checkpoint time), summed
    # over every session of the run through the checkpoint metadata.
    wall_before = float(meta.get("wall_time_s", 0.0))
    trained_examples = int(meta.get("trained_examples", 0))
    train_time = float(meta.get("train_time_s", 0.0))
    compile_time = None
    # From the checkpoint, which every process reads alike: only process 0 writes
    # metrics.jsonl, and eval is a collective that all processes must enter together.
    last_eval_step = int(meta.get("last_eval_step", max(
        [r["step"] for r in writer.records if "eval_loss" in r], default=-1)))
    last_saved = start_step if restored is not None else -1
    tick = time.time()

    def save(step: int, score: float | None = None) -> None:
        nonlocal last_saved
        wall = wall_before + time.time() - session_start
        ckpt.save(step, state, it, {"step": step, "wall_time_s": wall,
                                    "trained_examples": trained_examples,
                                    "train_time_s": train_time,
                                    "last_eval_step": last_eval_step}, score=score)
        last_saved = step

    try:
        with _StopFlag() as stop:
            batches = _batches(it, data_sharding, t.batch_size)
            while step < total_steps:
                state, m = train_step(graphdef, state, next(batches), task=ds.task,
                                      placement=placement)
                step += 1
                if compile_time is None:
                    jax.block_until_ready(m["loss"])
                    compile_time = time.time() - tick
                    tick = time.time()
                else:
                    trained_examples += t.batch_size
                loss_sum, n_sum = loss_sum + m["loss"], n_sum + 1
                is_eval = step % eval_every == 0 or step == total_steps
                is_save = (step % t.checkpoint_every_steps == 0 or is_eval or stop.requested)
                if not (is_save or step % t.log_every_steps == 0):
                    continue
                # Syncing here (not every step) keeps dispatch asynchronous; the sum of the
                # interval's losses is non-finite iff one of them is, and it is checked before
                # any checkpoint is written, so a saved state never follows a NaN.
                loss = float(loss_sum) / n_sum
                now = time.time()
                train_time += now - tick
                if not math.isfinite(loss):
                    ckpt.wait()
                    good = ckpt.all_steps()
                    status = "diverged"
                    raise NonFiniteLossError(
                        f"non-finite training loss ({loss}) between steps {step - n_sum + 1} and "
                        f"{step}; stopping. The last good checkpoint "
                        f"({'step ' + str(good[-1]) if good else 'none yet'}) is kept in "
                        f"{ckpt.directory}; lower train.learning_rate or set "
                        "train.grad_clip_norm, then rerun (it resumes from there).")
                rate = trained_examples / train_time if train_time > 0 else float("nan")
                eta = (total_steps - step) * t.batch_size / rate if rate > 0 else float("nan")
                record = {"step": step, "epoch": epoch_of(step), "train_loss": loss,
                          "learning_rate": float(schedule(step - 1)),
                          "grad_norm": float(m["grad_norm"]),
                          "examples_per_sec": rate if math.isfinite(rate) else None}
                extra = ""
                if is_eval:
                    ev = _evaluate(graphdef, state, ds, eval_bs, eval_rows, data_sharding,
                                   placement)
                    record.update(ev)
                    last_eval_step = step
                    extra = " | ".join(f"{k} {v:.4f}" for k, v in ev.items())
                logging.info("%s", metrics_lib.progress_line(
                    step, total_steps, epoch_of(step), loss, rate if math.isfinite(rate) else 0,
                    eta if math.isfinite(eta) else 0, extra))
                writer.write(record)
                if is_save:
                    save(step, _score(ev) if is_eval else None)
                loss_sum, n_sum = jnp.zeros((), jnp.float32), 0
                tick = time.time()
                if stop.requested:
                    status = "preempted"
                    break
        if status == "completed" and last_eval_step < step:
            # Resumed a finished run (or one whose last eval record was lost): evaluate once.
            ev = _evaluate(graphdef, state, ds, eval_bs, eval_rows, data_sharding, placement)
            writer.write({"step": step, "epoch": epoch_of(step), **ev})
            if last_saved < step:
                save(step, _score(ev))
    except BaseException:
        if status == "completed":
            status = "failed"
        raise
    finally:
        ckpt.close()
        writer.close()
        summary = _summary(
            cfg, ds, writer.records, status=status, step=step, total_steps=total_steps,
            epoch=epoch_of(step), num_params=num_params,
            wall_time_s=wall_before + time.time() - session_start,
            examples_per_sec=(round(trained_examples / train_time, 1) if train_time > 0
                              else None),
            compile_time_s=None if compile_time is None else round(compile_time, 2),
            devices=len(devices))
        summary["params_sha256"] = params_fingerprint(state) if status != "failed" else None
        if chief:
            (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            with contextlib.suppress(Exception):  # a plotting failure must not hide the result
                metrics_lib.plot_curves(
                    writer.records, workdir / "curves.png",
                    eval_key="eval_perplexity" if ds.task == "lm" else "eval_accuracy",
                    title=f"{cfg.get('name', None) or cfg.model.name} ({cfg.model.attention})")
        lock.release()  # after the last checkpoint and report are written
    metrics_lib.log_summary(summary)
    logging.info("reports in %s (summary.json, metrics.jsonl, curves.png, tensorboard/)",
                 workdir)
    return summary
