"""How strongly each attention variant is switched on at initialisation (docs/model.md §5).

    python -m benchmarks.init_scale            # the three paper presets, ~2-4 min on 2 CPU cores
    python -m benchmarks.init_scale --quick    # the tiny presets, seconds (the smoke test)

Three tables per preset, all at initialisation (seed 0, random inputs and labels, the preset's
own m_div, absolute positions and embedding scale):

1. The sigmoid of Eq. 11 in every astro layer: the argument ``S / m_div`` (median and max of
   its magnitude over the full-sequence state), the range of ``H``, how far σ is from its linear
   approximation ``0.5 + x/4``, and the value-dependent part of the astro output
   (``out(v) - out(0)``) relative to plain linear attention on the same q, k, v.
2. Per variant, the first attention sub-layer's output scale ``rms(W_O·y) / rms(x)``.
3. Per variant, the gradient of a cross-entropy loss on random labels with respect to the first
   layer's W_Q, W_K and (astrocytic term) M: rms, and the fraction of entries below Adam's
   ``eps = 1e-8`` — weights whose gradient sits below eps hardly move under Adam.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax import Array

from astroflax.kernels import astro_attention
from astroflax.models import AstroLM, AstroTextClassifier, AstroViT, create_model, model_kwargs
from astroflax.nn.astro_attention import AstroAttention
from benchmarks._common import machine, print_table

PAPER_PRESETS = ("paper_cifar10", "paper_imdb", "paper_wikitext2")
QUICK_PRESETS = ("tiny_cifar10", "tiny_imdb", "tiny_wikitext2")
VARIANTS = ("astro", "astro_no_pe", "astro_no_nonlin", "kozachkov_iso", "kozachkov_rf",
            "linear", "softmax")
ADAM_EPS = 1e-8


def rms(a: Array) -> float:
    """Root mean square of all entries."""
    return float(jnp.sqrt(jnp.mean(jnp.square(a.astype(jnp.float32)))))


def random_batch(preset: str, key: Array, batch_size: int) -> tuple[Array, Array | None, Array]:
    """``(inputs, mask, labels)`` of the preset's task, drawn at random.

    ViT: images ``[B, S, S, C]`` and labels ``[B]``; text classifier: tokens ``[B, T_max]`` (no
    padding) and labels ``[B]``; LM: tokens ``[B, T_max]`` and the next tokens ``[B, T_max - 1]``.
    """
    cls, kw = model_kwargs(preset)
    k_in, k_lab = jax.random.split(key)
    if cls is AstroViT:
        S = kw["image_size"]
        images = jax.random.normal(k_in, (batch_size, S, S, kw["in_channels"]))
        return images, None, jax.random.randint(k_lab, (batch_size,), 0, kw["num_classes"])
    tokens = jax.random.randint(k_in, (batch_size, kw["max_len"]), 1, kw["vocab_size"])
    if cls is AstroLM:
        return tokens, None, tokens[:, 1:]
    return tokens, None, jax.random.randint(k_lab, (batch_size,), 0, kw["num_classes"])


def embedded(model: nnx.Module, inputs: Array) -> Array:
    """The first block's input ``[B, T, D]``: patches or tokens, scaled, plus positions."""
    x = model.patches(inputs) if isinstance(model, AstroViT) else model.embed(inputs)
    return model.trunk.embed_positions(x)


def loss_fn(model: nnx.Module, inputs: Array, mask: Array | None, labels: Array) -> Array:
    """Mean cross-entropy of the model's task (next token for the LM)."""
    if isinstance(model, AstroTextClassifier):
        logits, _ = model(inputs, mask=mask)
    else:
        logits, _ = model(inputs)
    if isinstance(model, AstroLM):
        logits = logits[:, :-1]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def block_inputs(model: nnx.Module, x: Array, mask: Array | None
                 ) -> Iterator[tuple[int, Any, Array]]:
    """``(layer index, block, the block's input)`` for every block."""
    for i, block in enumerate(model.trunk.stack.blocks):
        yield i, block, x
        x = block(x, mask=mask)


def sigmoid_rows(model: nnx.Module, x0: Array, mask: Array | None) -> list[list[Any]]:
    """Table 1: one row per astro layer of ``model`` (an ``astro`` model)."""
    rows = []
    for i, block, x in block_inputs(model, x0, mask):
        attn = block.attention
        assert isinstance(attn, AstroAttention)
        q, k, v = attn._qkv(x)
        T = x.shape[1]
        pos = attn.positional_keys()
        rates = attn._features(k)
        if pos is not None:
            rates = rates + attn._features(pos[:T])[None]
        arg = jnp.einsum("bthm,bthd->bhmd", rates, v.astype(rates.dtype)) / attn.m_div
        H = jax.nn.sigmoid(arg)
        lin_gap = float(jnp.max(jnp.abs(H - (0.5 + arg / 4))))
        out = attn._astro(q, k, v, mask=mask, pos_keys=pos, mode="auto")
        out0 = attn._astro(q, k, jnp.zeros_like(v), mask=mask, pos_keys=pos, mode="auto")
        linear = astro_attention(q, k, v, causal=attn.causal, alpha=1.0, sigmoid=False,
                                 m_div=1.0, mask=mask)
        rows.append([i, f"{float(jnp.median(jnp.abs(arg))):.1e}",
                     f"{float(jnp.max(jnp.abs(arg))):.1e}",
                     f"[{float(H.min()):.4f}, {float(H.max()):.4f}]", f"{lin_gap:.1e}",
                     f"{rms(out - out0) / rms(linear):.1e}"])
    return rows


def variant_row(preset: str, variant: str, key: Array, batch_size: int) -> list[Any]:
    """Tables 2 and 3 for one variant: output scale and first-layer gradients."""
    model = create_model(preset, attention=variant, rngs=nnx.Rngs(0))
    model.eval()
    inputs, mask, labels = random_batch(preset, key, batch_size)
    x = embedded(model, inputs)
    attn = model.trunk.stack.blocks[0].attention
    out_scale = rms(attn(x, mask=mask)) / rms(x)
    grads = nnx.grad(loss_fn)(model, inputs, mask, labels)
    g_attn = grads.trunk.stack.blocks[0].attention

    def stats(name: str) -> str:
        node = getattr(g_attn, name, None)
        if node is None:
            return "—"
        g = node.kernel[...] if hasattr(node, "kernel") else node[...]
        below = float(jnp.mean(jnp.abs(g) < ADAM_EPS))
        return f"{rms(g):.1e} ({below:.0%})"

    return [variant, f"{rms(x):.3f}", f"{out_scale:.1e}", stats("query"), stats("key"),
            stats("pos_M")]


def run(presets: Sequence[str], batch_size: int) -> dict[str, Any]:
    """Prints the three tables for every preset; returns them as a dict."""
    results: dict[str, Any] = {"machine": machine(), "presets": {}}
    key = jax.random.key(1)
    for preset in presets:
        model = create_model(preset, attention="astro", rngs=nnx.Rngs(0))
        model.eval()
        inputs, mask, _ = random_batch(preset, key, batch_size)
        m_div = model.trunk.stack.blocks[0].attention.m_div
        sig = sigmoid_rows(model, embedded(model, inputs), mask)
        print_table(f"{preset} (astro, m_div = {m_div:g}): the sigmoid of Eq. 11 at init",
                    ["layer", "|S/m_div| median", "|S/m_div| max", "H range",
                     "max |σ − (0.5 + x/4)|", "value-dependent astro / linear (rms)"], sig)
        rows = [variant_row(preset, v, key, batch_size) for v in VARIANTS]
        print_table(f"{preset}: first attention layer at init (grad rms; share < Adam eps)",
                    ["variant", "rms(x)", "rms(W_O·y)/rms(x)", "∂L/∂W_Q", "∂L/∂W_K",
                     "∂L/∂M (positional)"], rows)
        results["presets"][preset] = {"m_div": m_div, "sigmoid": sig, "variants": rows}
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``--quick`` (tiny presets), ``--json PATH``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny presets (seconds)")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the tables here")
    args = parser.parse_args(argv)
    results = run(QUICK_PRESETS if args.quick else PAPER_PRESETS, args.batch_size)
    print(json.dumps(results["machine"]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
