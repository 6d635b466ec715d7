"""Fused causal Hebbian read (Eq. 10–12, causal form of docs/model.md §4) as Pallas kernels.

For one head the causal sigmoid form needs, per token ``t``, the state after it,
``S_t = S_0 + Σ_{j<=t} x_j v_jᵀ`` (``x = φ(k) + φ(A)``), and the read
``num_t = φ(q_t) @ σ(S_t / m_div)``.
The XLA path materialises a chunk's ``C`` states ``[C, m, d]`` in device memory; these kernels keep
one state tile in on-chip memory and stream the tokens through it: per token one rank-1 update,
one sigmoid and one matrix-vector product, ``O(m·d)`` work and no ``O(C·m·d)`` traffic.

:func:`causal_hebbian_read` computes ``out_t = num_t · inv_den_t``; the normaliser
``inv_den_t = mask_t / (φ(q_t)·z_t^α + eps)`` is an ``O(T·m)`` cumulative sum and stays in XLA
(see :mod:`astroflax.kernels.pallas.attention`), so the kernels only do the ``O(T·m·d)`` part.
The write is linear, so each chunk's start state is a prefix sum of per-chunk matmuls
``Σ_{t∈chunk} x_t v_tᵀ`` (XLA, ``T / C`` states kept as checkpoints), and then every chunk runs its
token loop independently: the grid ``(B·H, d / d_tile, T / C)`` is parallel in every dimension
(GPU thread blocks, both TPU TensorCores of a megacore chip). The backward pass
(``jax.custom_vjp``) runs each chunk in reverse from its checkpointed end state, recovering
earlier states by subtracting ``x_t v_tᵀ``, blind to later chunks; what later chunks' gradients
add (``∂x_t = G_in v_t``, ``∂v_t = G_inᵀ x_t`` with ``G_in`` a reverse prefix sum of per-chunk
``Σ ∂L/∂S``) is again one matmul per chunk in XLA. Never ``T`` states.

Layout inside the kernels: the state is kept transposed, ``Sᵀ [d_tile, m]``, so that token rows of
``φ(q)`` and ``x`` (``[1, m]``) are plain row loads and only ``v`` and the outputs go through the
chunk's ``[d_tile, C]`` transposed blocks (column ``t`` picked by a one-hot lane mask: dynamic lane
slicing is what TPUs do worst). The same kernels serve both backends; only the compiler
parameters differ: ``backend="tpu"`` (Mosaic TPU; ``C`` a multiple of 128, the lane width of the
``[d_tile, C]`` blocks, unless one chunk covers the sequence) or ``backend="gpu"`` (Triton; the
Mosaic GPU default of this jax wants warpgroup-level kernels). ``interpret=True`` runs them on CPU.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import Array
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton

BACKENDS = ("tpu", "gpu")
HIGHEST = jax.lax.Precision.HIGHEST  # float32 matmuls stay float32 (no TF32 / bf16 passes)


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """Static settings of the fused kernels (hashable: a ``custom_vjp`` non-differentiable arg).

    Attributes:
      m_div: the divisor of Eq. 11, > 0.
      sigmoid: apply Eq. 11's sigmoid (else the identity, linear read-out).
      chunk_size: tokens per chunk ``C`` (the causal kernels' checkpoint interval and block).
      d_tile: value columns per program (divides ``d``). ``None``: all of ``d`` on TPU (a
        ``[d, m]`` tile sits in VMEM); on GPU 32 when it divides ``d``, because a Triton
        program holds its state tiles (two in the backward pass) in registers, and more tiles
        mean more programs in flight.
      backend: ``"tpu"`` (Mosaic TPU) or ``"gpu"`` (Triton).
      interpret: run in the Pallas interpreter (CPU).
    """

    m_div: float
    sigmoid: bool = True
    chunk_size: int = 128
    d_tile: int | None = None
    backend: str = "tpu"
    interpret: bool = False

    def tile(self, d: int) -> int:
        """The value-column tile for width ``d`` (checked to divide it)."""
        tile = self.d_tile
        if tile is None:
            tile = 32 if self.backend == "gpu" and d > 32 and d % 32 == 0 else d
        if d % tile:
            raise ValueError(f"d_tile must divide the value width d={d}, got {tile}")
        return tile


def _compiler_params(config: KernelConfig, semantics: tuple[str, ...]):
    # The parameter type picks the lowering: Triton on GPUs (the Mosaic GPU default wants
    # warpgroup-level kernels), Mosaic on TPUs.
    if config.backend == "gpu":
        return pltriton.CompilerParams(num_warps=4, num_stages=1)
    return pltpu.CompilerParams(dimension_semantics=semantics)


def hebbian(S: Array, m_div: float, sigmoid: bool) -> Array:
    """``σ(S / m_div)`` or ``S / m_div`` (Eq. 11) — the same maths as ``core.hebbian_weights``."""
    scaled = S * (1.0 / m_div)
    return jax.nn.sigmoid(scaled) if sigmoid else scaled


def hebbian_slope(H: Array, m_div: float, sigmoid: bool) -> Array:
    """``∂H/∂S`` elementwise, from ``H`` itself: ``H (1 - H) / m_div`` or ``1 / m_div``."""
    return H * (1.0 - H) * (1.0 / m_div) if sigmoid else jnp.full_like(H, 1.0 / m_div)


def _loop(n: int, body, init):
    # An int32 counter whatever jax_enable_x64 says: Mosaic TPU rejects the int64 -> int32
    # casts an int64 counter would need.
    return jax.lax.fori_loop(jnp.int32(0), jnp.int32(n), body, init)


def _column(block: Array, onehot: Array) -> Array:
    # Column t of a [rows, C] block as [rows, 1], by a masked lane reduction.
    return jnp.sum(jnp.where(onehot, block, 0.0), axis=1, keepdims=True)


def _forward_chunk(S, row, vT, *, C, m_div, sigmoid):
    """Token loop of one chunk: returns (state after the chunk, outputs ``[d_tile, C]``).

    ``row(name, t)`` loads token ``t``'s ``[1, m]`` row of ``"q"`` / ``"x"`` or its ``[1, 1]``
    ``"inv"``; ``vT`` is the chunk's ``[d_tile, C]`` values.
    """
    lanes = jax.lax.broadcasted_iota(jnp.int32, (1, C), 1)

    def step(t, carry):
        S, outT = carry
        onehot = lanes == t
        S = S + _column(vT, onehot) * row("x", t)  # S_t = S_{t-1} + v_t x_tᵀ (transposed)
        num = jnp.sum(hebbian(S, m_div, sigmoid) * row("q", t), axis=1, keepdims=True)
        outT = jnp.where(onehot, num * row("inv", t), outT)
        return S, outT

    return _loop(C, step, (S, jnp.zeros_like(vT)))


def _backward_chunk(S, G, row, store, vT, doT, *, C, m_div, sigmoid):
    """Reverse token loop of one chunk.

    ``S`` is the state after the chunk's last token, ``G = Σ_{i>t} ∂L/∂S_i`` from later tokens
    (both ``[d_tile, m]``). Stores per-token rows ``"dq"``, ``"dx"`` (``[1, m]``) and ``"dinv"``
    (``[1, 1]``) through ``store``; returns ``(G, dvT [d_tile, C])``.
    """
    lanes = jax.lax.broadcasted_iota(jnp.int32, (1, C), 1)

    def step(i, carry):
        S, G, dvT = carry
        t = C - 1 - i
        onehot = lanes == t
        v, do = _column(vT, onehot), _column(doT, onehot)
        q, x = row("q", t), row("x", t)
        H = hebbian(S, m_div, sigmoid)
        dnum = do * row("inv", t)                                    # [d_tile, 1]
        store("dq", t, jnp.sum(H * dnum, axis=0, keepdims=True))     # ∂/∂φ(q_t), this tile
        num = jnp.sum(H * q, axis=1, keepdims=True)
        store("dinv", t, jnp.sum(do * num, axis=0, keepdims=True))
        G = G + dnum * q * hebbian_slope(H, m_div, sigmoid)          # + ∂L/∂S_t
        store("dx", t, jnp.sum(G * v, axis=0, keepdims=True))        # x_t feeds S_i for i >= t
        dvT = jnp.where(onehot, jnp.sum(G * x, axis=1, keepdims=True), dvT)
        S = S - v * x                                                # back to S_{t-1}
        return S, G, dvT

    _, G, dvT = _loop(C, step, (S, G, jnp.zeros_like(vT)))
    return G, dvT


def _specs(C: int, m: int, dt: int):
    # Block specs over the grid (head b, value tile j, chunk c): every program is independent.
    return {
        "rows": pl.BlockSpec((None, C, m), lambda b, j, c: (b, c, 0)),
        "scalar_rows": pl.BlockSpec((None, C, 1), lambda b, j, c: (b, c, 0)),
        "tile_cols": pl.BlockSpec((None, dt, C), lambda b, j, c: (b, j, c)),
        "chunk_state": pl.BlockSpec((None, None, dt, m), lambda b, j, c: (b, c, j, 0)),
        "partial_rows": pl.BlockSpec((None, None, C, m), lambda b, j, c: (j, b, c, 0)),
        "partial_scalars": pl.BlockSpec((None, None, C, 1), lambda b, j, c: (j, b, c, 0)),
    }


def _forward_call(qf, x, vT, inv, startT, config: KernelConfig):
    """Outputs ``outᵀ [BH, d, T]`` of every chunk, each from its start state ``[BH, nc, d, m]``."""
    BH, T, m = qf.shape
    d, C = vT.shape[1], config.chunk_size
    dt, nc = config.tile(d), T // C
    body = functools.partial(_forward_chunk, C=C, m_div=config.m_div, sigmoid=config.sigmoid)

    def kernel(q_ref, x_ref, vT_ref, inv_ref, start_ref, outT_ref):
        refs = {"q": q_ref, "x": x_ref, "inv": inv_ref}
        _, outT_ref[...] = body(start_ref[...], lambda name, t: refs[name][pl.ds(t, 1), :],
                                vT_ref[...])

    spec = _specs(C, m, dt)
    return pl.pallas_call(
        kernel, grid=(BH, d // dt, nc),
        in_specs=[spec["rows"], spec["rows"], spec["tile_cols"], spec["scalar_rows"],
                  spec["chunk_state"]],
        out_specs=spec["tile_cols"],
        out_shape=jax.ShapeDtypeStruct((BH, d, T), jnp.float32),
        compiler_params=_compiler_params(config, ("parallel",) * 3),
        interpret=config.interpret, name=f"astro_causal_fwd_{config.backend}",
    )(qf, x, vT, inv, startT)


def _backward_call(qf, x, vT, inv, endT, doT, config: KernelConfig):
    """Each chunk's reverse pass from its end state, blind to the gradient of later chunks.

    Returns per-d-tile partial ``∂φ(q)``, ``∂x``, ``∂inv_den`` ``[nd, BH, T, ·]``, ``∂vᵀ
    [BH, d, T]`` and the chunk's ``Σ_t ∂L/∂S_t`` ``[BH, nc, d, m]`` (transposed).
    """
    BH, T, m = qf.shape
    d, C = vT.shape[1], config.chunk_size
    dt, nc = config.tile(d), T // C
    nd = d // dt
    body = functools.partial(_backward_chunk, C=C, m_div=config.m_div, sigmoid=config.sigmoid)

    def kernel(q_ref, x_ref, vT_ref, inv_ref, end_ref, doT_ref,
               dq_ref, dx_ref, dinv_ref, dvT_ref, gsum_ref):
        refs = {"q": q_ref, "x": x_ref, "inv": inv_ref}
        outs = {"dq": dq_ref, "dx": dx_ref, "dinv": dinv_ref}

        def store(name, t, value):
            outs[name][pl.ds(t, 1), :] = value

        gsum_ref[...], dvT_ref[...] = body(
            end_ref[...], jnp.zeros(end_ref.shape, jnp.float32),
            lambda name, t: refs[name][pl.ds(t, 1), :], store, vT_ref[...], doT_ref[...])

    spec = _specs(C, m, dt)
    return pl.pallas_call(
        kernel, grid=(BH, nd, nc),
        in_specs=[spec["rows"], spec["rows"], spec["tile_cols"], spec["scalar_rows"],
                  spec["chunk_state"], spec["tile_cols"]],
        out_specs=[spec["partial_rows"], spec["partial_rows"], spec["partial_scalars"],
                   spec["tile_cols"], spec["chunk_state"]],
        out_shape=[jax.ShapeDtypeStruct((nd, BH, T, m), jnp.float32),
                   jax.ShapeDtypeStruct((nd, BH, T, m), jnp.float32),
                   jax.ShapeDtypeStruct((nd, BH, T, 1), jnp.float32),
                   jax.ShapeDtypeStruct((BH, d, T), jnp.float32),
                   jax.ShapeDtypeStruct((BH, nc, d, m), jnp.float32)],
        compiler_params=_compiler_params(config, ("parallel",) * 3),
        interpret=config.interpret, name=f"astro_causal_bwd_{config.backend}",
    )(qf, x, vT, inv, endT, doT)


def _pad_tokens(a: Array, T_padded: int) -> Array:
    # Zero tokens are inert: x = 0 and v = 0 add nothing to S, inv = 0 zeroes their outputs.
    return jnp.pad(a, [(0, 0), (0, T_padded - a.shape[1]), (0, 0)])


def _check_operands(name: str, blocks: str, qf: Array, x: Array, v: Array, inv_den: Array,
                    S0: Array, config: KernelConfig) -> None:
    """The backend, operand shapes and TPU chunk width that both fused reads need.

    ``name`` is the public function the errors name; ``blocks`` the ``[·, C]`` block whose lane
    width makes a TPU chunk a multiple of 128.
    """
    BH, T, m = qf.shape
    d = v.shape[-1]
    if config.backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {config.backend!r}")
    if x.shape != (BH, T, m) or v.shape[:2] != (BH, T) or inv_den.shape != (BH, T, 1) or (
            S0.shape != (BH, m, d)):
        raise ValueError(f"{name} wants qf, x [BH, T, m], v [BH, T, d], inv_den "
                         f"[BH, T, 1], S0 [BH, m, d]; got {qf.shape}, {x.shape}, {v.shape}, "
                         f"{inv_den.shape}, {S0.shape}")
    C = config.chunk_size
    if config.backend == "tpu" and not config.interpret and C % 128 and C < T:
        raise ValueError(f"chunk_size must be a multiple of 128 on TPU (the lane width of the "
                         f"{blocks}) or cover the sequence; got {C} for T={T}")


def _checked_forward(check, forward):
    """The ``custom_vjp`` forward rule ``(out, residuals)`` of a fused read: ``check`` first."""
    def fwd_rule(qf, x, v, inv_den, S0, config):
        check(qf, x, v, inv_den, S0, config)
        return forward(qf, x, v, inv_den, S0, config)
    return fwd_rule


def _check(qf: Array, x: Array, v: Array, inv_den: Array, S0: Array, config: KernelConfig) -> None:
    _check_operands("causal_hebbian_read", "[d_tile, C] value blocks", qf, x, v, inv_den, S0,
                    config)
    config.tile(v.shape[-1])


def _chunks(a: Array, C: int) -> Array:
    # [BH, T, w] -> [BH, T / C, C, w]
    return a.reshape(a.shape[0], a.shape[1] // C, C, a.shape[2])


def _forward(qf, x, v, inv_den, S0, config):
    T, C = qf.shape[1], config.chunk_size
    Tp = -(-T // C) * C
    qf, x, v, inv_den = (_pad_tokens(a.astype(jnp.float32), Tp) for a in (qf, x, v, inv_den))
    # The write is linear, so every chunk's start state is a prefix sum of per-chunk matmuls
    # (T/C states of [m, d], as checkpoints) and then all chunks run their token loops at once.
    sums = jnp.einsum("bncm,bncd->bnmd", _chunks(x, C), _chunks(v, C), precision=HIGHEST)
    inclusive = S0.astype(jnp.float32)[:, None] + jnp.cumsum(sums, axis=1)
    starts = jnp.concatenate([S0.astype(jnp.float32)[:, None], inclusive[:, :-1]], axis=1)
    vT = jnp.swapaxes(v, 1, 2)
    outT = _forward_call(qf, x, vT, inv_den, jnp.swapaxes(starts, 2, 3), config)
    out = jnp.swapaxes(outT, 1, 2)[:, :T]
    return (out, inclusive[:, -1]), (qf, x, vT, inv_den, jnp.swapaxes(inclusive, 2, 3))


_fwd_rule = _checked_forward(_check, _forward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def causal_hebbian_read(qf: Array, x: Array, v: Array, inv_den: Array, S0: Array,
                        config: KernelConfig) -> tuple[Array, Array]:
    """``out_t = (φ(q_t) @ H(S_t)) · inv_den_t`` with ``S_t = S0 + Σ_{j<=t} x_j v_jᵀ``, fused.

    Args:
      qf: ``[BH, T, m]`` query rates ``φ(q)`` (float32).
      x: ``[BH, T, m]`` presynaptic rates ``φ(k) + φ(A)``, zero at padding tokens.
      v: ``[BH, T, d]`` values, zero at padding tokens.
      inv_den: ``[BH, T, 1]`` ``mask / (calcium + eps)``: the normaliser of Eq. 16, 0 for padding
        queries (which zeroes their rows and gradients).
      S0: ``[BH, m, d]`` state of earlier tokens.
      config: static kernel settings.

    Returns:
      ``(out [BH, T, d], S_T [BH, m, d])``, float32; differentiable in every array argument.
    """
    return _fwd_rule(qf, x, v, inv_den, S0, config)[0]


def _bwd_rule(config, residuals, cotangents):
    qf, x, vT, inv_den, endT = residuals
    dout, dS_last = cotangents
    Tp, C = qf.shape[1], config.chunk_size
    T = dout.shape[1]
    doT = jnp.swapaxes(_pad_tokens(dout.astype(jnp.float32), Tp), 1, 2)
    dq, dx, dinv, dvT, gsumT = _backward_call(qf, x, vT, inv_den, endT, doT, config)
    # Each chunk's tokens also feed every later state: ∂L/∂S of the later chunks, plus the
    # returned state's cotangent, reaches chunk c as G_in[c]; its share of ∂x_t = G_in v_t
    # and ∂v_t = G_inᵀ x_t is a matmul per chunk.
    gsum = jnp.swapaxes(gsumT, 2, 3)                                       # [BH, nc, m, d]
    later = jnp.flip(jnp.cumsum(jnp.flip(gsum, 1), axis=1), 1)             # Σ_{c' >= c}
    g_in = dS_last.astype(jnp.float32)[:, None] + jnp.concatenate(
        [later[:, 1:], jnp.zeros_like(later[:, :1])], axis=1)              # Σ_{c' > c}
    v = jnp.swapaxes(vT, 1, 2)
    dx_in = jnp.einsum("bncd,bnmd->bncm", _chunks(v, C), g_in, precision=HIGHEST)
    dv_in = jnp.einsum("bncm,bnmd->bncd", _chunks(x, C), g_in, precision=HIGHEST)
    # Per-d-tile partial sums of the m-wide (and scalar) gradients add up here.
    dx = dx.sum(0) + dx_in.reshape(dx.shape[1:])
    dv = jnp.swapaxes(dvT, 1, 2) + dv_in.reshape(v.shape)
    dS0 = g_in[:, 0] + gsum[:, 0]
    return dq.sum(0)[:, :T], dx[:, :T], dv[:, :T], dinv.sum(0)[:, :T], dS0


causal_hebbian_read.defvjp(_fwd_rule, _bwd_rule)
