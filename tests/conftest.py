"""Test-wide JAX settings: several CPU devices, float64 available, strict dtype promotion."""

import os

# Before JAX initialises its backend: tests of sharding need several devices on one CPU.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax

jax.config.update("jax_enable_x64", True)
# Strict promotion turns an accidental float32 + float64 (or bf16 + f32) mix into an error,
# so the kernels' explicit accumulation dtypes are actually exercised.
jax.config.update("jax_numpy_dtype_promotion", "strict")
