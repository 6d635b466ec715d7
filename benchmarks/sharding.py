"""Per-device bytes of one FSDP training step of each paper preset on 1/2/4/8 simulated devices.

    python -m benchmarks.sharding [--devices 1,2,4,8] [--presets cifar10,imdb,wikitext2]

For each preset and device count ``n``: a mesh ``(data=1, fsdp=n)`` with the rules
``(("embed", "fsdp"), ("vocab", "fsdp"))`` (``experiments.configs.common.fsdp``), the
abstract sharded ``(model, optimizer)`` state (nothing is allocated), and the train step
compiled for one batch of the paper's size. Printed per device: parameter and
optimizer-state bytes (the shards of the state's arrays) and the compiled
``memory_analysis`` (arguments, outputs, temporaries), and the temporaries of the same step
without gathering FSDP parameters where they are used
(:class:`astroflax.train.steps.StepSharding`). Parameter + optimizer bytes should
fall roughly as 1/n; a dimension n does not divide stays whole
(``astroflax.train.mesh.parameter_spec``). IMDB's GloVe table (300 wide, the model 128)
carries ``("vocab", None)`` and is sharded by the ``vocab`` rule.
"""

from __future__ import annotations

import argparse
import os
import sys


def shard_bytes(tree: object) -> int:
    """Bytes one device holds of the (abstract, sharded) arrays in ``tree``."""
    import jax
    import numpy as np

    total = 0
    for a in jax.tree.leaves(tree):
        shape = a.sharding.shard_shape(a.shape) if a.sharding else a.shape
        total += int(np.prod(shape)) * a.dtype.itemsize
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="1,2,4,8")
    ap.add_argument("--presets", default="cifar10,imdb,wikitext2")
    args = ap.parse_args()
    counts = [int(x) for x in args.devices.split(",")]
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={max(counts)}")

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from astroflax.train.config import model_overrides
    from astroflax.train.mesh import batch_sharding, make_mesh
    from astroflax.train.steps import (
        StepSharding,
        abstract_state,
        make_optimizer,
        make_schedule,
        make_train_step,
        state_shardings,
    )
    from benchmarks._common import machine
    from experiments.configs import common

    print(f"# {machine()}")
    print(f"{'preset':<10} {'n':>2} {'params MiB/dev':>15} {'opt MiB/dev':>12} "
          f"{'args MiB':>9} {'out MiB':>8} {'temp MiB':>9} {'temp, no gather':>16}")
    for task in args.presets.split(","):
        cfg = common.fsdp(common.paper_config(task, "astro", f"{task}_astro"))
        length, bs = cfg.data.max_len, int(cfg.train.batch_size)
        # What the data would fix: WikiText-2 uses GPT-2's BPE vocabulary (50,257 tokens).
        data = ({"image_size": 32, "in_channels": 3, "num_classes": 10} if task == "cifar10"
                else {"vocab_size": cfg.data.vocab_size or 50_257, "max_len": length,
                      **({"num_classes": 2} if task == "imdb" else {})})
        kw = model_overrides(cfg.model, data)
        tx = make_optimizer(make_schedule(learning_rate=1e-3, schedule="constant",
                                          warmup_steps=0, total_steps=10), weight_decay=0.01)
        for n in counts:
            mesh = make_mesh(cfg.mesh, jax.devices()[:n])

            graphdef, abstract = abstract_state(cfg.model.name, kw, tx, mesh,
                                                tuple(cfg.mesh.rules))

            params = shard_bytes(nnx.filter_state(abstract.model, nnx.Param))
            opt = shard_bytes(abstract.optimizer)
            bsh = batch_sharding(mesh, cfg.mesh)
            if task == "cifar10":
                batch = {"inputs": jax.ShapeDtypeStruct((bs, 32, 32, 3), jnp.float32, sharding=bsh),
                         "label": jax.ShapeDtypeStruct((bs,), jnp.int32, sharding=bsh)}
                kind = "classification"
            elif task == "imdb":
                batch = {"inputs": jax.ShapeDtypeStruct((bs, length), jnp.int32, sharding=bsh),
                         "mask": jax.ShapeDtypeStruct((bs, length), jnp.bool_, sharding=bsh),
                         "label": jax.ShapeDtypeStruct((bs,), jnp.int32, sharding=bsh)}
                kind = "classification"
            else:
                batch = {k: jax.ShapeDtypeStruct((bs, length), jnp.int32, sharding=bsh)
                         for k in ("inputs", "targets")}
                kind = "lm"
            shardings = state_shardings(abstract)
            placement = StepSharding.gather_over(abstract, tuple(cfg.mesh.batch_axes))
            step = make_train_step(graphdef, task=kind, placement=placement,
                                   shardings=shardings)
            ma = step.lower(abstract, batch).compile().memory_analysis()
            # The same step leaving parameter placement to GSPMD (see StepSharding).
            plain = make_train_step(graphdef, task=kind, shardings=shardings).lower(
                abstract, batch).compile().memory_analysis().temp_size_in_bytes
            mib = 2.0 ** 20
            print(f"{task:<10} {n:>2} {params / mib:>15.2f} {opt / mib:>12.2f} "
                  f"{ma.argument_size_in_bytes / mib:>9.2f} {ma.output_size_in_bytes / mib:>8.2f} "
                  f"{ma.temp_size_in_bytes / mib:>9.2f} {plain / mib:>16.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
