"""config.model's fields come from their declarations: the spec's fields and the constructors'."""

import dataclasses
import inspect

import pytest

from astroflax.models import (
    PRESETS,
    SETTINGS,
    check_model,
    create_model,
    keeps_preset,
)
from astroflax.models.settings import MODEL_CLASSES, docstring_args
from astroflax.nn import AttentionSpec
from experiments.configs import common


def test_every_spec_field_and_constructor_keyword_is_a_setting_with_its_declared_help():
    for f in dataclasses.fields(AttentionSpec):
        if f.name in ("kernel", "name"):
            assert f.name == "name" or f.name not in SETTINGS     # chosen by `attention`
            continue
        assert SETTINGS[f.name].help == f.metadata["help"] and SETTINGS[f.name].source == "spec"
    for cls in MODEL_CLASSES:
        for p, param in inspect.signature(cls.__init__).parameters.items():
            if p in ("self", "rngs", "dtype", "param_dtype") or param.kind is param.VAR_KEYWORD:
                continue
            assert p in SETTINGS and SETTINGS[p].help, (cls.__name__, p)
    assert {cls for cls, _, _ in PRESETS.values()} <= set(MODEL_CLASSES)


def test_the_config_model_section_is_the_settings_at_their_keep_the_preset_values():
    model = common.base_config("x").model
    assert sorted(model) == sorted(SETTINGS)      # ConfigDict iterates its keys sorted
    assert model.m_div == "paper" and model.pos_embedding == "paper"
    assert model.attention == "astro" and model.name == "tiny_cifar10"
    assert all(model[k] is None for k in SETTINGS
               if k not in ("m_div", "pos_embedding", "attention", "name"))
    assert keeps_preset("m_div", None) and keeps_preset("m_div", "paper")
    assert not keeps_preset("m_div", "m") and not keeps_preset("embed_scale", "sqrt_d")


def test_docstring_args_reads_one_entry_per_name_and_skips_references():
    def f(a, b, c, d):
        """Does it.

        Args:
          a: the first. Details follow
            on a second line.
          b, c: shared text (with a. dot inside brackets). More.
          d: as in ``g``.

        Returns:
          nothing.
        """
    assert docstring_args(f) == {"a": "the first", "b": "shared text (with a. dot inside "
                                 "brackets)", "c": "shared text (with a. dot inside brackets)"}


@pytest.mark.parametrize("overrides, message", [
    ({"alpha": -1.0}, r"^alpha: expected > 0"),
    ({"dropout": 1.5}, r"^dropout: expected a rate in \[0, 1\)"),
    ({"features": 0}, r"^features: expected a positive int"),
    ({"pos_embedding": "auto"}, r"^pos_embedding: expected one of"),
    ({"attention": "softmax", "alpha": 0.5}, r"^alpha: expected unset for attention='softmax'"),
])
def test_check_model_raises_what_building_the_model_raises(overrides, message):
    with pytest.raises(ValueError, match=message):
        check_model("tiny_cifar10", **overrides)
    with pytest.raises(ValueError, match=message):     # the reference: actually building it
        create_model("tiny_cifar10", **overrides)
    check_model("tiny_cifar10", alpha=0.5)              # a good value passes
