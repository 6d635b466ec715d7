"""Multi-controller start-up: ``jax.distributed.initialize`` when flags or the environment ask.

One Python process per host (or per GPU); each runs the same command. Sources, first wins:

* flags / arguments ``coordinator_address`` (``host:port`` of process 0), ``num_processes``,
  ``process_id``;
* environment ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``;
* ``distributed=True`` (or ``ASTROFLAX_DISTRIBUTED=1``) with none of the above: a bare
  ``jax.distributed.initialize()``, which auto-detects TPU pod slices (and SLURM / Open MPI
  clusters).

Nothing set: a single process, no initialisation.
"""

from __future__ import annotations

import os

import jax
from absl import logging


def maybe_initialize(coordinator_address: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, distributed: bool = False) -> bool:
    """Initialises ``jax.distributed`` if asked (see the module docstring); True if it did.

    Must run before anything touches a JAX backend.
    """
    env = os.environ
    address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
    n = num_processes if num_processes is not None else (
        int(env["JAX_NUM_PROCESSES"]) if env.get("JAX_NUM_PROCESSES") else None)
    pid = process_id if process_id is not None else (
        int(env["JAX_PROCESS_ID"]) if env.get("JAX_PROCESS_ID") else None)
    bare = distributed or env.get("ASTROFLAX_DISTRIBUTED", "") not in ("", "0")
    if address is None and n is None and pid is None and not bare:
        return False
    if address is None and (n is not None or pid is not None):
        raise ValueError("num_processes/process_id given without a coordinator address "
                         "(--coordinator_address or JAX_COORDINATOR_ADDRESS=host:port)")
    jax.distributed.initialize(coordinator_address=address, num_processes=n, process_id=pid)
    logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 jax.device_count())
    return True
