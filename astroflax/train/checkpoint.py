"""orbax ``CheckpointManager`` for the run: model, optimizer, step, data iterator, run metadata.

Each checkpoint step directory holds ``model/`` and ``opt/`` (the ``nnx.State`` s, including
dropout RNG counters and Adam moments), ``data_iter/`` (grain iterator position, one file per
process; positions count global batches, so a checkpoint resumes on any process count) and
``meta/`` (JSON: step, cumulative wall time, ``state_sha256``, the fingerprint of the saved
model and optimizer state, and ``model_sha256``, the model's alone, which
``astroflax.train.load`` checks when it reads the model without the optimizer). The last
``keep`` checkpoints are kept, and also the one with the best eval score (saved with ``score``
metrics), so the best model survives however long the run goes on.

Restore verifies what it reads: the restored state must hash to the saved fingerprint and be
finite. A checkpoint that fails (bytes damaged on disk after the write, a truncated file) is
moved to ``<directory>.unreadable/`` and the previous one is tried; when none is left the run
starts over, and the history files of the lost run (``metrics.jsonl``, TensorBoard events) are
moved aside with the checkpoints, never deleted.

The checkpointer owns this layout; everything else asks it. A run's checkpoints live in
``workdir/checkpoints/`` (:meth:`Checkpointer.directory_in`), one folder per step; checkpoints
set aside go beside it (:meth:`Checkpointer.aside_of`): ``checkpoints.unreadable/`` (failed
to restore) and ``checkpoints.diverged/`` (their parameters gave a non-finite loss, see
:meth:`Checkpointer.set_aside_diverged`).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging as std_logging
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils

_policies = ocp.checkpoint_managers.preservation_policy

#: Why checkpoints were set aside, which names their folder (:meth:`Checkpointer.aside_of`).
SetAside = Literal["unreadable", "diverged"]


def _abstract(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of ``tree``: what to restore into."""
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(a, "sharding", None)),
        tree)


def _host_leaves(tree: Any) -> Iterator[tuple[str, np.ndarray]]:
    """``(path, host array)`` for every leaf of ``tree`` in flatten order.

    Arrays spread over several processes are gathered (a collective: every process must
    iterate alike); PRNG key arrays become their raw ``uint32`` key data.
    """
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype,
                                                                  jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            leaf = multihost_utils.process_allgather(leaf, tiled=True)
        yield jax.tree_util.keystr(path), np.asarray(jax.device_get(leaf))


def tree_fingerprint(tree: Any) -> str:
    """SHA-256 of a pytree of arrays (path order, raw bytes): equal iff bitwise equal.

    A collective when arrays span several processes (every process must call it); every
    process gets the same digest.
    """
    return _digest(tree)[0]


def _state_and_model_fingerprints(model: Any, opt: Any) -> tuple[str, str]:
    """``(tree_fingerprint((model, opt)), tree_fingerprint(model))`` in one pass over the model.

    The model's leaves are fetched to the host once and fed to both hashes: in the pair their
    paths carry the tuple's ``[0]`` prefix, alone they do not.
    """
    both, alone = hashlib.sha256(), hashlib.sha256()
    for path, a in _host_leaves((model, opt)):
        both.update(path.encode())
        both.update(a.tobytes())
        if path.startswith("[0]"):
            alone.update(path[len("[0]"):].encode())
            alone.update(a.tobytes())
    return both.hexdigest(), alone.hexdigest()


def verify_restored(tree: Any, saved_sha256: str | None) -> None:
    """Raises :class:`CorruptCheckpointError` unless ``tree`` is finite and matches its hash.

    ``saved_sha256``: the fingerprint saved with it (:func:`tree_fingerprint`), or None for a
    checkpoint from before fingerprints (finiteness only). A collective when arrays span
    several processes (every process must call it).
    """
    digest, nonfinite = _digest(tree)
    if nonfinite:
        raise CorruptCheckpointError(
            f"non-finite values in {', '.join(nonfinite[:3])}"
            + (f" and {len(nonfinite) - 3} more" if len(nonfinite) > 3 else ""))
    if saved_sha256 is not None and saved_sha256 != digest:
        raise CorruptCheckpointError(
            f"the restored state does not match the fingerprint saved with it "
            f"(sha256 {digest[:12]}… != {saved_sha256[:12]}…): its files were damaged after "
            "the write")


def _digest(tree: Any) -> tuple[str, list[str]]:
    """``(tree_fingerprint(tree), paths of floating leaves holding NaN or Inf)``, one pass."""
    h, bad = hashlib.sha256(), []
    for path, a in _host_leaves(tree):
        h.update(path.encode())
        h.update(a.tobytes())
        if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
            bad.append(path)
    return h.hexdigest(), bad


def _agree(why: str | None, elsewhere: str) -> str | None:
    """``why`` if this process failed, ``elsewhere`` if only another did, else None.

    A collective with several processes (every process must call it alike).
    """
    if jax.process_count() == 1:
        return why
    failed = multihost_utils.process_allgather(np.int32(why is not None))
    return why if why is not None else (elsewhere if np.any(failed) else None)


def in_structure_of(target: Any, restored: Any) -> Any:
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


class CorruptCheckpointError(ValueError):
    """A checkpoint whose restored state fails verification (fingerprint, finiteness)."""


@contextlib.contextmanager
def _quiet_unraisable() -> Iterator[None]:
    """Drops the "Exception ignored in coroutine" reports of orbax's abandoned reads.

    A failed restore leaves TensorStore read coroutines that are never awaited; when they are
    collected, Python prints a traceback with the whole TensorStore spec for each. The failure
    itself is reported by :meth:`Checkpointer.restore_latest`, so those are noise.
    """
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        yield
    finally:
        gc.collect()  # collect the abandoned coroutines while the hook is still silent
        sys.unraisablehook = previous


def _short(e: BaseException) -> str:
    """An exception as one short line: TensorStore errors append a multi-line JSON spec."""
    text = str(e).split("See full TensorStore details")[0].strip().splitlines()
    return f"{type(e).__name__}: {(text[0] if text else '')[:200]}"


class _UnscoredSaveIsExpected(std_logging.Filter):
    """Drops orbax's warning for a save without metrics.

    Periodic saves are unscored by design: only evaluated steps compete for best.
    """

    def filter(self, record: std_logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Requested `tracked_metric`")


std_logging.getLogger("absl").addFilter(_UnscoredSaveIsExpected())


def _checkpoint_score(metrics: Mapping[str, float]) -> float:
    """The number BestN ranks checkpoints by (see :meth:`Checkpointer.save`)."""
    return metrics["score"]


class Checkpointer:
    """Saves and restores the training state in ``directory`` (see the module docstring)."""

    #: The checkpoints' folder in a run's workdir.
    FOLDER = "checkpoints"

    @classmethod
    def directory_in(cls, workdir: str | Path) -> Path:
        """The folder of the checkpoints of the run in ``workdir``: ``workdir/checkpoints``."""
        return Path(workdir) / cls.FOLDER

    @staticmethod
    def aside_of(directory: str | Path, reason: SetAside) -> Path:
        """Where checkpoints of ``directory`` set aside for ``reason`` go: ``<directory>.<reason>``.

        ``"unreadable"``: they failed to restore (:meth:`restore_latest`); ``"diverged"``: their
        parameters gave a non-finite loss (:meth:`set_aside_diverged`).
        """
        directory = Path(directory)
        return directory.with_name(f"{directory.name}.{reason}")

    def __init__(self, directory: str | Path, *, keep: int):
        """Opens (creating) ``directory``; ``keep``: how many latest checkpoints to keep."""
        self.directory = Path(directory).absolute()
        policy = _policies.AnyPreservationPolicy([
            _policies.LatestN(n=keep),
            _policies.BestN(get_metric_fn=_checkpoint_score, n=1,
                            keep_checkpoints_without_metrics=False),
        ])
        # Async saves overlap writing with training; temporary directories of a save killed
        # half-way are never committed, so restore only ever sees finished checkpoints.
        # best_fn as well as BestN: orbax writes a save's metrics to disk only when best_fn is
        # set; without them a reopened manager no longer knows which step was best, and
        # BestN would let LatestN delete it at the next save after a resume.
        options = ocp.CheckpointManagerOptions(preservation_policy=policy, create=True,
                                               cleanup_tmp_directories=True,
                                               best_fn=_checkpoint_score, best_mode="max")
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def all_steps(self) -> list[int]:
        """Steps of the committed checkpoints, ascending."""
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: nnx.State, data_iter: grain.DatasetIterator,
             meta: dict[str, Any], score: float | None = None) -> None:
        """Starts an async save of ``state`` (``state.model``, ``state.optimizer``) at ``step``.

        ``score``: the eval metric where higher is better (accuracy, or minus perplexity);
        only checkpoints saved with a score compete for "best".
        """
        # Hashed on the host before the async write starts; restore recomputes and compares.
        state_sha256, model_sha256 = _state_and_model_fingerprints(state.model, state.optimizer)
        meta = {**meta, "state_sha256": state_sha256, "model_sha256": model_sha256}
        args = ocp.args.Composite(
            model=ocp.args.StandardSave(state.model), opt=ocp.args.StandardSave(state.optimizer),
            data_iter=grain.checkpoint.CheckpointSave(data_iter),
            meta=ocp.args.JsonSave(meta))
        self.manager.save(step, args=args, force=True,
                          metrics=None if score is None else {"score": float(score)})

    def wait(self) -> None:
        """Blocks until pending saves are committed."""
        self.manager.wait_until_finished()

    def restore_latest(self, state: nnx.State, data_iter: grain.DatasetIterator, *,
                       history: Sequence[str | Path] = ()
                       ) -> tuple[nnx.State, dict[str, Any]] | None:
        """Restores the newest valid checkpoint into ``state``'s structure and ``data_iter``.

        A checkpoint that cannot be read (truncated files, a disk error), whose restored
        state does not match the fingerprint saved with it (bytes damaged after the write), or
        that holds NaN/Inf is reported with a warning, moved to ``<directory>.unreadable/``
        and the previous one is tried, so one bad write costs at most
        ``checkpoint_every_steps``. Checkpoints saved before fingerprints existed are checked
        for finiteness only.

        Args:
          state: the fresh ``(model, opt)`` state (structure, shardings).
          data_iter: the fresh data iterator; its position is restored in place.
          history: files of the run the checkpoints belong to (``metrics.jsonl``,
            ``tensorboard/``). When checkpoints existed but none is valid, the run starts
            over: these are moved to ``<directory>.unreadable/history-<time>/`` (so the new
            run does not cut them back, and nothing is deleted) and a warning says so.

        Returns:
          ``(state, meta)``, or None when there is no (valid) checkpoint.
        """
        target_model, target_opt = _abstract(state.model), _abstract(state.optimizer)
        rejected: list[str] = []
        # Around the except clauses too: the abandoned reads are freed with the exception.
        with _quiet_unraisable():
            for step in reversed(self.all_steps()):
                why = None
                try:
                    r = self.manager.restore(step, args=ocp.args.Composite(
                        model=ocp.args.StandardRestore(target_model),
                        opt=ocp.args.StandardRestore(target_opt),
                        meta=ocp.args.JsonRestore()))
                except Exception as e:
                    why = _short(e)
                # Each process reads its own shards: all must have succeeded before the
                # (collective) verification, and all must take the same decision.
                why = _agree(why, "another process could not read it")
                if why is None:
                    try:
                        self._verify(step, r.model, r.opt, dict(r.meta))
                        data_iter.set_state(self._iterator_state(step))
                    except Exception as e:
                        why = str(e) if isinstance(e, CorruptCheckpointError) else _short(e)
                    why = _agree(why, "another process rejected it")
                if why is not None:
                    logging.warning("checkpoint at step %d in %s is unusable (%s); setting it "
                                    "aside and trying the previous one", step, self.directory,
                                    why)
                    rejected.append(f"step {step}: {why}")
                    continue
                self._set_aside(s for s in self.all_steps() if s > step)
                return nnx.State({"model": r.model, "optimizer": r.opt}), dict(r.meta)
            self._set_aside(self.all_steps())
            if rejected:
                self._start_over(rejected, history)
            return None

    def _verify(self, step: int, model: Any, opt: Any, meta: dict[str, Any]) -> None:
        """Raises :class:`CorruptCheckpointError` unless the restored state is the saved one."""
        verify_restored((model, opt), meta.get("state_sha256"))

    def _start_over(self, rejected: list[str], history: Sequence[str | Path]) -> None:
        """Moves the lost run's ``history`` aside and says plainly that the run starts over."""
        aside = self.aside_of(self.directory, "unreadable")
        dest = aside / time.strftime("history-%Y%m%d-%H%M%S", time.gmtime())
        moved = []
        if jax.process_index() == 0:  # the history files are process 0's
            for p in map(Path, history):
                if p.exists():
                    dest.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(p), dest / p.name)
                    moved.append(p.name)
        logging.warning(
            "STARTING OVER FROM STEP 0: none of the %d checkpoint(s) in %s could be used (%s). "
            "They are kept in %s%s.", len(rejected), self.directory, "; ".join(rejected), aside,
            f"; the previous run's {' and '.join(moved)} moved to {dest}" if moved else "")

    def _iterator_state(self, step: int) -> dict[str, Any]:
        """This process's data-iterator state at ``step``, whatever the saving process count.

        Every process saved its own file, ``process_<i>-of-<n>.json``. Its position counts
        *global* batches (each process reads its rows of the same batches, see
        :func:`astroflax.data.train_batches`), so all files hold the same state and a run
        resumed on another number of processes continues from it.

        Raises:
          ValueError: no file, or files that disagree (a corrupt checkpoint).
        """
        folder = self.directory / str(step) / "data_iter"
        own = folder / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        if own.exists():
            return json.loads(own.read_text())
        files = sorted(folder.glob("process_*-of-*.json"))
        states = [json.loads(f.read_text()) for f in files]
        if not states or any(st != states[0] for st in states):
            raise ValueError(f"{folder}: no data-iterator state for process "
                             f"{jax.process_index()} of {jax.process_count()}, and the saved "
                             f"ones ({[f.name for f in files]}) do not agree")
        saved_by = files[0].name.split("-of-")[1].removesuffix(".json")
        logging.info("checkpoint %d was saved by %s process(es), this run has %d: every "
                     "process continues at the same global batch", step, saved_by,
                     jax.process_count())
        return states[0]

    def _set_aside(self, steps: Any) -> None:
        """Moves unusable checkpoints to ``<directory>.unreadable/`` (kept for inspection).

        The run will save those steps again, which orbax refuses while they exist. A step set
        aside before keeps its copy: the new one gets a numbered name (``<step>.1``, ...).
        """
        steps = list(steps)
        for step in steps if jax.process_index() == 0 else []:  # one mover on a shared disk
            dest = self.aside_of(self.directory, "unreadable") / str(step)
            dest.parent.mkdir(parents=True, exist_ok=True)
            n = 0
            while dest.exists():
                n += 1
                dest = dest.with_name(f"{step}.{n}")
            shutil.move(str(self.directory / str(step)), dest)
            logging.warning("moved the unusable checkpoint of step %d to %s", step, dest)
        if steps and jax.process_count() > 1:  # the others wait until the move is done
            multihost_utils.sync_global_devices("astroflax_checkpoints_set_aside")
        if steps:
            self.manager.reload()

    def set_aside_diverged(self, first: int) -> None:
        """Moves the checkpoints of steps ``>= first`` to ``<directory>.diverged/``.

        Their parameters gave a non-finite loss, so a rerun must not resume from them; it
        resumes from the newest checkpoint before ``first``. Waits for pending saves first (a
        save in flight may be one of them). A copy set aside before under the same step is
        replaced. A collective with several processes (every process must call it alike).
        """
        self.wait()
        steps = [s for s in self.all_steps() if s >= first]
        if not steps:
            return
        if jax.process_index() == 0:  # one mover on a shared disk
            aside = self.aside_of(self.directory, "diverged")
            for s in steps:
                dest = aside / str(s)
                if dest.exists():
                    shutil.rmtree(dest)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(self.directory / str(s)), dest)
                logging.warning("moved the checkpoint of step %d to %s: its parameters gave "
                                "the non-finite value", s, dest)
        multihost_utils.sync_global_devices("astroflax: diverged checkpoints set aside")
        self.manager.reload()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()
