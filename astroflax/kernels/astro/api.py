"""The batched public API: ``astro_attention`` over ``[batch, seq, heads, dim]`` arrays.

It validates arguments in Python (clear errors before tracing), resolves ``mode="auto"``
(logged), and calls one jitted function: the per-head mode function lifted over heads and
batch by :func:`astroflax.kernels._lift.lift_over_batch_and_heads`.
"""

from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp
from jax import Array

from astroflax.kernels._lift import lift_over_batch_and_heads
from astroflax.kernels._validate import (
    check_arrays,
    check_flag,
    check_mask,
    check_positive,
    check_positive_int,
    check_rank,
    check_same_dtype,
    check_static_scalar,
    dtype_of,
    fail,
    shape_of,
)
from astroflax.kernels.astro.chunk import chunk_astro
from astroflax.kernels.astro.core import AstroState, ReadParams, accumulation_dtype
from astroflax.kernels.astro.options import IMPLEMENTATIONS, LAYOUTS, MODES
from astroflax.kernels.astro.parallel import parallel_astro
from astroflax.kernels.astro.recurrent import recurrent_astro
from astroflax.kernels.astro.scan import trace_stays_finite
from astroflax.kernels.feature_maps import FEATURE_MAPS, elu1

# The option tuples are re-exported (astroflax.nn.spec checks its fields against api's names).
__all__ = ["IMPLEMENTATIONS", "LAYOUTS", "MODES", "astro_attention", "resolve_mode",
           "scans_tokens_on_this_backend"]

_log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=256)
def _log_auto_choice(causal: bool, T: int, chunk_size: int, chosen: str) -> None:
    # Cached so a training loop logs each (shape, choice) once rather than every step.
    _log.info("astro_attention mode='auto' -> %r (causal=%s, T=%d, chunk_size=%d)",
              chosen, causal, T, chunk_size)


def resolve_mode(mode: str, *, causal: bool, seq_len: int, chunk_size: int) -> str:
    """The execution mode ``mode="auto"`` stands for (and a check of explicit ones).

    ``auto``: non-causal -> ``parallel`` (one write, one read); causal with ``T <= chunk_size``
    -> ``parallel`` (a single chunk anyway); causal and longer -> ``chunk`` (``O(C·m·d)``
    memory instead of ``O(T·m·d)``). ``recurrent`` is never chosen automatically: it is the
    token-by-token form for generation, slowest on whole sequences.
    """
    if mode not in MODES:
        fail("mode", f"one of {MODES}", repr(mode))
    if mode in ("chunk", "recurrent") and not causal:
        fail("mode", "'parallel' or 'auto' when causal=False (a non-causal pass is one write "
             "and one read; chunk and recurrent modes are causal)", repr(mode))
    if mode != "auto":
        return mode
    chosen = "chunk" if causal and seq_len > chunk_size else "parallel"
    _log_auto_choice(causal, seq_len, chunk_size, chosen)
    return chosen


def _to_bthd(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    # Canonical (batch, seq, heads, dim) view of a rank-4 shape given in `layout`.
    return shape if layout == "BTHD" else (shape[0], shape[2], shape[1], shape[3])


def _validate(q, k, v, pos_keys, mask, projection, initial_state, *, causal, alpha, sigmoid,
              m_div, eps, feature_map, chunk_size, layout) -> int:
    """Checks every argument; returns ``m``, the state width (hidden neurons per head)."""
    if layout not in LAYOUTS:
        fail("layout", f"one of {LAYOUTS}", repr(layout))
    check_flag("causal", causal)
    check_flag("sigmoid", sigmoid)
    check_arrays(("q", "k", "v"), (q, k, v))
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not jnp.issubdtype(dtype_of(x), jnp.floating):
            fail(name, "a floating-point array (float32, bfloat16, float64, ...)",
                 getattr(x, "dtype", type(x)))
    check_same_dtype(("q", "k", "v"), (q, k, v))
    axes = "[batch, seq, heads, {}]" if layout == "BTHD" else "[batch, heads, seq, {}]"
    B, T, H, n = _to_bthd(check_rank("q", q, 4, axes.format("m")), layout)
    if T < 1 or n < 1:
        fail("q", "at least one token and one feature", shape_of(q))
    k_shape = _to_bthd(check_rank("k", k, 4, axes.format("m")), layout)
    v_shape = _to_bthd(check_rank("v", v, 4, axes.format("d")), layout)
    if k_shape[2] != H or v_shape[2] != H:
        fail("k/v heads", f"{H} heads like q", f"k: {k_shape[2]}, v: {v_shape[2]}")
    if k_shape != (B, T, H, n):
        fail("k", f"the shape of q {shape_of(q)}", shape_of(k))
    if v_shape[:3] != (B, T, H):
        fail("v", f"batch, seq and heads of q ({B}, {T}, {H}) in layout {layout}",
             shape_of(v))
    if feature_map not in FEATURE_MAPS:
        fail("feature_map", f"one of {FEATURE_MAPS}", repr(feature_map))
    m = n
    if feature_map == "random_features":
        p_shape = shape_of(projection)
        if p_shape is None or len(p_shape) not in (2, 3) or p_shape[-1] != n or (
                len(p_shape) == 3 and p_shape[0] != H):
            fail("projection", f"[num_features, {n}] or [{H}, num_features, {n}] for "
                 "feature_map='random_features'", p_shape)
        m = p_shape[-2]
    elif projection is not None:
        fail("projection", "None unless feature_map='random_features'", shape_of(projection))
    if pos_keys is not None:
        p = check_rank("pos_keys", pos_keys, 3, "[seq, heads, m]" if layout == "BTHD"
                       else "[heads, seq, m]")
        t_pos, h_pos = (p[0], p[1]) if layout == "BTHD" else (p[1], p[0])
        if t_pos < T or h_pos != H or p[2] != m:
            want = f"[>= {T}, {H}, {m}]" if layout == "BTHD" else f"[{H}, >= {T}, {m}]"
            fail("pos_keys", f"shape {want} (at least as long as the sequence)", p)
    check_mask(mask, B, T)
    if initial_state is not None:
        d, acc = v_shape[3], accumulation_dtype(dtype_of(v))
        S, z = getattr(initial_state, "S", None), getattr(initial_state, "z", None)
        want = f"AstroState(S [{B}, {H}, {m}, {d}], z [{B}, {H}, {m}]) in {acc}"
        if shape_of(S) != (B, H, m, d) or shape_of(z) != (B, H, m):
            fail("initial_state", want, f"S {shape_of(S)}, z {shape_of(z)}")
        if dtype_of(S) != acc or dtype_of(z) != acc:
            # The state is where sums accumulate: a lower-precision state would silently
            # accumulate in it (docs/model.md §2: S, z in float32).
            fail("initial_state", want, f"S {dtype_of(S)}, z {dtype_of(z)}")
    for name, value in (("alpha", alpha), ("eps", eps)):
        check_static_scalar(name, value)
    check_positive("alpha", alpha)
    check_positive("eps", eps, allow_zero=True)
    if m_div is not None:
        check_static_scalar("m_div", m_div)
        check_positive("m_div", m_div)
    check_positive_int("chunk_size", chunk_size)
    return m


def scans_tokens_on_this_backend() -> bool:
    """Whether the causal sigmoid path runs as a token scan (``scan.sigmoid_scan_read``): on CPU.

    On a CPU a loop over tokens that updates every (example, head) pair's ``[m, d]`` trace in
    cache beats materialising ``[C, m, d]`` prefix states per chunk (benchmarks/README.md,
    "Causal astro training"); on a GPU or TPU its ``T`` sequential small steps would leave the
    device idle, so other backends materialise the prefix states (``prefix.sigmoid_prefix_read``)
    or use the fused Pallas kernels.
    """
    return jax.default_backend() == "cpu"


def _trace_stays_finite(k, v, pos_keys, S0, T, feature_map) -> Array | bool:
    # One flag for the whole batch (scan.trace_stays_finite), so that the token scan's
    # backward is a real branch under the vmaps rather than both branches selected per pair.
    if feature_map != "elu1":
        return False  # no cheap bound on the random features before they are computed
    dtype = S0.dtype
    # elu1 is increasing, so the largest rate is the rate of the largest input.
    x_max = elu1(jnp.max(k.astype(dtype), initial=-jnp.inf))
    if pos_keys is not None:
        x_max = x_max + elu1(jnp.max(pos_keys.astype(dtype), initial=-jnp.inf))
    return trace_stays_finite(jnp.max(jnp.abs(S0), initial=0), x_max,
                              jnp.max(jnp.abs(v.astype(dtype)), initial=0), T, dtype)


@functools.partial(jax.jit, static_argnames=("causal", "mode", "chunk_size", "params",
                                             "feature_map", "layout", "token_scan"))
def _astro_attention(q, k, v, pos_keys, mask, projection, initial_state, *, causal, mode,
                     chunk_size, params, feature_map, layout, token_scan):
    T = _to_bthd(q.shape, layout)[1]
    # Once the batch is mapped away, q is [T, H, m] (BTHD) or [H, T, m] (BHTD); pos_keys has
    # that layout from the start, and only its first T rows are used.
    head_axis = 1 if layout == "BTHD" else 0
    if pos_keys is not None:
        pos_keys = jax.lax.slice_in_dim(pos_keys, 0, T, axis=1 - head_axis)
    scan = dict(token_scan=token_scan, subtraction_ok=None)
    if token_scan and causal and params.sigmoid and mode != "recurrent":
        scan["subtraction_ok"] = _trace_stays_finite(k, v, pos_keys, initial_state.S, T,
                                                     feature_map)
    if mode == "parallel":
        head_fn = functools.partial(parallel_astro, causal=causal, params=params,
                                    feature_map=feature_map, **scan)
    elif mode == "chunk":
        head_fn = functools.partial(chunk_astro, params=params, feature_map=feature_map,
                                    chunk_size=chunk_size, **scan)
    else:
        head_fn = functools.partial(recurrent_astro, params=params, feature_map=feature_map)
    per_head_projection = projection is not None and projection.ndim == 3
    lifted = lift_over_batch_and_heads(
        head_fn,
        # q, k, v, pos_keys, mask, projection, initial_state
        batch_axes=(0, 0, 0, None, 0, None, 0),
        head_axes=(head_axis, head_axis, head_axis, head_axis, None,
                   0 if per_head_projection else None, 0),
        out_batch_axes=(0, 0), out_head_axes=(head_axis, 0))
    return lifted(q, k, v, pos_keys, mask, projection, initial_state)


def astro_attention(q: Array, k: Array, v: Array, *, causal: bool = False, alpha: float = 0.25,
                    sigmoid: bool = True, m_div: float | None = None,
                    pos_keys: Array | None = None, mask: Array | None = None,
                    feature_map: str = "elu1", projection: Array | None = None,
                    mode: str = "auto", chunk_size: int = 64, eps: float = 1e-6,
                    initial_state: AstroState | None = None, return_state: bool = False,
                    layout: str = "BTHD", implementation: str = "xla",
                    interpret: bool = False) -> Array | tuple[Array, AstroState]:
    """Astromorphic attention (paper Eq. 8–17; docs/model.md §2–4), batched over examples and heads.

    Per head: ``S = Σ_t (φ(k_t) + φ(a_t)) v_tᵀ``, ``H = σ(S / m_div)`` (Eq. 11),
    ``g = (Σ_t φ(k_t))**alpha`` (Eq. 13–14), ``out_i = (φ(q_i) @ H) / (φ(q_i)·g + eps)``
    (Eq. 15–17), the sums running over real tokens (and ``t <= i`` when causal).

    Args:
      q, k: ``[B, T, H, n]`` queries and keys (``n`` = hidden neurons per head for ``"elu1"``).
      v: ``[B, T, H, d]`` values. q, k and v are arrays of one floating dtype (lists and
        mixed dtypes are refused; the sums run in float32, or float64 for float64 inputs).
      causal: query ``i`` sees only tokens ``t <= i`` (decoder).
      alpha: the Ca²⁺ exponent of Eq. 14, > 0 (the paper uses 0.25).
      sigmoid: apply Eq. 11's sigmoid; off gives linear-attention read-out.
      m_div: the divisor of Eq. 11, > 0; None means ``m`` (the state width).
      pos_keys: ``[T_pos >= T, H, m]`` raw astrocytic activity ``A`` (Eq. 12, see
        :func:`astroflax.kernels.astro_positional`); rows ``0..T-1`` are used; elu+1 is applied
        inside. None disables the positional term.
      mask: ``[B, T]`` bool, True = real token. Padding adds nothing to the state and its
        outputs are zero.
      feature_map: ``"elu1"`` (Eq. 4) or ``"random_features"`` (Kozachkov/Performer; then
        ``projection`` ``[m, n]`` or per head ``[H, m, n]`` is required and ``m`` features form
        the state).
      projection: the random-feature matrix, see :func:`draw_random_projection`.
      mode: ``"parallel"``, ``"chunk"`` (causal), ``"recurrent"`` (causal) or ``"auto"``
        (see :func:`resolve_mode`; the choice is logged).
      chunk_size: tokens per chunk in ``"chunk"`` mode.
      eps: guard on the calcium response before it is inverted (Eq. 16), >= 0.
      initial_state: ``AstroState(S [B, H, m, d], z [B, H, m])`` of earlier tokens, to continue
        a sequence (split and resume); None starts empty.
      return_state: also return the state after the last token.
      layout: ``"BTHD"`` (``[B, T, H, *]``, as ``jax.nn.dot_product_attention``; the default)
        or ``"BHTD"`` (``[B, H, T, *]`` for q, k, v and out, ``[H, T_pos, m]`` for pos_keys).
        Per-head matmuls need each head's ``[T, *]`` block contiguous, so BTHD inputs are
        transposed inside (on XLA:CPU that costs as much as the attention maths itself, see
        benchmarks/README.md); pass BHTD when the data is head-major already.
      implementation: ``"xla"`` (the modes above) or ``"pallas"``: the fused GPU/TPU kernels of
        :mod:`astroflax.kernels.pallas` (float32 sums; ``chunk_size`` is the causal kernel's
        checkpoint interval, a multiple of 128 on TPU). Not chosen automatically until it has
        been compiled and timed on real hardware (benchmarks/README.md).
      interpret: with ``"pallas"``, run the kernels in the Pallas interpreter (CPU; for tests).

    Returns:
      ``[B, T, H, d]`` (or ``[B, H, T, d]`` for BHTD) in ``v``'s dtype (sums in float32, or
      float64 for float64 inputs); with ``return_state``, ``(out, AstroState)`` with
      float32/float64 ``S [B, H, m, d]``, ``z [B, H, m]``.

    Raises:
      ValueError: on a bad argument, naming it and what was expected, before tracing.
    """
    m = _validate(q, k, v, pos_keys, mask, projection, initial_state, causal=causal,
                  alpha=alpha, sigmoid=sigmoid, m_div=m_div, eps=eps, feature_map=feature_map,
                  chunk_size=chunk_size, layout=layout)
    if implementation != "xla" or interpret:
        # Imported on demand (import cost): Pallas with its TPU and Triton modules takes
        # 0.2-0.3 s to import, 10x the rest of astroflax.kernels once jax is loaded.
        from astroflax.kernels.pallas import attention as pallas_attention

        pallas_attention.check_pallas_arguments(implementation, interpret=interpret, mode=mode,
                                                dtype=v.dtype)
    B, T, H, _ = _to_bthd(q.shape, layout)
    d = v.shape[-1]
    mask = None if mask is None else jnp.asarray(mask)  # a nested list is a pytree to vmap
    mode = resolve_mode(mode, causal=causal, seq_len=T, chunk_size=chunk_size)
    params = ReadParams(alpha=float(alpha), sigmoid=bool(sigmoid),
                        m_div=float(m if m_div is None else m_div), eps=float(eps))
    if initial_state is None:
        acc = accumulation_dtype(v.dtype)
        initial_state = AstroState(S=jnp.zeros((B, H, m, d), acc), z=jnp.zeros((B, H, m), acc))
    if implementation == "pallas":
        out, state = pallas_attention.pallas_astro_attention(
            q, k, v, pos_keys, mask, projection, initial_state, causal=bool(causal),
            params=params, feature_map=feature_map, chunk_size=int(chunk_size), layout=layout,
            backend=pallas_attention.platform_backend(interpret), interpret=interpret)
        return (out, state) if return_state else out
    out, state = _astro_attention(q, k, v, pos_keys, mask, projection, initial_state,
                                  causal=bool(causal), mode=mode, chunk_size=int(chunk_size),
                                  params=params, feature_map=feature_map, layout=layout,
                                  token_scan=scans_tokens_on_this_backend())
    return (out, state) if return_state else out
