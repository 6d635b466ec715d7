"""The option names ``astro_attention`` accepts, in a module that imports nothing.

Both :mod:`astroflax.kernels.astro.api` and :mod:`astroflax.kernels.pallas.attention` check
arguments against them (and :mod:`astroflax.nn.spec` via ``api``), so they live below both.
"""

#: ``astro_attention(mode=...)``: see :func:`astroflax.kernels.astro.api.resolve_mode`.
MODES = ("auto", "parallel", "chunk", "recurrent")
#: ``astro_attention(layout=...)``: ``[batch, seq, heads, dim]`` or ``[batch, heads, seq, dim]``.
LAYOUTS = ("BTHD", "BHTD")
#: ``astro_attention(implementation=...)``: the XLA modes, or the fused Pallas kernels.
IMPLEMENTATIONS = ("xla", "pallas")
