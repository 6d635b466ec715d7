"""The long-range and recall configs: families (one module per task, every variant), ListOps
and MQAR end to end at smoke size."""

import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from astroflax.data import load_dataset
from astroflax.nn import VARIANTS
from astroflax.train import train_and_evaluate, validate_config
from astroflax.train.config import model_overrides
from astroflax.train.steps import abstract_state, make_train_step
from astroflax.train.tasks import for_dataset
from experiments import run
from tests.helpers import REPO

CONFIGS = REPO / "experiments" / "configs"
FAMILIES = ("listops", "listops_cpu", "lra_image", "lra_pathfinder", "lra_retrieval",
            "lra_text", "mqar")


def test_the_families_are_found_and_names_resolve_to_them_longest_prefix_first():
    assert tuple(run.config_families()) == FAMILIES
    assert run.resolve_config_arg("listops_softmax") == f"{CONFIGS / 'listops.py'}:softmax"
    assert run.resolve_config_arg("listops_cpu_astro_no_pe:smoke") == (
        f"{CONFIGS / 'listops_cpu.py'}:astro_no_pe:smoke")
    assert run.resolve_config_arg("mqar_none") == f"{CONFIGS / 'mqar.py'}:none"
    # A single config keeps its own file; an unknown name lists the configs with the families.
    assert run.resolve_config_arg("digits_astro") == str(CONFIGS / "digits_astro.py")
    with pytest.raises(SystemExit, match=r"listops_<variant>"):
        run.resolve_config_arg("listop_softmax")
    mod = importlib.import_module("experiments.configs.mqar")
    with pytest.raises(ValueError, match=r"config variant 'flash': expected one of"):
        mod.get_config("flash")
    with pytest.raises(ValueError, match="smoke"):
        mod.get_config("softmax:huge")


@pytest.mark.parametrize("family", FAMILIES)
def test_every_variant_of_every_family_validates_full_and_smoke(family):
    mod = importlib.import_module(f"experiments.configs.{family}")
    assert f"python -m experiments.run --config={family}_softmax" in mod.__doc__
    for variant in VARIANTS:
        full = mod.get_config(variant)
        assert full.name == f"{family}_{variant}" and full.model.attention == variant
        validate_config(full, num_devices=1, process_count=1)
        smoke = mod.get_config(f"{variant}:smoke")
        validate_config(smoke, num_devices=8, process_count=1)
        assert smoke.train.num_train_steps <= 10 and smoke.data.num_train <= 64


@pytest.mark.parametrize("family", ["listops_cpu", "mqar"])
def test_every_variant_traces_its_train_step_on_the_smoke_data(family, tmp_path):
    # The train step (loss, gradient, AdamW update) of each variant's smoke model on a batch
    # of the task's data, traced abstractly (no compile): a shape or dtype error in any
    # variant's path shows. One variant per task also runs end to end (below).
    mod = importlib.import_module(f"experiments.configs.{family}")
    cfg = mod.get_config("softmax:smoke")
    cfg.data.data_dir = str(tmp_path)
    ds = load_dataset(cfg.data.to_dict())
    task = for_dataset(ds)
    batch = {k: jnp.asarray(np.stack([ds.train[i][k] for i in range(4)]))
             for k in ds.train[0]}
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    for variant in VARIANTS:
        cfg = mod.get_config(f"{variant}:smoke")
        kw = model_overrides(cfg.model, ds.model_overrides)
        graphdef, state = abstract_state(cfg.model.name, kw, optax.adamw(1e-3), mesh)
        new_state, metrics = jax.eval_shape(make_train_step(graphdef, task=task), state, batch)
        assert jax.tree.structure(new_state) == jax.tree.structure(state), variant
        assert metrics["loss"].shape == () and metrics["loss"].dtype == jnp.float32, variant


@pytest.mark.parametrize("family, arg", [("listops_cpu", "astro:smoke"),
                                         ("mqar", "softmax:smoke")])
def test_listops_and_mqar_train_end_to_end_at_smoke_size(family, arg, tmp_path):
    cfg = importlib.import_module(f"experiments.configs.{family}").get_config(arg)
    cfg.data.data_dir = str(tmp_path / "data")
    summary = train_and_evaluate(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["step"] == 6
    final = summary["final"]
    assert 0.0 <= final["eval_accuracy"] <= 1.0 and np.isfinite(final["eval_loss"])
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["params_sha256"] == summary["params_sha256"]


def test_lra_retrieval_trains_its_two_tower_model_end_to_end_on_files_in_the_release_layout(
        tmp_path):
    # Document pairs [B, 2, L] through the pipeline, the classification task and the pair
    # model; the files follow LRA's new_aan_pairs.*.tsv layout (label, id1, id2, text1, text2).
    rng = np.random.default_rng(0)
    folder = tmp_path / "lra_release" / "tsv_data"
    folder.mkdir(parents=True)
    for split, n in (("train", 16), ("eval", 8), ("test", 8)):
        rows = [f"{i % 2}\tA{i}\tB{i}\t{'x' * int(rng.integers(1, 30))}\t"
                f"{'y' * int(rng.integers(1, 30))}\n" for i in range(n)]
        (folder / f"new_aan_pairs.{split}.tsv").write_text("".join(rows))
    cfg = importlib.import_module("experiments.configs.lra_retrieval").get_config(
        "linear:smoke")
    cfg.data.update({"data_dir": str(tmp_path), "max_len": 32})
    cfg.train.update({"batch_size": 8, "num_train_steps": 2, "eval_every_steps": 2,
                      "checkpoint_every_steps": 2})
    summary = train_and_evaluate(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["step"] == 2
    assert 0.0 <= summary["final"]["eval_accuracy"] <= 1.0
