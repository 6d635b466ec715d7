"""Accelerator benchmark: the fused Pallas kernels against the XLA path and softmax attention.

Command: ``python -m benchmarks.accelerator [--quick] [--json PATH] [--peak-tflops X]``
(about 5 minutes on one GPU; B=1, H=8, m=d=128 — the paper_wikitext2 head — bfloat16 inputs,
float32 sums).

1. Per T in 1k … 32k, causal and not, forward and forward+backward: astro with
   ``implementation="pallas"`` and ``"xla"``, linear attention (the causal target's yardstick)
   and ``jax.nn.dot_product_attention`` (cuDNN on GPUs, else XLA). Each time is the best of a
   few calls after a compile; the fraction of peak divides modelled flops (astro and linear
   ``4·T·m·d`` per head forward, softmax ``4·T²·d``, halved when causal; ×3 for fwd+bwd) by
   time and by the device's peak (``--peak-tflops``, else a datasheet figure for known GPUs).
   A method whose call passed ``SLOW_CALL_S`` at one T is skipped at longer ones (budget).
   Compiled temp memory of astro fwd+bwd shows whether the XLA path's ``O(C·m·d)`` prefix
   states are gone.
2. One training step of paper_wikitext2 (B=24) and paper_cifar10 (B=32) with each
   implementation (the model's attention modules get ``kernel=astro_attention(...,
   implementation=...)``).

On a CPU it refuses, except with ``--quick``: a smoke run of every code path in the Pallas
interpreter at tiny sizes (T = 128; the tiny_* presets). Its times measure the interpreter,
not the kernels — never quote them.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from astroflax.kernels import astro_attention, linear_attention
from astroflax.nn.astro_attention import AstroAttention
from benchmarks._common import best_time, machine, print_table

B, H, M, D = 1, 8, 128, 128
LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768)
QUICK = {"H": 2, "width": 32, "lengths": (128,), "presets": ("tiny_wikitext2", "tiny_cifar10")}
CHUNK = 128  # the TPU kernels' lane width; also the GPU kernel's checkpoint interval
SLOW_CALL_S = 2.0
# Dense peak TFLOP/s from vendor datasheets (SXM parts; fp32 on CUDA cores, bf16 tensor cores).
# The causal astro kernel is vector work in float32, so its fraction uses the fp32 figure.
PEAKS = {"H200": {"fp32": 67.0, "bf16": 989.0}, "H100": {"fp32": 67.0, "bf16": 989.0},
         "A100": {"fp32": 19.5, "bf16": 312.0}}


def device_peak(override: float | None) -> dict[str, float] | None:
    """Peak TFLOP/s of device 0 (``{"fp32", "bf16"}``), or None when unknown."""
    if override is not None:
        return {"fp32": override, "bf16": override}
    kind = jax.devices()[0].device_kind
    return next((p for name, p in PEAKS.items() if name in kind), None)


def _softmax(q, k, v, *, causal: bool):
    # cuDNN's flash attention where the platform has it, else XLA's own lowering.
    implementation = "cudnn" if jax.default_backend() == "gpu" else None
    return jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation=implementation)


def methods(causal: bool, interpret: bool) -> dict[str, Callable[..., jax.Array]]:
    """Every contender by name, as ``f(q, k, v) -> out`` (astro with positional keys off)."""
    astro = functools.partial(astro_attention, causal=causal, chunk_size=CHUNK)
    return {
        "astro pallas": functools.partial(astro, implementation="pallas", interpret=interpret),
        "astro xla": astro,
        "linear": functools.partial(linear_attention, causal=causal, chunk_size=CHUNK),
        "softmax": functools.partial(_softmax, causal=causal),
    }


def model_flops(name: str, causal: bool, T: int, heads: int, width: int) -> float:
    """Modelled forward flops (see the module docstring); multiply by 3 for fwd+bwd."""
    if name == "softmax":
        return heads * 4.0 * T * T * width / (2 if causal else 1)
    return heads * 4.0 * T * width * width


def temp_mb(compiled: Any) -> float | None:
    """Temp memory of a compiled function in MB, where the backend reports it."""
    analysis = compiled.memory_analysis()
    return None if analysis is None else analysis.temp_size_in_bytes / 1e6


def attention_rows(lengths, heads: int, width: int, dtype, interpret: bool, repeats: int,
                   peak: dict[str, float] | None) -> list[dict]:
    """Times every method at every T, causal and not, forward and forward+backward."""
    rows, slow = [], set()
    for causal in (True, False):
        for T in lengths:
            keys = jax.random.split(jax.random.key(T), 3)
            q, k, v = (jax.random.normal(kk, (B, T, heads, width), dtype) for kk in keys)
            for name, fn in methods(causal, interpret).items():
                for passes in ("fwd", "fwd+bwd"):
                    row = {"causal": causal, "T": T, "method": name, "passes": passes}
                    rows.append(row)
                    if (causal, name, passes) in slow:
                        row["ms"] = "skipped (budget)"
                        continue
                    if passes == "fwd":
                        run = jax.jit(fn)
                    else:
                        run = jax.jit(jax.grad(
                            lambda q, k, v, fn=fn: jnp.sum(fn(q, k, v).astype(jnp.float32)),
                            argnums=(0, 1, 2)))
                    try:  # one compile serves the memory figure and the timing
                        compiled = run.lower(q, k, v).compile()
                        seconds = best_time(compiled, q, k, v, repeats=repeats)
                    except Exception as error:  # report it, keep timing the rest
                        row["ms"] = f"failed: {type(error).__name__}: {str(error)[:120]}"
                        continue
                    row["ms"] = seconds * 1e3
                    if seconds > SLOW_CALL_S:
                        slow.add((causal, name, passes))
                    flops = model_flops(name, causal, T, heads, width) * (
                        3 if passes == "fwd+bwd" else 1)
                    if peak is not None:
                        kind = "bf16" if name == "softmax" else "fp32"
                        row["peak_fraction"] = flops / seconds / (peak[kind] * 1e12)
                    if passes == "fwd+bwd" and name.startswith("astro"):
                        row["temp_mb"] = temp_mb(compiled)
    return rows


def _use_kernel(model: nnx.Module, implementation: str, interpret: bool) -> None:
    # Every astromorphic attention module of the model calls the chosen implementation; the
    # compiled Pallas path runs with CHUNK-token chunks (TPU blocks need 128 lanes), whatever
    # chunk the preset gives its XLA chunk mode.
    def kernel(*args: Any, **kwargs: Any) -> Any:
        if implementation == "pallas" and not interpret:
            kwargs["chunk_size"] = CHUNK
        return astro_attention(*args, **kwargs, implementation=implementation,
                               interpret=interpret)

    for _, module in nnx.iter_modules(model):
        if isinstance(module, AstroAttention):
            module.kernel = kernel


def training_rows(presets, interpret: bool, repeats: int) -> list[dict]:
    """One AdamW step of each preset with each implementation (ms, best of ``repeats``)."""
    import optax

    from astroflax.models import create_model, model_kwargs
    from astroflax.train.steps import TrainState, make_train_step

    rows = []
    for preset in presets:
        lm = "wikitext2" in preset
        batch_size = (24 if lm else 32) if not interpret else 2
        for implementation in ("xla", "pallas"):
            model = create_model(preset, rngs=nnx.Rngs(params=0, dropout=1))
            _use_kernel(model, implementation, interpret and implementation == "pallas")
            graphdef, state = nnx.split(
                TrainState(model, nnx.Optimizer(model, optax.adamw(1e-4), wrt=nnx.Param)))
            rng = np.random.default_rng(0)
            kw = model_kwargs(preset)[1]
            if lm:
                tokens = rng.integers(0, kw["vocab_size"], (batch_size, kw["max_len"] + 1))
                batch = {"inputs": jnp.asarray(tokens[:, :-1]),
                         "targets": jnp.asarray(tokens[:, 1:])}
            else:
                size, channels = kw["image_size"], kw["in_channels"]
                batch = {"inputs": jnp.asarray(rng.normal(size=(batch_size, size, size, channels)),
                                               jnp.float32),
                         "label": jnp.asarray(rng.integers(0, 10, batch_size))}
            step = make_train_step(graphdef, task="lm" if lm else "classification")

            # The step donates its state: each call gets a fresh copy (a copy of the
            # parameters and moments, included in the time).
            def timed(state, step=step, batch=batch):
                return step(jax.tree.map(jnp.copy, state), batch)[1]["loss"]

            row = {"preset": preset, "batch": batch_size, "implementation": implementation}
            try:
                row["ms"] = best_time(timed, state, repeats=repeats) * 1e3
            except Exception as error:  # report it, keep timing the rest
                row["ms"] = f"failed: {type(error).__name__}: {str(error)[:120]}"
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints Markdown tables (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny interpret-mode smoke run (the only mode on a CPU)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="device peak TFLOP/s for the fraction column (default: datasheet)")
    args = parser.parse_args(argv)
    on_cpu = jax.default_backend() == "cpu"
    if on_cpu and not args.quick:
        print("benchmarks.accelerator times compiled Pallas kernels on a GPU or TPU, and the "
              "default JAX device here is a CPU. Run it on an accelerator, or pass --quick for a "
              "tiny smoke run of every code path in the Pallas interpreter (its times are "
              "meaningless).", file=sys.stderr)
        return 2
    interpret = on_cpu
    if args.quick:
        heads, width, lengths = QUICK["H"], QUICK["width"], QUICK["lengths"]
        presets, repeats, dtype = QUICK["presets"], 1, jnp.float32
    else:
        heads, width, lengths = H, M, LENGTHS
        presets, repeats, dtype = ("paper_wikitext2", "paper_cifar10"), 3, jnp.bfloat16
    peak = device_peak(args.peak_tflops)
    started = time.perf_counter()
    info = machine()
    print(json.dumps(info))
    if interpret:
        print("CPU: Pallas interpreter smoke run; times below are NOT kernel timings.")
    rows = attention_rows(lengths, heads, width, dtype, interpret, repeats, peak)
    print_table(f"Attention, B={B}, H={heads}, m=d={width}, {jnp.dtype(dtype).name} inputs",
                ["causal", "T", "method", "passes", "ms", "peak fraction", "temp MB"],
                [[r["causal"], r["T"], r["method"], r["passes"], r["ms"],
                  r.get("peak_fraction", "n/a"), r.get("temp_mb", "")] for r in rows])
    steps = training_rows(presets, interpret, repeats)
    print_table("One training step", ["preset", "batch", "implementation", "ms"],
                [[r["preset"], r["batch"], r["implementation"], r["ms"]] for r in steps])
    elapsed = time.perf_counter() - started
    print(f"\ntotal {elapsed:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": info, "interpret": interpret, "attention": rows,
                       "training": steps, "seconds": elapsed}, f, indent=1)
    failed = [r for r in rows + steps if isinstance(r.get("ms"), str)
              and r["ms"].startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
