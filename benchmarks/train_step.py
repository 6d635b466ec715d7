"""Training-step benchmark: a small causal decoder, fwd + bwd + AdamW, every attention variant.

Command: ``python -m benchmarks.train_step [--quick] [--lengths 256,1024,4096] [--variants ...]
[--chunk-size 64] [--clock wall|cpu] [--json PATH]``.

An ``AstroLM`` with 2 layers, ``D = 256``, 4 heads (``m = d = 64``), vocabulary 256, post-norm,
no dropout, trained on random tokens with AdamW; the batch holds a fixed number of tokens
(8192) whatever ``T`` is, so every row of the table does the same feed-forward work and only
the attention's dependence on ``T`` differs. Each cell is the best of ``--repeats`` steps
after a compile-and-warm-up step; the ratios in the last columns are within one run.
``--quick``: 1 layer, ``D = 32``, 2 heads, 512 tokens, ``T = 64, 128`` (a smoke run of seconds).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from astroflax.models import AstroLM
from astroflax.nn import VARIANTS, attention_spec
from benchmarks._common import best_time, machine, print_table, report, uptime

VOCAB = 256


def make_step(variant: str, T: int, *, features: int, heads: int, chunk_size: int,
              layers: int = 2):
    """A jitted AdamW step of a fresh ``AstroLM`` and its (model, optimizer) state."""
    model = AstroLM(VOCAB, max_len=T, features=features, num_layers=layers, num_heads=heads,
                    attention=attention_spec(variant, chunk_size=chunk_size),
                    rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, tokens):
        def loss_fn(model):
            logits, _ = model(tokens[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(
                logits.astype(jnp.float32), tokens[:, 1:]).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        # optax's bias correction raises an int32 count to a float power, which strict dtype
        # promotion (the test suite's setting) refuses; standard promotion is optax's own.
        with jax.numpy_dtype_promotion("standard"):
            opt.update(model, grads)
        return loss

    return step, model, opt


def measure(variants: list[str], lengths: list[int], *, tokens: int, features: int,
            heads: int, chunk_size: int, repeats: int, clock: str, layers: int = 2) -> list[dict]:
    """Seconds per step of each variant at each ``T`` (``batch = tokens // T``): table rows."""
    rows = []
    for T in lengths:
        batch = max(1, tokens // T)
        # T + 1 tokens per row: the model reads T and predicts the next T.
        data = jax.random.randint(jax.random.key(T), (batch, T + 1), 0, VOCAB)
        row = dict(T=T, batch=batch)
        for variant in variants:
            step, model, opt = make_step(variant, T + 1, features=features, heads=heads,
                                         chunk_size=chunk_size, layers=layers)
            row[variant] = best_time(step, model, opt, data, repeats=repeats, clock=clock)
            print(f"  T={T} {variant}: {row[variant]:.3f} s ({clock})", flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model and lengths (seconds)")
    parser.add_argument("--lengths", default=None, help="comma-separated T (default 256,1024,4096)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from {sorted(VARIANTS)}")
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time, or process CPU time (steadier on a loaded machine)")
    parser.add_argument("--json", default=None, help="save the results here")
    args = parser.parse_args(argv)

    if args.quick:
        lengths, tokens, features, heads, layers, repeats = [64, 128], 512, 32, 2, 1, 1
    else:
        lengths, tokens, features, heads, layers, repeats = ([256, 1024, 4096], 8192, 256, 4, 2,
                                                             args.repeats)
    if args.lengths:
        lengths = [int(x) for x in args.lengths.split(",")]
    variants = args.variants.split(",")
    for name in variants:
        if name not in VARIANTS:
            parser.error(f"--variants: {name!r} is not one of {sorted(VARIANTS)}")
    load_before = uptime()
    rows = measure(variants, lengths, tokens=tokens, features=features, heads=heads,
                   chunk_size=args.chunk_size, repeats=repeats, clock=args.clock, layers=layers)
    ratios = [(a, b) for a, b in (("astro", "softmax"), ("astro", "linear"))
              if a in variants and b in variants]
    for r in rows:
        r["ratios"] = {f"{a} / {b}": r[a] / r[b] for a, b in ratios}
    results = {"machine": machine(), "uptime_before": load_before, "uptime_after": uptime(),
               "config": dict(layers=layers, D=features, heads=heads, tokens_per_batch=tokens,
                              vocab=VOCAB, chunk_size=args.chunk_size, clock=args.clock),
               "rows": rows}
    print_table(f"Train step (fwd + bwd + AdamW), {layers} layers, D={features}, {heads} heads, "
                f"{tokens} tokens per batch, chunk_size {args.chunk_size}, seconds ({args.clock})",
                ["T", "batch", *variants, *(f"{a} / {b}" for a, b in ratios)],
                [[r["T"], r["batch"], *(r[v] for v in variants),
                  *r["ratios"].values()] for r in rows])
    report(results, args.json)


if __name__ == "__main__":
    main()
