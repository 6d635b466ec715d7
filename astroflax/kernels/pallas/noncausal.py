"""Fused non-causal Hebbian write and read (Eq. 10–12 and 15–17) as Pallas kernels.

Non-causal astromorphic attention of one head is one write, ``S = S0 + Σ_t x_t v_tᵀ``
(``x = φ(k) + φ(A)``), and one read, ``out = (φ(q) @ σ(S / m_div)) · inv_den``. Both are
matmuls; the kernels fuse the sigmoid of Eq. 11 into the read and the normaliser (Eq. 16–17,
``inv_den = mask / (φ(q)·z^α + eps)``, computed in XLA from the ``O(T·m)`` sums) into its output,
so the ``[T, d]`` numerator never goes to memory. Backward (``jax.custom_vjp``): one more
reduction kernel for ``∂L/∂H = φ(q)ᵀ (dout · inv_den)`` and one row-block kernel for the four
per-token gradients. Every matmul is a plain ``[a, b] @ [b, c]`` (transposed operands are passed
in), the form every Pallas backend lowers.

The two reductions over tokens differ by backend: ``backend="tpu"`` accumulates token blocks
along a sequential grid axis into a resident output block; ``backend="gpu"`` (Triton) writes one
partial product per token block and XLA adds them, since GPU grid programs run concurrently and
cannot share an accumulator. The row-block kernels are the same for both.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import Array
from jax.experimental import pallas as pl

from astroflax.kernels.pallas.causal import (
    HIGHEST,
    KernelConfig,
    _check_operands,
    _checked_forward,
    _compiler_params,
    _pad_tokens,
    hebbian,
    hebbian_slope,
)


def _dot(a: Array, b: Array) -> Array:
    # float32 in, float32 sums out, and no TF32 / bf16 passes on the way.
    return jnp.dot(a, b, preferred_element_type=jnp.float32, precision=HIGHEST)


def _gram(aT: Array, b: Array, scale: Array, init: Array, config: KernelConfig) -> Array:
    """``init + aT @ (b · scale)`` per head.

    Shapes: ``aT [BH, p, T]``, ``b [BH, T, r]``, ``scale [BH, T, 1]``, ``init [BH, p, r]``.
    The write (``S = S0 + xᵀ v``) and the backward's ``∂L/∂H = φ(q)ᵀ (dout · inv_den)``.
    """
    BH, p, T = aT.shape
    r, C = b.shape[-1], config.chunk_size
    nt = T // C

    if config.backend == "tpu":
        def kernel(a_ref, b_ref, s_ref, init_ref, out_ref):
            @pl.when(pl.program_id(1) == 0)
            def _():
                out_ref[...] = init_ref[...]

            out_ref[...] += _dot(a_ref[...], b_ref[...] * s_ref[...])

        return pl.pallas_call(
            kernel, grid=(BH, nt),
            in_specs=[pl.BlockSpec((None, p, C), lambda h, t: (h, 0, t)),
                      pl.BlockSpec((None, C, r), lambda h, t: (h, t, 0)),
                      pl.BlockSpec((None, C, 1), lambda h, t: (h, t, 0)),
                      pl.BlockSpec((None, p, r), lambda h, t: (h, 0, 0))],
            out_specs=pl.BlockSpec((None, p, r), lambda h, t: (h, 0, 0)),
            out_shape=jax.ShapeDtypeStruct((BH, p, r), jnp.float32),
            compiler_params=_compiler_params(config, ("parallel", "arbitrary")),
            interpret=config.interpret, name="astro_gram_tpu")(aT, b, scale, init)

    # GPU: one program per (head, token block), each writing its block's partial product;
    # the partials add up in XLA (grid programs run concurrently: no shared accumulator).
    def kernel(a_ref, b_ref, s_ref, out_ref):
        out_ref[...] = _dot(a_ref[...], b_ref[...] * s_ref[...])

    partials = pl.pallas_call(
        kernel, grid=(BH, nt),
        in_specs=[pl.BlockSpec((None, p, C), lambda h, t: (h, 0, t)),
                  pl.BlockSpec((None, C, r), lambda h, t: (h, t, 0)),
                  pl.BlockSpec((None, C, 1), lambda h, t: (h, t, 0))],
        out_specs=pl.BlockSpec((None, None, p, r), lambda h, t: (h, t, 0, 0)),
        out_shape=jax.ShapeDtypeStruct((BH, nt, p, r), jnp.float32),
        compiler_params=_compiler_params(config, ()),
        interpret=config.interpret, name="astro_gram_gpu")(aT, b, scale)
    return init + partials.sum(axis=1)


def _row_blocks(kernel, inputs, row_widths, shared, out_widths, config: KernelConfig, name: str):
    """Runs ``kernel`` over token blocks ``[C, width]`` of ``inputs`` (grid ``(BH, T / C)``).

    ``shared`` are per-head ``[BH, a, b]`` arrays every block sees whole; outputs are token rows
    of ``out_widths``. Independent blocks: the same driver serves both backends.
    """
    BH, T, _ = inputs[0].shape
    C = config.chunk_size

    def rows(width):
        return pl.BlockSpec((None, C, width), lambda h, t: (h, t, 0))

    def whole(a):
        return pl.BlockSpec((None, *a.shape[1:]), lambda h, t: (h, 0, 0))

    return pl.pallas_call(
        kernel, grid=(BH, T // C),
        in_specs=[rows(w) for w in row_widths] + [whole(a) for a in shared],
        out_specs=[rows(w) for w in out_widths],
        out_shape=[jax.ShapeDtypeStruct((BH, T, w), jnp.float32) for w in out_widths],
        compiler_params=_compiler_params(config, ("parallel", "parallel")),
        interpret=config.interpret, name=name)(*inputs, *shared)


def _read(qf: Array, inv: Array, S: Array, config: KernelConfig) -> Array:
    # out = (φ(q) @ H(S)) · inv_den, the sigmoid and the normaliser fused.
    m, d = S.shape[1:]

    def kernel(q_ref, inv_ref, s_ref, out_ref):
        H = hebbian(s_ref[...], config.m_div, config.sigmoid)
        out_ref[...] = _dot(q_ref[...], H) * inv_ref[...]

    (out,) = _row_blocks(kernel, (qf, inv), (m, 1), (S,), (d,), config,
                         f"astro_read_{config.backend}")
    return out


def _read_backward(qf, x, v, dout, inv, H, HT, dS, dST, config: KernelConfig):
    # The per-token gradients of out = (φ(q) @ H) · inv and S = S0 + xᵀ v:
    # ∂φ(q) = (dout·inv) @ Hᵀ, ∂inv = rowsum(dout · (φ(q) @ H)), ∂x = v @ ∂Sᵀ, ∂v = x @ ∂S.
    m, d = H.shape[1:]

    def kernel(q_ref, x_ref, v_ref, do_ref, inv_ref, h_ref, hT_ref, ds_ref, dsT_ref,
               dq_ref, dinv_ref, dx_ref, dv_ref):
        do = do_ref[...]
        dq_ref[...] = _dot(do * inv_ref[...], hT_ref[...])
        num = _dot(q_ref[...], h_ref[...])
        dinv_ref[...] = jnp.sum(do * num, axis=1, keepdims=True)
        dx_ref[...] = _dot(v_ref[...], dsT_ref[...])
        dv_ref[...] = _dot(x_ref[...], ds_ref[...])

    return _row_blocks(kernel, (qf, x, v, dout, inv), (m, m, d, d, 1), (H, HT, dS, dST),
                       (m, 1, m, d), config, f"astro_read_bwd_{config.backend}")


def _check(qf: Array, x: Array, v: Array, inv_den: Array, S0: Array, config: KernelConfig) -> None:
    _check_operands("noncausal_hebbian_read", "[m, C] key blocks", qf, x, v, inv_den, S0, config)


def _padded(config: KernelConfig, *arrays: Array) -> tuple[Array, ...]:
    T = arrays[0].shape[1]
    Tp = -(-T // config.chunk_size) * config.chunk_size
    return tuple(_pad_tokens(a.astype(jnp.float32), Tp) for a in arrays)


def _forward(qf, x, v, inv_den, S0, config):
    T = qf.shape[1]
    qf, x, v, inv_den = _padded(config, qf, x, v, inv_den)
    ones = jnp.ones_like(inv_den)
    S = _gram(jnp.swapaxes(x, 1, 2), v, ones, S0.astype(jnp.float32), config)
    out = _read(qf, inv_den, S, config)[:, :T]
    return (out, S), (qf, x, v, inv_den, S)


_fwd_rule = _checked_forward(_check, _forward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def noncausal_hebbian_read(qf: Array, x: Array, v: Array, inv_den: Array, S0: Array,
                           config: KernelConfig) -> tuple[Array, Array]:
    """``S = S0 + Σ_t x_t v_tᵀ`` and ``out_t = (φ(q_t) @ H(S)) · inv_den_t``, fused.

    Args:
      qf: ``[BH, T, m]`` query rates; x: ``[BH, T, m]`` presynaptic rates ``φ(k) + φ(A)`` and
        v: ``[BH, T, d]`` values, both zero at padding tokens; inv_den: ``[BH, T, 1]`` normaliser
        (0 at padding queries); S0: ``[BH, m, d]`` state of earlier tokens.
      config: static kernel settings (``chunk_size`` is the token block; ``d_tile`` unused).

    Returns:
      ``(out [BH, T, d], S [BH, m, d])``, float32; differentiable in every array argument.
    """
    return _fwd_rule(qf, x, v, inv_den, S0, config)[0]


def _bwd_rule(config, residuals, cotangents):
    qf, x, v, inv_den, S = residuals
    dout, dS_out = cotangents
    T = dout.shape[1]
    (dout,) = _padded(config, dout)
    # The [m, d] elementwise pieces (H, its slope, transposes) are tiny next to the [T, ·] work.
    H = hebbian(S, config.m_div, config.sigmoid)
    dH = _gram(jnp.swapaxes(qf, 1, 2), dout, inv_den, jnp.zeros_like(S), config)
    dS = dH * hebbian_slope(H, config.m_div, config.sigmoid) + dS_out.astype(jnp.float32)
    dq, dinv, dx, dv = _read_backward(qf, x, v, dout, inv_den, H, jnp.swapaxes(H, 1, 2), dS,
                                      jnp.swapaxes(dS, 1, 2), config)
    return dq[:, :T], dx[:, :T], dv[:, :T], dinv[:, :T], dS


noncausal_hebbian_read.defvjp(_fwd_rule, _bwd_rule)
