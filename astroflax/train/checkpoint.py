"""orbax ``CheckpointManager`` for the run: model, optimizer, step, data iterator, run metadata.

Each checkpoint step directory holds ``model/`` and ``opt/`` (the ``nnx.State`` s, including
dropout RNG counters and Adam moments), ``data_iter/`` (grain iterator position, one file per
process; positions count global batches, so a checkpoint resumes on any process count) and
``meta/`` (JSON: step, cumulative wall time). The last ``keep`` checkpoints are kept, and also
the one with the best eval score (saved with ``score`` metrics), so the best model survives
however long the run goes on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

_policies = ocp.checkpoint_managers.preservation_policy


def _abstract(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of ``tree``: what to restore into."""
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(a, "sharding", None)),
        tree)


class Checkpointer:
    """Saves and restores the training state in ``directory`` (see the module docstring)."""

    def __init__(self, directory: str | Path, *, keep: int):
        """Opens (creating) ``directory``; ``keep``: how many latest checkpoints to keep."""
        self.directory = Path(directory).absolute()
        policy = _policies.AnyPreservationPolicy([
            _policies.LatestN(n=keep),
            _policies.BestN(get_metric_fn=lambda m: m["score"], n=1,
                            keep_checkpoints_without_metrics=False),
        ])
        # Async saves overlap writing with training; temporary directories of a save killed
        # half-way are never committed, so restore only ever sees finished checkpoints.
        options = ocp.CheckpointManagerOptions(preservation_policy=policy, create=True,
                                               cleanup_tmp_directories=True)
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
        args = ocp.args.Composite(
            model=ocp.args.StandardSave(state.model), opt=ocp.args.StandardSave(state.optimizer),
            data_iter=grain.checkpoint.CheckpointSave(data_iter),
            meta=ocp.args.JsonSave(meta))
        self.manager.save(step, args=args, force=True,
                          metrics=None if score is None else {"score": float(score)})

    def wait(self) -> None:
        """Blocks until pending saves are committed."""
        self.manager.wait_until_finished()

    def restore_latest(self, state: nnx.State, data_iter: grain.DatasetIterator
                       ) -> tuple[nnx.State, dict[str, Any]] | None:
        """Restores the newest readable checkpoint into ``state``'s structure and ``data_iter``.

        An unreadable checkpoint (truncated files, a disk error) is reported with a warning and
        the previous one is tried, so one bad write costs at most ``checkpoint_every_steps``.

        Returns:
          ``(state, meta)``, or None when there is no (readable) checkpoint.
        """
        target_model, target_opt = _abstract(state.model), _abstract(state.optimizer)
        for step in reversed(self.all_steps()):
            try:
                r = self.manager.restore(step, args=ocp.args.Composite(
                    model=ocp.args.StandardRestore(target_model),
                    opt=ocp.args.StandardRestore(target_opt),
                    meta=ocp.args.JsonRestore()))
                data_iter.set_state(self._iterator_state(step))
            except Exception as e:
                logging.warning("checkpoint at step %d in %s is unreadable (%s: %s); trying "
                                "the previous one", step, self.directory, type(e).__name__,
                                str(e)[:300])
                continue
            self._set_aside(s for s in self.all_steps() if s > step)
            return nnx.State({"model": r.model, "optimizer": r.opt}), dict(r.meta)
        self._set_aside(self.all_steps())
        return None

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
        """Moves unreadable checkpoints to ``<directory>.unreadable/`` (kept for inspection).

        The run will save those steps again, which orbax refuses while they exist.
        """
        moved = False
        for step in list(steps):
            dest = self.directory.with_name(self.directory.name + ".unreadable") / str(step)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            shutil.move(str(self.directory / str(step)), dest)
            logging.warning("moved the unreadable checkpoint of step %d to %s", step, dest)
            moved = True
        if moved:
            self.manager.reload()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()
