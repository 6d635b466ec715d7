"""Test-wide JAX settings: several CPU devices, float64 available, strict dtype promotion, and a
persistent compilation cache shared by the test workers and the subprocesses they start."""

import os
import tempfile
from pathlib import Path

# Before JAX initialises its backend: tests of sharding need several devices on one CPU.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# Many end-to-end tests train the same smoke model (a run and its resume, a study's seeds, a
# CLI subprocess and its in-process twin); compiling it dominates their time. XLA executables
# are cached by a key over the whole HLO, the compile options and the jax/XLA versions, so a
# hit can only return the executable of an identical computation. Set in the environment (not
# only jax.config) so that subprocesses started by tests share the cache.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(Path(tempfile.gettempdir()) / f"astroflax-tests-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax

jax.config.update("jax_enable_x64", True)
# Strict promotion turns an accidental float32 + float64 (or bf16 + f32) mix into an error,
# so the kernels' explicit accumulation dtypes are actually exercised.
jax.config.update("jax_numpy_dtype_promotion", "strict")
