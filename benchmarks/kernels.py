"""Kernel benchmarks: speed and memory ratios, each measured in one run on this machine.

Command: ``python -m benchmarks.kernels [--quick] [--clock wall|cpu] [--json PATH]``
(B=1, H=8, m=d=64, float32).

1. Non-causal astro forward (sigmoid, alpha, pos_keys on) against the two bare matmuls it
   needs, ``φ(K)ᵀV`` and ``φ(Q)H``, on head-major arrays (no transposes: the strictest
   baseline), for both kernel layouts.
2. Softmax / astro time over T, and the crossover T from which astro is faster.
3. Causal chunk mode with the sigmoid, forward+backward: compiled memory (temp + arguments +
   outputs - aliased, XLA:CPU with YNN fusions off so their scratch is counted; run in a
   subprocess because the flag must precede JAX's start) at T and 2T, against the same
   computation materialising all T prefix states (``mode="parallel"`` on the prefix-state
   path that GPU and TPU backends take; this CPU's token scan never materialises them), and
   chunk mode on that path too.
4. ``astro_positional`` time at 2L against L.
5. Causal fwd+bwd (sigmoid, alpha, pos_keys on; ``chunk`` mode at several chunk sizes) against
   causal linear attention fwd+bwd, at T and T/4, with an estimated floor of the
   materialised prefix-state formulation on this CPU (see :func:`floor_estimate`: two sigmoid
   passes and eight plain passes over the ``T·m·d`` prefix-state elements per head, measured
   here), which the CPU's token scan undercuts by keeping each trace in cache.
6. The whole non-causal attention layer forward, ``x [B, T, D] -> [B, T, D]`` (``D = H·m``):
   the q/k/v projections, astro attention and the output projection, with the projections
   writing ``[B, T, H, m]`` (BTHD kernel layout) or straight into head-major ``[B, H, T, m]``
   (BHTD); linear attention's layer (BTHD) as the reference (see :func:`layer_rows`).

``--quick`` shrinks T to 4096 and the positional length to 8192 (the README's first-run job,
a few minutes on 2 cores); ``--smoke`` runs every section at toy sizes (for the test suite).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from unittest import mock

import jax
import jax.numpy as jnp

from astroflax.kernels import (
    astro_attention,
    astro_positional,
    linear_attention,
    softmax_attention,
)
from astroflax.kernels.astro import api as astro_api
from benchmarks._common import best_time, machine, print_table, report, uptime

B, H, M, D = 1, 8, 64, 64
MEMORY_FLAG = "--xla_cpu_experimental_ynn_fusion_type="
SECTIONS = ("forward", "softmax", "memory", "positional", "causal", "layer")


def _inputs(T: int, layout: str):
    keys = jax.random.split(jax.random.key(0), 4)
    shape = (B, T, H, M) if layout == "BTHD" else (B, H, T, M)
    q, k, v = (jax.random.normal(kk, shape, jnp.float32) for kk in keys[:3])
    pos_shape = (T, H, M) if layout == "BTHD" else (H, T, M)
    return q, k, v, 0.5 * jax.random.normal(keys[3], pos_shape, jnp.float32)


def forward_vs_matmuls(T: int, repeats: int, clock: str = "wall") -> list[dict]:
    """Astro forward in each layout against the two matmuls it needs.

    Two baselines: the matmuls on head-major arrays (no layout copies: the strictest) and on
    arrays in the astro call's own layout (XLA:CPU adds the same transposes there).
    """
    matmuls = {"BHTD": "bhtm,bhtd->bhmd", "BTHD": "bthm,bthd->bhmd"}
    reads = {"BHTD": "bhtm,bhmd->bhtd", "BTHD": "bthm,bhmd->bthd"}
    baseline = {}
    for layout in ("BHTD", "BTHD"):
        q, k, v, _ = _inputs(T, layout)
        two_matmuls = jax.jit(lambda q, k, v, layout=layout: jnp.einsum(
            reads[layout], q, jnp.einsum(matmuls[layout], k, v)))
        baseline[layout] = best_time(two_matmuls, q, k, v, repeats=repeats, clock=clock)
    rows = []
    for layout in ("BHTD", "BTHD"):
        q, k, v, pos = _inputs(T, layout)
        fn = jax.jit(lambda q, k, v, pos, layout=layout: astro_attention(
            q, k, v, pos_keys=pos, alpha=0.25, sigmoid=True, layout=layout))
        t = best_time(fn, q, k, v, pos, repeats=repeats, clock=clock)
        rows.append(dict(layout=layout, T=T, astro_ms=1e3 * t,
                         head_major_matmuls_ms=1e3 * baseline["BHTD"],
                         ratio=t / baseline["BHTD"],
                         same_layout_matmuls_ms=1e3 * baseline[layout],
                         ratio_same_layout=t / baseline[layout]))
    return rows


def softmax_vs_astro(lengths: list[int], repeats: int, clock: str = "wall") -> list[dict]:
    rows = []
    astro = jax.jit(lambda q, k, v, pos: astro_attention(q, k, v, pos_keys=pos))
    soft = jax.jit(lambda q, k, v: softmax_attention(q, k, v))
    for T in lengths:
        q, k, v, pos = _inputs(T, "BTHD")
        reps = repeats if T <= 4096 else max(1, repeats // 3)
        t_astro = best_time(astro, q, k, v, pos, repeats=reps, clock=clock)
        t_soft = best_time(soft, q, k, v, repeats=reps, clock=clock)
        rows.append(dict(T=T, softmax_ms=1e3 * t_soft, astro_ms=1e3 * t_astro,
                         softmax_over_astro=t_soft / t_astro))
    return rows


def crossover(rows: list[dict]) -> int | None:
    """The smallest measured T from which astro stays faster than softmax."""
    for i, row in enumerate(rows):
        if all(r["softmax_over_astro"] > 1 for r in rows[i:]):
            return row["T"]
    return None


def compiled_bytes(T: int, mode: str, chunk_size: int = 64, token_scan: bool = True) -> int:
    """Temp + arguments + outputs - aliased bytes of causal sigmoid fwd+bwd (grads of q, k, v).

    ``token_scan=False`` compiles the materialised prefix-state path of GPU and TPU backends
    (``astroflax.kernels.astro.api.scans_tokens_on_this_backend`` patched) instead of this
    CPU's token scan.
    """
    spec = jax.ShapeDtypeStruct((B, H, T, M), jnp.float32)
    pos = jax.ShapeDtypeStruct((H, T, M), jnp.float32)

    def loss(q, k, v, pos):
        out = astro_attention(q, k, v, causal=True, pos_keys=pos, mode=mode,
                              chunk_size=chunk_size, layout="BHTD")
        return jnp.sum(out)

    with mock.patch.object(astro_api, "scans_tokens_on_this_backend", lambda: token_scan):
        stats = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(spec, spec, spec,
                                                                  pos).compile()
    m = stats.memory_analysis()
    return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
            - m.alias_size_in_bytes)


def memory_rows(T: int) -> list[dict]:
    chunk_T, chunk_2T = compiled_bytes(T, "chunk"), compiled_bytes(2 * T, "chunk")
    all_states = compiled_bytes(T, "parallel", token_scan=False)
    analytic = B * H * T * M * D * 4
    return [dict(T=T, chunk_bytes=chunk_T, chunk_2T_bytes=chunk_2T,
                 growth_2T_over_T=chunk_2T / chunk_T,
                 chunk_prefix_state_path_bytes=compiled_bytes(T, "chunk", token_scan=False),
                 all_prefix_states_bytes=all_states,
                 one_copy_of_all_states_bytes=analytic,
                 all_states_over_chunk=all_states / chunk_T)]


def positional_rows(L: int, repeats: int, clock: str = "wall") -> list[dict]:
    keys = jax.random.split(jax.random.key(1), 2)
    decay = jnp.full((H,), 0.1, jnp.float32)

    def make(length):
        Ms = 0.1 * jax.random.normal(keys[0], (H, M, length), jnp.float32)
        fn = jax.jit(jax.vmap(lambda m, s: astro_positional(m, decay=s, length=length)))
        return best_time(fn, Ms, decay, repeats=repeats, clock=clock)

    t1, t2 = make(L), make(2 * L)
    return [dict(L=L, ms_L=1e3 * t1, ms_2L=1e3 * t2, ratio_2L_over_L=t2 / t1)]


def causal_train_rows(lengths: list[int], chunk_sizes: list[int], repeats: int,
                      clock: str) -> list[dict]:
    """Causal fwd+bwd of astro (chunk mode, each chunk size) and of linear attention."""
    def grad_of(fn):
        return jax.jit(jax.grad(lambda *a: jnp.sum(fn(*a)), argnums=(0, 1, 2)))

    # Linear attention has no layout argument: its inputs are BTHD (transposed outside the
    # timed function, so the copies do not count against it).
    linear = grad_of(lambda q, k, v: linear_attention(q, k, v, causal=True, chunk_size=64))
    rows = []
    for T in lengths:
        q, k, v, pos = _inputs(T, "BHTD")
        t_linear = best_time(linear, *(jnp.swapaxes(x, 1, 2) for x in (q, k, v)),
                             repeats=repeats, clock=clock)
        row = dict(T=T, linear_ms=1e3 * t_linear, astro_ms={}, ratio={})
        for C in chunk_sizes:
            astro = grad_of(lambda q, k, v, pos, C=C: astro_attention(
                q, k, v, causal=True, pos_keys=pos, mode="chunk", chunk_size=C, layout="BHTD"))
            t = best_time(astro, q, k, v, pos, repeats=repeats, clock=clock)
            row["astro_ms"][C], row["ratio"][C] = 1e3 * t, t / t_linear
        floor = floor_estimate(T, repeats, clock)
        row["floor_ms"], row["floor_ratio"] = 1e3 * floor, floor / t_linear
        rows.append(row)
    return rows


def floor_estimate(T: int, repeats: int, clock: str, chunk: int = 32) -> float:
    """Seconds of 2 sigmoid passes + 8 plain passes over the ``B·H·T·m·d`` prefix elements.

    The floor of the formulation that materialises prefix states (the GPU/TPU path, and this
    CPU's before the token scan); the token scan does fewer passes and beats it.

    One pass = what each step of the kernel must at least do per chunk and head: form the
    ``[chunk, m, d]`` block from ``[chunk, m]`` and ``[chunk, d]`` rows (the outer product) and
    contract it with a ``[chunk, m]`` row, with (sigmoid pass) or without (plain pass) a
    sigmoid in between. The forward needs a sigmoid pass, the backward its derivative (a
    second); the running sums, the read and their derivatives are about eight plain passes.
    Blocks are made on the fly inside a scan over chunks, as in the kernel, so the estimate
    sees the kernel's cache behaviour rather than main-memory bandwidth.
    """
    keys = jax.random.split(jax.random.key(2), 3)
    rows = [jax.random.normal(kk, (B * H, T // chunk, chunk, M), jnp.float32) for kk in keys]

    def streamed(op):
        def block(x, v, q):
            return jnp.einsum("tm,tmd->td", q, op(x[:, :, None] * v[:, None, :]))

        def one_head(x, v, q):
            return jax.lax.scan(lambda c, xs: (c, block(*xs)), 0.0, (x, v, q))[1]
        return jax.jit(jax.vmap(one_head))

    sigmoid_pass = streamed(jax.nn.sigmoid)
    plain_pass = streamed(lambda b: b)
    return (2 * best_time(sigmoid_pass, *rows, repeats=repeats, clock=clock)
            + 8 * best_time(plain_pass, *rows, repeats=repeats, clock=clock))


def layer_rows(T: int, repeats: int, clock: str = "wall") -> list[dict]:
    """Forward of a whole non-causal attention layer in each projection layout, and linear's.

    ``x [B, T, D]`` with ``D = H·m``; ``W_Q, W_K, W_V [D, H, m]`` (as ``AstroAttention`` stores
    them) and ``W_O [H, d, D]``; the positional keys ``[T, H, m]`` (or ``[H, T, m]``) are an
    input. The BTHD layer projects to ``[B, T, H, m]`` and the kernel transposes inside; the
    BHTD layer's projection einsums write ``[B, H, T, m]`` and the output projection reads
    ``[B, H, T, d]``, so any layout change happens inside the projections' dots.
    """
    Dm = H * M
    keys = jax.random.split(jax.random.key(3), 6)
    x = jax.random.normal(keys[0], (B, T, Dm), jnp.float32)
    wq, wk, wv = (jax.random.normal(kk, (Dm, H, M), jnp.float32) / Dm**0.5 for kk in keys[1:4])
    wo = jax.random.normal(keys[4], (H, D, Dm), jnp.float32) / Dm**0.5
    pos = 0.5 * jax.random.normal(keys[5], (T, H, M), jnp.float32)
    pos_hm = jnp.swapaxes(pos, 0, 1)

    def bthd(x, pos):
        q, k, v = (jnp.einsum("btD,Dhm->bthm", x, w) for w in (wq, wk, wv))
        return jnp.einsum("bthd,hdD->btD", astro_attention(q, k, v, pos_keys=pos), wo)

    def bhtd(x, pos):
        q, k, v = (jnp.einsum("btD,Dhm->bhtm", x, w) for w in (wq, wk, wv))
        y = astro_attention(q, k, v, pos_keys=pos, layout="BHTD")
        return jnp.einsum("bhtd,hdD->btD", y, wo)

    def linear(x, pos):
        del pos
        q, k, v = (jnp.einsum("btD,Dhm->bthm", x, w) for w in (wq, wk, wv))
        return jnp.einsum("bthd,hdD->btD", linear_attention(q, k, v), wo)

    t_linear = best_time(jax.jit(linear), x, pos, repeats=repeats, clock=clock)
    rows = []
    for layout, fn, p in (("BTHD", bthd, pos), ("BHTD", bhtd, pos_hm)):
        t = best_time(jax.jit(fn), x, p, repeats=repeats, clock=clock)
        rows.append(dict(layout=layout, T=T, astro_layer_ms=1e3 * t,
                         linear_layer_ms=1e3 * t_linear, ratio=t / t_linear))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="T=4096 (positional L=8192) instead of 16384")
    parser.add_argument("--json", default=None, help="save the results here")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time, or process CPU time (steadier on a loaded machine)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--memory-only", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sections = args.sections.split(",")
    for name in sections:
        if name not in SECTIONS:
            parser.error(f"--sections: {name!r} is not one of {SECTIONS}")

    if args.memory_only is not None:  # the subprocess of section 3
        print(json.dumps(memory_rows(args.memory_only)))
        return

    T = 256 if args.smoke else 4096 if args.quick else 16384
    if args.smoke:
        args.repeats = 1
    load_before = uptime()
    results = {"machine": machine(), "uptime_before": load_before,
               "config": dict(B=B, H=H, m=M, d=D, dtype="float32", clock=args.clock)}
    if "forward" in sections:
        results["forward_vs_matmuls"] = forward_vs_matmuls(T, args.repeats, args.clock)
        print_table(f"Non-causal astro forward / two bare matmuls (T={T}; target <= 2.0)",
                    ["layout", "astro ms", "2 matmuls, head-major ms", "ratio",
                     "2 matmuls, same layout ms", "ratio (same layout)"],
                    [[r["layout"], r["astro_ms"], r["head_major_matmuls_ms"], r["ratio"],
                      r["same_layout_matmuls_ms"], r["ratio_same_layout"]]
                     for r in results["forward_vs_matmuls"]])

    if "softmax" in sections:
        lengths = [2**i for i in range(4, 15) if 2**i <= T]
        if args.smoke:
            lengths = [16, 64]
        results["softmax_vs_astro"] = rows = softmax_vs_astro(lengths, args.repeats, args.clock)
        results["crossover_T"] = crossover(rows)
        print_table(f"Softmax / astro (BTHD; target >= 50 at T={T}); crossover T = "
                    f"{results['crossover_T']}", ["T", "softmax ms", "astro ms", "softmax/astro"],
                    [[r["T"], r["softmax_ms"], r["astro_ms"], r["softmax_over_astro"]]
                     for r in rows])

    if "memory" in sections:
        env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + MEMORY_FLAG))
        proc = subprocess.run([sys.executable, "-m", "benchmarks.kernels", "--memory-only", str(T)],
                              env=env, capture_output=True, text=True, check=True)
        results["causal_chunk_memory"] = mem = json.loads(proc.stdout.strip().splitlines()[-1])
        print_table("Causal chunk fwd+bwd compiled memory (targets: 2T/T <= 2.2; all-states/chunk "
                    ">= 10)", ["T", "chunk MB", "chunk at 2T MB", "2T/T",
                               "chunk, prefix-state path MB", "all prefix states MB",
                               "one copy of all states MB", "all-states/chunk"],
                    [[r["T"], r["chunk_bytes"] / 2**20, r["chunk_2T_bytes"] / 2**20,
                      r["growth_2T_over_T"], r["chunk_prefix_state_path_bytes"] / 2**20,
                      r["all_prefix_states_bytes"] / 2**20,
                      r["one_copy_of_all_states_bytes"] / 2**20, r["all_states_over_chunk"]]
                     for r in mem])

    if "positional" in sections:
        L = 256 if args.smoke else 8192 if args.quick else 16384
        results["positional"] = pos_rows = positional_rows(L, args.repeats, args.clock)
        print_table("astro_positional, 8 heads, m=64 (target: 2L/L <= 2.3)",
                    ["L", "ms at L", "ms at 2L", "2L/L"],
                    [[r["L"], r["ms_L"], r["ms_2L"], r["ratio_2L_over_L"]] for r in pos_rows])

    if "causal" in sections:
        # The smoke run compiles one length and two chunk sizes (every code path, fewer compiles).
        causal_lengths = [T // 4, T] if not args.smoke else [64]
        chunk_sizes = [8, 16, 32, 64] if not args.smoke else [16, 32]
        results["causal_fwd_bwd"] = crows = causal_train_rows(causal_lengths, chunk_sizes,
                                                              max(1, args.repeats // 2), args.clock)
        print_table(f"Causal fwd+bwd, astro (sigmoid, alpha, pos_keys; chunk mode) / causal linear "
                    f"attention ({args.clock} time; target <= 6 at T = 4096 and 16384)",
                    ["T", "linear ms", *(f"astro C={C} ms" for C in chunk_sizes),
                     *(f"C={C} / linear" for C in chunk_sizes), "floor estimate ms",
                     "floor / linear"],
                    [[r["T"], r["linear_ms"], *(r["astro_ms"][C] for C in chunk_sizes),
                      *(r["ratio"][C] for C in chunk_sizes), r["floor_ms"], r["floor_ratio"]]
                     for r in crows])

    if "layer" in sections:
        results["layer_forward"] = lrows = layer_rows(T, args.repeats, args.clock)
        print_table(f"Non-causal attention layer forward, x [B, T, {H * M}] -> [B, T, {H * M}], "
                    f"T={T}: astro by projection layout / linear attention's layer (BTHD)",
                    ["projection layout", "astro layer ms", "linear layer ms", "astro / linear"],
                    [[r["layout"], r["astro_layer_ms"], r["linear_layer_ms"], r["ratio"]]
                     for r in lrows])

    results["uptime_after"] = uptime()
    report(results, args.json)


if __name__ == "__main__":
    main()
