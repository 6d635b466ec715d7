"""astroflax: Astromorphic Transformers (neuron-astrocyte attention) in JAX and Flax NNX.

Strata, imported one way only: ``kernels`` (pure JAX) <- ``nn`` (NNX modules) <- ``models``
<- ``train`` <- ``experiments``. ``biology`` (the tripartite-synapse simulation) stands apart.
"""

__version__ = "0.1.0"
