import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from astroflax.train import ConfigError, validate_config
from astroflax.train.config import model_overrides
from astroflax.train.steps import create_train_state, eval_step, make_schedule, make_train_step
from experiments.configs import common


def smoke_config():
    return common.digits_config("astro", "digits_astro", "smoke")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("model.alpha", -0.5, r"config\.model\.alpha: expected > 0"),
    ("model.m_div", "0", r"config\.model\.m_div: expected one of 'paper', 'm', a positive"),
    ("model.m_div", "500E", r"config\.model\.m_div: expected one of .*'500D'"),
    ("model.pos_embedding", "auto", r"config\.model\.pos_embedding: expected one of"),
    # A token-model setting, so checked on a token model (a ViT takes no embed_scale at all).
    ("model.embed_scale", "two", r"config\.model\.embed_scale: expected one of"),
    ("model.name", "paper_mnist", r"config\.model\.name: expected one of"),
    ("model.attention", "flash", r"config\.model\.attention: expected one of"),
    ("train.batch_size", 12, r"config\.train\.batch_size: expected divisible by the 8 devices"),
    ("train.learning_rate", -1.0, r"config\.train\.learning_rate"),
    ("train.schedule", "linear", r"config\.train\.schedule"),
    ("data.name", "mnist", r"config\.data\.name"),
    ("model.implementation", "triton", r"config\.model\.implementation: expected one of"),
    ("model.implementation", "pallas", r"config\.model\.implementation: expected 'xla' on a "
                                       r"'cpu' backend"),
])
def test_invalid_values_fail_naming_the_field(field, value, message):
    cfg = (common.paper_config("imdb", "astro", "imdb_astro", "smoke")
           if field == "model.embed_scale" else smoke_config())
    section, key = field.split(".")
    cfg[section][key] = value
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg, num_devices=8, process_count=1)


def test_a_keyword_the_model_does_not_take_is_named():
    cfg = smoke_config()
    cfg.model.embed_dim = 8                     # a text-model keyword on a ViT preset
    with pytest.raises(ConfigError, match=r"config\.model: .*embed_dim"):
        validate_config(cfg, num_devices=1, process_count=1)


def test_augmenting_a_text_dataset_is_rejected():
    cfg = common.paper_config("imdb", "astro", "imdb_astro", "smoke")
    cfg.data.augment = True
    with pytest.raises(ConfigError, match=r"config\.data\.augment: expected False for text"):
        validate_config(cfg, num_devices=1, process_count=1)


def test_alpha_on_softmax_is_rejected():
    cfg = common.digits_config("softmax", "digits_softmax", "smoke")
    cfg.model.alpha = 0.5
    with pytest.raises(ConfigError, match=r"config\.model\.alpha: expected unset"):
        validate_config(cfg, num_devices=1, process_count=1)


def test_data_fixed_values_fill_in_and_contradictions_fail():
    cfg = smoke_config()
    kw = model_overrides(cfg.model, {"image_size": 8, "in_channels": 1})
    assert kw["image_size"] == 8 and kw["patch_size"] == 2 and "alpha" not in kw
    cfg.model.alpha = 0.5
    assert model_overrides(cfg.model)["alpha"] == 0.5
    assert "m_div" not in model_overrides(cfg.model)  # "paper": the variant's own rule
    cfg.model.m_div = "2D"
    assert model_overrides(cfg.model)["m_div"] == "2D"
    with pytest.raises(ConfigError, match=r"config\.model\.patch_size: 2 contradicts"):
        model_overrides(cfg.model, {"patch_size": 4})


def test_locked_config_rejects_a_mistyped_override():
    cfg = smoke_config()
    cfg.lock()
    with pytest.raises(AttributeError):
        cfg.train.learnin_rate = 1.0


def test_warmup_cosine_schedule_matches_the_formula():
    s = make_schedule(learning_rate=1.0, schedule="cosine", warmup_steps=4, total_steps=14)
    assert float(s(0)) == 0.0 and float(s(2)) == pytest.approx(0.5)
    for step in (4, 7, 9, 14):
        expected = 0.5 * (1 + math.cos(math.pi * (step - 4) / 10))
        assert float(s(step)) == pytest.approx(expected, abs=1e-6)
    c = make_schedule(learning_rate=0.3, schedule="constant", warmup_steps=0, total_steps=10)
    assert float(c(0)) == pytest.approx(0.3) and float(c(9)) == pytest.approx(0.3)


@nnx.jit
def forward(model, x):
    return model(jnp.asarray(x))[0]


def np_log_softmax(logits):
    """The numpy reference: ``logits - log(sum(exp(logits)))`` over the last axis."""
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def _tiny_classifier():
    kw = {"image_size": 4, "in_channels": 1, "patch_size": 2, "num_classes": 3,
          "features": 8, "num_layers": 1, "num_heads": 2, "attention": "astro"}
    return create_train_state("tiny_cifar10", kw, optax.sgd(0.1), seed=0)


def test_train_step_loss_is_the_mean_cross_entropy_and_applies_sgd():
    graphdef, state = _tiny_classifier()
    rng = np.random.default_rng(0)
    batch = {"inputs": rng.random((6, 4, 4, 1), dtype=np.float32),
             "label": rng.integers(0, 3, 6).astype(np.int32)}
    model = nnx.merge(graphdef, state).model
    logits = np.asarray(forward(model, batch["inputs"]), np.float64)
    logp = np_log_softmax(logits)
    expected_loss = -logp[np.arange(6), batch["label"]].mean()
    params_before = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))

    def loss_of(m):
        lg = m(jnp.asarray(batch["inputs"]))[0]
        return optax.softmax_cross_entropy_with_integer_labels(lg, batch["label"]).mean()

    grads = nnx.jit(nnx.grad(loss_of))(model)       # jitted: eager grads compile op by op
    new_state, metrics = make_train_step(graphdef, task="classification")(state, batch)
    assert float(metrics["loss"]) == pytest.approx(expected_loss, rel=1e-5)
    new_model = nnx.merge(graphdef, new_state).model
    after = jax.tree.map(np.asarray, nnx.state(new_model, nnx.Param))
    for b, g, a in zip(jax.tree.leaves(params_before), jax.tree.leaves(grads),
                       jax.tree.leaves(after), strict=True):
        np.testing.assert_allclose(a, b - 0.1 * np.asarray(g), rtol=1e-5, atol=1e-6)


def test_eval_step_sums_ignore_zero_weight_rows():
    graphdef, state = _tiny_classifier()
    rng = np.random.default_rng(1)
    x = rng.random((4, 4, 4, 1), dtype=np.float32)
    y = np.array([0, 1, 2, 1], np.int32)
    model = nnx.merge(graphdef, state).model
    logits = np.asarray(forward(model, x), np.float64)
    nll = -np_log_softmax(logits)[np.arange(4), y]
    correct = (logits.argmax(-1) == y).astype(np.float64)
    w = np.array([1, 1, 1, 0], np.float32)
    out = eval_step(graphdef, state, {"inputs": x, "label": y, "weight": w},
                    task="classification")
    assert float(out["count"]) == 3
    assert float(out["nll"]) == pytest.approx(nll[:3].sum(), rel=1e-5)
    assert float(out["correct"]) == correct[:3].sum()


def test_lm_eval_counts_tokens_and_its_nll_matches_numpy():
    kw = {"vocab_size": 11, "max_len": 6, "features": 8, "num_layers": 1, "num_heads": 2}
    graphdef, state = create_train_state("tiny_wikitext2", kw, optax.sgd(0.1), seed=0)
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, 11, (2, 7)).astype(np.int32)
    batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
             "weight": np.ones((2,), np.float32)}
    model = nnx.merge(graphdef, state).model
    logits = np.asarray(forward(model, batch["inputs"]), np.float64)
    logp = np_log_softmax(logits)
    nll = -np.take_along_axis(logp, batch["targets"][..., None], -1).sum()
    out = eval_step(graphdef, state, batch, task="lm")
    assert float(out["count"]) == 12
    assert float(out["nll"]) == pytest.approx(nll, rel=1e-5)


def test_progress_line_and_durations():
    from astroflax.train.metrics import format_duration, progress_line

    assert format_duration(3725) == "1h02m05s" and format_duration(65) == "1m05s"
    assert format_duration(5.2) == "5s"
    assert progress_line(120, 2000, 3.4, 0.41234, 850.0, 133) == (
        "step 120/2000 (6%) | epoch 3.40 | loss 0.4123 | 850 ex/s | ETA 2m13s")
    assert "- ex/s | ETA -" in progress_line(1, 10, 0.1, 2.0, 0.0, 0.0)
