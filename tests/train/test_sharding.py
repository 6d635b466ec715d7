"""Sharded training on the suite's 8 simulated CPU devices: data parallel and FSDP train steps
give the losses of one device, parameters are sharded as the rules table says, a checkpoint saved
on 8 devices resumes on 2, and bad mesh configs fail before anything is compiled."""

import shutil

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from astroflax.data import load_dataset, train_iterator
from astroflax.train import ConfigError, train_and_evaluate, validate_config
from astroflax.train.checkpoint import Checkpointer
from astroflax.train.config import model_overrides
from astroflax.train.mesh import (
    batch_sharding,
    make_mesh,
    parameter_spec,
    process_rows,
    to_global,
    without_axes,
)
from astroflax.train.steps import (
    StepSharding,
    _gather_for_use,
    abstract_state,
    create_train_state,
    make_optimizer,
    make_schedule,
    make_train_step,
    state_shardings,
)
from experiments.configs import common
from tests.helpers import train_losses


def tiny(steps=5, attention="softmax"):
    """A 1-layer width-16 ViT on digits (softmax attention compiles fastest under SPMD)."""
    cfg = common.digits_config(attention, "digits_" + attention, "smoke")
    cfg.model.features, cfg.model.num_heads, cfg.model.mlp_dim = 16, 2, 32
    cfg.model.num_layers = 1
    cfg.train.num_train_steps = steps
    cfg.train.eval_every_steps = 0            # one eval per epoch (64 / 16 = 4 steps)
    cfg.train.checkpoint_every_steps = 4
    return cfg


def digits_tx(weight_decay=0.0):
    return make_optimizer(make_schedule(learning_rate=1e-3, schedule="constant", warmup_steps=0,
                                        total_steps=5), weight_decay=weight_decay)


def sharded_state(cfg, num_devices=8, weight_decay=0.0):
    """``(mesh, graphdef, state)`` of ``cfg``'s digits model created sharded on its mesh."""
    mesh = make_mesh(cfg.mesh, jax.devices()[:num_devices])
    kw = model_overrides(cfg.model, {"image_size": 8, "num_classes": 10, "in_channels": 1})
    graphdef, state = create_train_state(cfg.model.name, kw, digits_tx(weight_decay), 0,
                                         mesh=mesh, rules=tuple(cfg.mesh.rules))
    return mesh, graphdef, state


def step_losses(cfg, batches, num_devices):
    """Losses of ``len(batches)`` train steps of ``cfg``'s model on the first devices."""

    mesh, graphdef, state = sharded_state(cfg, num_devices, weight_decay=0.01)
    placement = StepSharding.gather_over(state, tuple(cfg.mesh.batch_axes))
    step = make_train_step(graphdef, task="classification", placement=placement,
                           shardings=state_shardings(state))
    sharding, out = batch_sharding(mesh, cfg.mesh), []
    for b in batches:
        b = {k: jax.make_array_from_process_local_data(sharding, v) for k, v in b.items()}
        state, m = step(state, b)
        out.append(float(m["loss"]))
    return np.array(out)


@pytest.fixture(scope="module")
def batches():
    """The first 5 training batches of ``tiny()``'s digits data (16 examples each)."""
    it = train_iterator(load_dataset(tiny().data.to_dict()), 16, seed=0)
    return [next(it) for _ in range(5)]


def test_data_parallel_and_fsdp_on_8_devices_match_one_device(batches):
    cfg = tiny()
    ref = step_losses(cfg, batches, 1)
    np.testing.assert_allclose(step_losses(cfg, batches, 8), ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(step_losses(common.fsdp(tiny()), batches, 8), ref, rtol=0,
                               atol=1e-5)


def test_fsdp_parameters_and_moments_are_sharded_as_the_rules_say():
    cfg = common.fsdp(tiny(attention="astro"))
    cfg.mesh.shape = (2, 4)
    _, graphdef, state = sharded_state(cfg)
    train = nnx.merge(graphdef, state)
    model, opt = train.model, train.optimizer
    checked = 0
    for tree in (nnx.state(model, nnx.Param), opt.opt_state):
        for path, var in jax.tree_util.tree_flatten_with_path(
                tree, is_leaf=lambda x: isinstance(x, nnx.Variable))[0]:
            if not isinstance(var, nnx.Variable) or var.get_metadata().get("out_sharding") is None:
                continue
            names = var.get_metadata()["out_sharding"]
            want = P(*("fsdp" if n == "embed" else None for n in names))
            got = var.get_value().sharding.spec
            assert tuple(got) + (None,) * (len(names) - len(got)) == tuple(want), (path, got)
            checked += 1
    assert checked > 10


def test_checkpoint_saved_on_8_device_fsdp_resumes_on_2_devices(tmp_path):
    full = common.fsdp(tiny(steps=6))
    assert train_and_evaluate(full, tmp_path / "run")["num_devices"] == 8
    ref = train_losses(tmp_path / "run")
    assert len(ref) == 6
    shutil.rmtree(Checkpointer.directory_in(tmp_path / "run") / "6")   # as if stopped after 4
    resumed = common.fsdp(tiny(steps=6))
    resumed.mesh.num_devices = 2
    summary = train_and_evaluate(resumed, tmp_path / "run")
    assert summary["num_devices"] == 2 and summary["step"] == 6
    got = train_losses(tmp_path / "run")
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


def test_fsdp_with_a_tensor_parallel_axis_matches_one_device_and_splits_heads(batches):
    cfg = tiny(attention="astro")
    ref = step_losses(cfg, batches, 1)
    tp = common.tensor_parallel(common.fsdp(tiny(attention="astro"), 4), 2)
    assert tuple(tp.mesh.axes) == ("data", "fsdp", "model")
    validate_config(tp, process_count=1)
    np.testing.assert_allclose(step_losses(tp, batches, 8), ref, rtol=0, atol=1e-5)

    model = nnx.merge(*sharded_state(tp)[1:]).model
    block = model.trunk.stack.blocks[0]
    assert block.attention.query.kernel[...].sharding.spec == P("fsdp", "model", None)
    assert block.ffn.up.kernel[...].sharding.spec == P("fsdp", "model")


@pytest.mark.parametrize(("names", "shape", "want"), [
    (("vocab", "embed"), (50_257, 512), P(None, "fsdp")),    # tied LM table: embed rule first
    (("vocab", None), (20_000, 300), P("fsdp", None)),        # IMDB's untied GloVe table
    (("embed", "heads", "kv"), (128, 4, 32), P("fsdp", "model", None)),
    (("embed", "heads", "kv"), (128, 3, 32), P("fsdp", None, None)),    # 3 heads: whole
    (("embed",), (12,), P(None)),                              # 12 % 8: replicated
    (("mlp", "embed"), (256, 128), P("model", "fsdp")),
    ((None, None), (4, 4), P(None, None)),
])
def test_parameter_spec_applies_rules_in_order_once_per_axis_where_they_divide(names, shape,
                                                                              want):

    rules = (("embed", "fsdp"), ("vocab", "fsdp"), ("heads", "model"), ("mlp", "model"))
    assert parameter_spec(names, shape, rules, {"data": 1, "fsdp": 8, "model": 2}) == want


def test_without_axes_drops_mesh_axes_from_a_spec():
    assert without_axes(P(("data", "fsdp"), "model"), ("fsdp",)) == P("data", "model")
    assert without_axes(P("fsdp", None), ("data", "fsdp")) == P(None, None)
    assert without_axes(P(("a", "b", "c")), ("b",)) == P(("a", "c"))


def test_parameter_spec_with_a_tuple_of_mesh_axes_needs_their_product_to_divide():

    sizes = {"data": 2, "fsdp": 4}
    rules = (("embed", ("data", "fsdp")),)
    assert parameter_spec(("embed", None), (16, 3), rules, sizes) == P(("data", "fsdp"), None)
    assert parameter_spec(("embed", None), (12, 3), rules, sizes) == P(None, None)


def test_a_checkpoint_of_two_processes_resumes_on_one_and_disagreeing_states_are_refused(
        tmp_path):
    cfg = tiny(steps=6)
    train_and_evaluate(cfg, tmp_path / "run")
    ref = train_losses(tmp_path / "run")
    shutil.rmtree(Checkpointer.directory_in(tmp_path / "run") / "6")
    # Make step 4 look saved by two processes (each wrote its own iterator file).
    folder = Checkpointer.directory_in(tmp_path / "run") / "4" / "data_iter"
    state = (folder / "process_0-of-1.json").read_text()
    (folder / "process_0-of-1.json").unlink()
    for i in range(2):
        (folder / f"process_{i}-of-2.json").write_text(state)
    summary = train_and_evaluate(tiny(steps=6), tmp_path / "run")
    assert summary["step"] == 6
    unreadable = Checkpointer.aside_of(Checkpointer.directory_in(tmp_path / "run"), "unreadable")
    assert not unreadable.exists()    # resumed from 4
    np.testing.assert_allclose(train_losses(tmp_path / "run"), ref, rtol=0, atol=1e-6)


    ckpt = Checkpointer(Checkpointer.directory_in(tmp_path / "run"), keep=2)
    (folder / "process_1-of-2.json").write_text(state.replace('"next_index": 4',
                                                              '"next_index": 5'))
    with pytest.raises(ValueError, match="do not agree"):
        ckpt._iterator_state(4)
    ckpt.close()


@pytest.mark.parametrize(("edit", "message"), [
    ({"shape": (3,)}, r"config\.mesh\.shape: expected a shape whose product is the 8 device"),
    ({"axes": ("data", "tp"), "shape": (4, 2)},
     r"config\.mesh\.axes: .*axis 'tp' \(size 2\) is used by none"),
    ({"rules": (("embed", "model"),)}, r"config\.mesh\.rules: expected rules whose mesh axes"),
    ({"rules": (("hidden", "data"),)}, r"config\.mesh\.rules: expected \(logical_name"),
    ({"axes": ("data", "fsdp"), "shape": (2, 4), "batch_axes": ("fsdp", "data"),
      "rules": (("embed", "fsdp"),)},
     r"config\.mesh\.batch_axes: expected axes listed in the order of config\.mesh\.axes"),
    ({"rules": (("embed", "data"), ("embed", "data"))},
     r"config\.mesh\.rules: expected each logical name in one rule"),
])
def test_bad_mesh_configs_fail_with_one_clear_error(edit, message):
    cfg = tiny()
    for k, v in edit.items():
        cfg.mesh[k] = v
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg, process_count=1)


def test_several_processes_need_every_process_in_the_mesh():
    cfg = tiny()
    cfg.train.data_parallel = False
    validate_config(cfg, process_count=1)
    with pytest.raises(ConfigError, match=r"config\.train\.data_parallel: expected True with 2 "
                                          r"processes"):
        validate_config(cfg, process_count=2)


def test_processes_that_replicate_the_batch_need_not_divide_it():
    # 2 processes x 4 devices, a model axis across them and data of size 1: both hold all 3 rows.
    cfg = common.tensor_parallel(tiny(), 8)
    cfg.mesh.shape = (1, 8)
    cfg.train.batch_size = 3
    validate_config(cfg, process_count=2)


def test_batch_not_divisible_by_the_data_axes_fails():
    cfg = common.fsdp(tiny())
    cfg.train.batch_size = 12
    with pytest.raises(ConfigError, match=r"config\.train\.batch_size: expected divisible by "
                                          r"the 8 devices the batch is split over"):
        validate_config(cfg, process_count=1)


def test_process_rows_read_from_the_batch_sharding():


    mesh = make_mesh(common.fsdp(tiny()).mesh, jax.devices())
    assert process_rows(NamedSharding(mesh, P(("data", "fsdp"))), 16) == (0, 16)

    class Stub:          # the slices another process's devices would hold
        def __init__(self, spans):
            self.spans = spans

        def addressable_devices_indices_map(self, shape):
            return {i: (slice(a, b),) for i, (a, b) in enumerate(self.spans)}

    assert process_rows(Stub([(8, 12), (12, 16)]), 16) == (8, 16)
    assert process_rows(Stub([(0, 8), (0, 8)]), 16) == (0, 8)    # replicated over a model axis
    assert process_rows(Stub([(None, None)]), 16) == (0, 16)    # batch not split at all
    with pytest.raises(ValueError, match="not one contiguous block"):
        process_rows(Stub([(0, 4), (8, 12)]), 16)
    with pytest.raises(ValueError, match="no device in the mesh"):
        process_rows(Stub([]), 16)


def test_to_global_puts_this_process_rows_of_a_batch_on_the_batch_sharding():
    mesh = make_mesh({"axes": ("data",), "shape": (-1,)}, jax.devices()[:4])
    sharding = batch_sharding(mesh, {"batch_axes": ("data",)})
    x = np.arange(16.0).reshape(8, 2)
    start, stop = process_rows(sharding, 8)          # one process: every row
    out = to_global({"x": x[start:stop]}, sharding, 8)["x"]
    assert out.sharding == sharding and out.shape == (8, 2)
    np.testing.assert_array_equal(out, x)
    assert [s.data.shape for s in out.addressable_shards] == [(2, 2)] * 4


def test_step_sharding_gathers_parameters_over_the_batch_axes_only():
    cfg = common.tensor_parallel(common.fsdp(tiny(attention="astro"), 4), 2)
    _, _, state = sharded_state(cfg)
    placement = StepSharding.gather_over(state, ("data", "fsdp"))
    in_use = {path: use for path, use, _ in placement.params}
    query = "['trunk']['stack']['blocks'][0]['attention']['query']['kernel'].value"
    up = "['trunk']['stack']['blocks'][0]['ffn']['up']['kernel'].value"
    assert in_use[query].spec == P(None, "model", None)    # fsdp gathered, heads stay split
    assert in_use[up].spec == P(None, "model")
    # Only parameters stored split over a batch axis are listed.
    stored = {jax.tree_util.keystr(p): leaf.sharding.spec for p, leaf in
              jax.tree_util.tree_flatten_with_path(nnx.filter_state(state.model, nnx.Param))[0]}
    assert set(in_use) == {k for k, spec in stored.items() if "fsdp" in jax.tree.leaves(
        tuple(spec))}


def test_a_gathered_parameter_is_used_whole_and_its_gradient_comes_back_sharded():


    mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(jax.sharding.AxisType.Auto,))
    stored, in_use = NamedSharding(mesh, P("fsdp", None)), NamedSharding(mesh, P())
    x = jax.device_put(np.arange(32.0, dtype=np.float32).reshape(16, 2), stored)

    def loss(w):
        used = _gather_for_use(w, in_use, stored)
        return (used ** 2).sum(), used

    (_, used), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(x)
    assert used.sharding.is_equivalent_to(in_use, 2)
    assert grad.sharding.is_equivalent_to(stored, 2)     # a plain constraint gives P() here
    np.testing.assert_array_equal(grad, 2 * np.asarray(x))


def test_gathering_fsdp_parameters_in_use_makes_lm_temporaries_fall_with_the_device_count():
    """Compiled memory, not time: a tied LM head whose [B, T, V] logits dominate."""

    cfg = common.fsdp(common.smoke(common.paper_config("wikitext2", "softmax", "w")))
    kw = {"vocab_size": 4096, "max_len": 64, "features": 32, "num_layers": 1, "num_heads": 2}
    tx = digits_tx()

    def temp_bytes(n, gather):
        mesh = make_mesh(cfg.mesh, jax.devices()[:n])
        graphdef, abstract = abstract_state("tiny_wikitext2", kw, tx, mesh, tuple(cfg.mesh.rules))
        bsh = batch_sharding(mesh, cfg.mesh)
        batch = {k: jax.ShapeDtypeStruct((16, 64), np.int32, sharding=bsh)
                 for k in ("inputs", "targets")}
        placement = StepSharding.gather_over(abstract, ("data", "fsdp")) if gather else None
        step = make_train_step(graphdef, task="lm", placement=placement,
                               shardings=state_shardings(abstract))
        return step.lower(abstract, batch).compile().memory_analysis().temp_size_in_bytes

    one = temp_bytes(1, True)
    logits = 16 * 64 * 4096 * 4
    assert one > 2 * logits                       # the logits and their gradient dominate
    assert temp_bytes(8, True) < one / 4
    assert temp_bytes(8, False) > one / 2         # GSPMD alone keeps full-batch logits
