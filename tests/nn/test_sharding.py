"""Logical sharding annotations: on every parameter, inert without a mesh, binding with one."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from astroflax.models import create_model, list_models
from astroflax.nn import LOGICAL_AXES, VARIANTS, axis_rules

CASES = [(name, "astro") for name in list_models()] + [
    ("tiny_wikitext2", v) for v in VARIANTS if v != "astro"]


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_every_parameter_has_logical_axes_and_the_model_builds_without_a_mesh(name, variant):
    model = nnx.eval_shape(lambda: create_model(name, attention=variant))
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    assert len(flat) > 0
    for path, var in flat:
        names = var.get_metadata().get("out_sharding")
        assert names is not None and len(names) == len(var.shape), (name, variant, path)
        assert set(names) <= set(LOGICAL_AXES) | {None}, (name, path, names)


def test_a_mesh_with_rules_shards_parameters_at_creation():
    # Auto axes (GSPMD): the modules annotate parameters only, so activations are left to XLA.
    mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
    rules = axis_rules(embed="data", heads="model", mlp="model")
    with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
        model = create_model("tiny_wikitext2")
        specs = nnx.get_partition_spec(nnx.state(model, nnx.Param))
        tokens = np.arange(8).reshape(2, 4) % 50
        sharded_logits = nnx.jit(lambda m, t: m(t)[0])(model, tokens)
    attn = model.trunk.stack.blocks[0].attention

    def sharded_as(x, *spec):
        return x.sharding.is_equivalent_to(NamedSharding(mesh, P(*spec)), x.ndim)

    assert sharded_as(attn.query.kernel[...], "data", "model", None)
    assert sharded_as(model.trunk.stack.blocks[0].ffn.up.kernel[...], "data", "model")
    assert sharded_as(attn.pos_M[...], "model", None, None)
    assert specs["embed"]["table"].get_value() == P(None, "data")
    # The sharded model computes what the unsharded one does.
    unsharded = create_model("tiny_wikitext2")
    np.testing.assert_allclose(sharded_logits, unsharded(tokens)[0], rtol=1e-5, atol=1e-6)


def test_axis_rules_rejects_unknown_logical_names():
    with pytest.raises(ValueError, match=r"allowed: .*'embed'"):
        axis_rules(embd="data")
