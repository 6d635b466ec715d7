"""Every fused kernel lowers for GPU (Triton) and TPU (Mosaic), forward and backward, on CPU.

``jax.export`` lowers a ``pallas_call`` for a platform this machine does not have, so block
shapes, layouts and operations a backend's Pallas lowering rejects fail here, at the paper
presets' shapes (docs/model.md §7), long before anyone holds the hardware. (What the device
compiler itself would reject after lowering still needs a device.)
"""

import jax
import jax.numpy as jnp
import pytest
from jax import export

from astroflax.kernels import AstroState
from astroflax.kernels.astro.core import ReadParams
from astroflax.kernels.pallas.attention import pallas_astro_attention

# (preset, causal, B, T, H, m = d): paper_wikitext2 is a decoder; paper_cifar10 and paper_imdb
# (T = 400, not a multiple of the 128-token block, so the kernels pad) are encoders.
PRESETS = [("paper_wikitext2", True, 24, 512, 6, 128), ("paper_cifar10", False, 32, 256, 8, 32),
           ("paper_imdb", False, 64, 400, 4, 32)]
# Which custom call each platform's lowering must contain.
PLATFORMS = [("tpu", "tpu", "tpu_custom_call"), ("gpu", "cuda", "__gpu$xla.gpu.triton")]


def _export(fn, platform, *args):
    # Triton calls carry no serialisation-compatibility guarantee; lowering is what is checked.
    triton = export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")
    return export.export(jax.jit(fn), platforms=[platform], disabled_checks=[triton])(*args)


@pytest.mark.parametrize("backend, platform, custom_call", PLATFORMS, ids=["tpu", "cuda"])
@pytest.mark.parametrize("preset, causal, B, T, H, width", PRESETS, ids=[p[0] for p in PRESETS])
def test_kernels_lower_forward_and_backward_at_paper_shapes(preset, causal, B, T, H, width,
                                                            backend, platform, custom_call):
    f32 = jnp.float32
    rows = jax.ShapeDtypeStruct((B, T, H, width), f32)
    args = (rows, rows, rows, jax.ShapeDtypeStruct((T, H, width), f32),
            jax.ShapeDtypeStruct((B, T), jnp.bool_))
    state = AstroState(S=jnp.zeros((B, H, width, width), f32), z=jnp.zeros((B, H, width), f32))
    params = ReadParams(alpha=0.25, sigmoid=True, m_div=100.0 * width * H)

    def loss(q, k, v, pos, mask):
        out, _ = pallas_astro_attention(q, k, v, pos, mask, None, state, causal=causal,
                                        params=params, feature_map="elu1", chunk_size=128,
                                        layout="BTHD", backend=backend, interpret=False)
        return jnp.sum(out)

    forward = _export(loss, platform, *args).mlir_module()
    backward = _export(jax.grad(loss, argnums=(0, 1, 2, 3)), platform, *args).mlir_module()
    # A gradient does not need the forward outputs, only the backward kernels: the causal
    # one; non-causal, the write (its S is a residual), the reduction and the row kernel.
    kernels = (1, 1) if causal else (2, 3)
    assert forward.count(custom_call) == kernels[0], forward.count(custom_call)
    assert backward.count(custom_call) == kernels[1], backward.count(custom_call)
