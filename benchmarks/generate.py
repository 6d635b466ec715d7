"""Generation benchmark: tokens per second and peak memory of ``AstroLM.generate``.

Command: ``python -m benchmarks.generate [--quick] [--contexts 512,4096,16384] [--json PATH]``.

An ``AstroLM`` with 2 layers, ``D = 128``, 4 heads, vocabulary 256, greedy decoding, batch 1,
for the astro variant (a recurrent state of ``O(m·d)`` per head) and softmax (a KV cache of
``max_len`` positions). The context is the model's ``max_len``: the softmax cache has that many
slots and each decoded token attends over them; the astro state does not grow with it.
Decoding speed is ``(N2 - N1) / (t(N2) - t(N1))`` for two generation lengths from the same
16-token prompt (so the prompt's prefill and the call overhead cancel), each the best of
``--repeats`` calls after a compile. Peak memory is the growth of the resident set (peak RSS)
of a fresh subprocess over its size after building the model, one subprocess per cell.
Written against ``AstroLM.generate(prompt_tokens, max_new_tokens)``; any per-token cost of
recomputing the positional term over ``max_len`` shows up here as astro's growth with context.
``--quick``: one layer, ``D = 32``, 2 heads, contexts 64 and 128, N = 0 and 8 (a smoke run of
seconds with one compile per cell: N = 0 returns the prompt, so the prefill does not cancel
and its tokens per second are not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

VOCAB, PROMPT = 256, 16


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def model_size(quick: bool) -> dict:
    """The benchmark's model: 2 layers, D = 128, 4 heads; ``--quick``: 1 layer, D = 32, 2 heads."""
    return dict(layers=1, D=32, heads=2) if quick else dict(layers=2, D=128, heads=4)


def one_cell(variant: str, context: int, n1: int, n2: int, repeats: int, clock: str, *,
             layers: int, D: int, heads: int) -> dict:
    """Tokens per second and peak-RSS growth of one (variant, context): runs in a subprocess."""
    import jax
    from flax import nnx

    from astroflax.models import AstroLM
    from benchmarks._common import best_time

    model = AstroLM(VOCAB, max_len=context, features=D, num_layers=layers, num_heads=heads,
                    attention=variant, rngs=nnx.Rngs(0))
    prompt = jax.random.randint(jax.random.key(0), (1, PROMPT), 0, VOCAB)
    rss_model = _peak_rss_mb()
    t1 = best_time(lambda: model.generate(prompt, n1), repeats=repeats, clock=clock)
    t2 = best_time(lambda: model.generate(prompt, n2), repeats=repeats, clock=clock)
    return dict(variant=variant, context=context, seconds_n1=t1, seconds_n2=t2,
                tokens_per_s=(n2 - n1) / max(t2 - t1, 1e-9),
                peak_rss_growth_mb=_peak_rss_mb() - rss_model, rss_after_model_mb=rss_model)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="contexts 64, 128 (seconds)")
    parser.add_argument("--contexts", default=None, help="comma-separated max_len values")
    parser.add_argument("--variants", default="astro,softmax")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--json", default=None, help="save the results here")
    parser.add_argument("--cell", default=None, help=argparse.SUPPRESS)  # subprocess mode
    args = parser.parse_args(argv)
    # 448 decoded tokens between the two lengths: astro's tens of microseconds per token must
    # exceed the run-to-run spread of the per-call work (prefill, positional term); with 128
    # they did not (benchmarks/README.md). 16 + 480 tokens fit the smallest context, 512.
    n1, n2 = (0, 8) if args.quick else (32, 480)

    if args.cell is not None:
        variant, context = args.cell.split(":")
        print(json.dumps(one_cell(variant, int(context), n1, n2, args.repeats, args.clock,
                                  **model_size(args.quick))))
        return

    from benchmarks._common import machine, print_table, report, uptime

    contexts = [64, 128] if args.quick else [512, 4096, 16384]
    if args.contexts:
        contexts = [int(x) for x in args.contexts.split(",")]
    load_before = uptime()
    rows = []
    for context in contexts:
        row = dict(context=context)
        for variant in args.variants.split(","):
            cmd = [sys.executable, "-m", "benchmarks.generate", "--cell", f"{variant}:{context}",
                   "--repeats", str(args.repeats), "--clock", args.clock]
            if args.quick:
                cmd.append("--quick")
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                  env=dict(os.environ))
            row[variant] = cell = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"  context {context} {variant}: {cell['tokens_per_s']:.0f} tokens/s, "
                  f"peak RSS +{cell['peak_rss_growth_mb']:.0f} MB", flush=True)
        rows.append(row)
    variants = args.variants.split(",")
    results = {"machine": machine(), "uptime_before": load_before, "uptime_after": uptime(),
               "config": dict(**model_size(args.quick), vocab=VOCAB, prompt=PROMPT, n1=n1,
                              n2=n2, clock=args.clock), "rows": rows}
    first = rows[0]
    header = ["context"] + [f"{v} tokens/s" for v in variants] + [
        f"{v} peak RSS +MB" for v in variants]
    table = [[r["context"], *(r[v]["tokens_per_s"] for v in variants),
              *(r[v]["peak_rss_growth_mb"] for v in variants)] for r in rows]
    if "astro" in variants and "softmax" in variants:
        header += ["astro / softmax tokens/s", f"astro time per token / at {first['context']}"]
        for r, line in zip(rows, table, strict=True):
            line += [r["astro"]["tokens_per_s"] / r["softmax"]["tokens_per_s"],
                     first["astro"]["tokens_per_s"] / r["astro"]["tokens_per_s"]]
    size = model_size(args.quick)
    print_table(f"AstroLM.generate, {size['layers']} layers, D={size['D']}, {size['heads']} heads, "
                f"batch 1, greedy ({args.clock})",
                header, table)
    report(results, args.json)


if __name__ == "__main__":
    main()
