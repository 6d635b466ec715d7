"""load_model / experiments.evaluate / experiments.generate on real smoke runs (one per task)."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from astroflax.train import train_and_evaluate
from astroflax.train.checkpoint import Checkpointer, CorruptCheckpointError
from astroflax.train.load import load_model, load_run, resolve_step
from astroflax.train.metrics import read_metrics
from experiments import evaluate, generate
from experiments.configs import digits_astro, wikitext2_astro
from experiments.configs.common import fsdp
from tests.helpers import REPO, assert_close

#: One sampling setting for every test, so the decoder compiles once for it.
_SAMPLED = {"temperature": 0.8, "top_k": 5, "seed": 3}

# A small WikiText-shaped corpus: 40 words in 400 lines, so the smoke run's 64 windows of 16
# tokens come from the training split and the word vocabulary (cap 200) holds every word.
_WORDS = [f"w{i}" for i in range(40)]


def _write_corpus(root):
    rng = np.random.default_rng(0)
    for name, n in (("wiki.train.raw", 400), ("wiki.valid.raw", 60), ("wiki.test.raw", 60)):
        lines = [" " + " ".join(rng.choice(_WORDS, 8)) + " . \n" for _ in range(n)]
        (root / name).write_text("".join(lines), encoding="utf-8")


def _single_device(cfg):
    cfg.mesh.num_devices = 1      # one compile for one device: the fixtures stay short
    return cfg


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    data = tmp_path_factory.mktemp("wikitext")
    _write_corpus(data)
    cfg = _single_device(wikitext2_astro.get_config("smoke"))
    cfg.data.data_dir = str(data)
    workdir = tmp_path_factory.mktemp("lm_run")
    train_and_evaluate(cfg, workdir)
    return workdir


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("digits_run")
    # FSDP rules in its config: the 8-device evaluation below restores parameters sharded.
    cfg = fsdp(_single_device(digits_astro.get_config("smoke")))
    train_and_evaluate(cfg, workdir)
    return workdir


def _param_sha256(model):
    """SHA-256 over (path, raw bytes) of every parameter: the run's params_sha256 recipe."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]:
        h.update(jax.tree_util.keystr(path).encode())
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()


def _eval_records(workdir):
    return {r["step"]: r for r in read_metrics(workdir / "metrics.jsonl") if "eval_loss" in r}


def test_load_model_at_the_latest_step_has_the_final_parameters_bitwise(lm_run, digits_run):
    for workdir in (lm_run, digits_run):
        summary = json.loads((workdir / "summary.json").read_text())
        model = load_model(workdir, "latest")
        assert _param_sha256(model) == summary["params_sha256"]


def test_a_model_that_does_not_match_its_saved_fingerprint_is_refused(digits_run, tmp_path):
    # The same run with the model fingerprint of the step-6 checkpoint altered, as when the
    # parameter files were damaged after the write: loading that step must refuse, the
    # other step still loads.
    copy = tmp_path / "run"
    shutil.copytree(digits_run, copy)
    meta_file = Checkpointer.directory_in(copy) / "6" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    assert len(meta["model_sha256"]) == 64
    meta["model_sha256"] = "0" * 64
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CorruptCheckpointError, match=r"checkpoints/6 is unusable.*fingerprint"):
        load_model(copy, "latest")
    assert load_run(copy, 3).step == 3


def test_best_is_the_summary_best_step_and_latest_the_last_step(digits_run, lm_run):
    for workdir in (digits_run, lm_run):
        summary = json.loads((workdir / "summary.json").read_text())
        assert resolve_step(workdir, "best") == summary["best"]["step"]
        assert resolve_step(workdir, None) == summary["best"]["step"]
        assert resolve_step(workdir, "latest") == summary["step"] == 6
        assert resolve_step(workdir, "3") == 3
        with pytest.raises(ValueError, match=r"there are \[3, 6\]"):
            resolve_step(workdir, 4)
        with pytest.raises(ValueError, match="'best', 'latest' or a step number"):
            resolve_step(workdir, "newest")


def test_a_directory_without_a_run_says_what_workdir_must_be(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_model(tmp_path)


@pytest.mark.parametrize("which", ["digits", "lm"])
def test_evaluate_reproduces_the_runs_own_eval_metrics_at_each_checkpoint(which, digits_run,
                                                                          lm_run):
    workdir = digits_run if which == "digits" else lm_run
    logged = _eval_records(workdir)
    for step in (3, 6):
        record = evaluate.evaluate_workdir(workdir, "test", step)
        keys = [k for k in logged[step] if k.startswith("eval_")]
        assert keys and set(keys) <= set(record)
        for k in keys:
            assert_close(record[k], logged[step][k], rtol=1e-6, name=k)
        written = json.loads((workdir / f"eval_test_{step}.json").read_text())
        assert written == json.loads(json.dumps(record))
        assert written["num_examples"] == 32 and written["step"] == step


def test_evaluate_on_the_runs_fsdp_mesh_over_8_devices_matches_its_metrics(digits_run):
    from astroflax.train.config import mesh_config
    from astroflax.train.load import read_config
    from astroflax.train.mesh import make_mesh

    mesh = make_mesh(mesh_config(read_config(digits_run)), jax.devices()[:8])
    run = evaluate.load_split(digits_run, "test", 6, mesh)
    specs = [leaf.sharding.spec for leaf in jax.tree.leaves(nnx.state(run.model, nnx.Param))]
    assert any("fsdp" in jax.tree.leaves(tuple(s)) for s in specs)     # really sharded
    metrics = evaluate.evaluate(run)
    logged = _eval_records(digits_run)[6]
    assert_close(metrics["eval_loss"], logged["eval_loss"], rtol=1e-6)
    assert metrics["eval_accuracy"] == logged["eval_accuracy"]


def test_a_run_mesh_that_does_not_fit_the_devices_here_points_to_one_device(digits_run, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(digits_run, workdir)
    cfg = json.loads((workdir / "config.json").read_text())
    cfg["mesh"].update(axes=["data", "model"], shape=[-1, 16], num_devices=None)  # 8 here
    (workdir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="--mesh=single"):
        evaluate.evaluate_workdir(workdir, "test", 6)
    record = evaluate.evaluate_workdir(workdir, "test", 6, mesh="single")
    assert record["num_devices"] == 1
    assert_close(record["eval_loss"], _eval_records(digits_run)[6]["eval_loss"], rtol=1e-6)


def test_evaluate_on_the_train_split_scores_the_training_examples(digits_run):
    run = evaluate.load_split(digits_run, "train", "latest")
    assert run.dataset.num_eval == run.dataset.num_train == 64
    metrics = evaluate.evaluate(run)
    # Independent reference: the model's logits on all 64 training images at once.
    x = np.stack([run.dataset.train[i]["inputs"] for i in range(64)])
    y = np.array([run.dataset.train[i]["label"] for i in range(64)])
    logits = np.asarray(run.model(x)[0], np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert_close(metrics["eval_loss"], -logp[np.arange(64), y].mean(), rtol=1e-5)
    assert metrics["eval_accuracy"] == float((logits.argmax(1) == y).mean())


def test_evaluate_names_the_splits_a_dataset_has(digits_run):
    with pytest.raises(ValueError, match="use --split=train or --split=test"):
        evaluate.load_split(digits_run, "validation", "latest")


def test_streamed_tokens_are_those_of_astrolm_generate_greedy_and_sampled(lm_run):
    model = load_model(lm_run)
    prompt = [3, 7, 11, 5]
    for kw in ({}, dict(_SAMPLED)):
        streamed = list(generate.stream_tokens(model, prompt, 9, **kw))
        seed = kw.pop("seed", 0)
        ref = model.generate(jax.numpy.asarray([prompt], jax.numpy.int32), 9,
                             rng=jax.random.key(seed), **kw)
        assert streamed == np.asarray(ref)[0, len(prompt):].tolist()


def test_streamed_tokens_match_generate_for_the_softmax_kv_cache_decoder():
    from astroflax.models import create_model

    model = create_model("tiny_wikitext2", attention="softmax", rngs=nnx.Rngs(1))
    model.eval()
    prompt = [4, 8, 15]
    ref = model.generate(jax.numpy.asarray([prompt], jax.numpy.int32), 4)
    assert list(generate.stream_tokens(model, prompt, 4)) == np.asarray(ref)[0, 3:].tolist()


def test_generate_text_streams_each_token_through_the_word_vocabulary(lm_run):
    class Recorder(io.StringIO):
        def __init__(self):
            super().__init__()
            self.writes = []

        def write(self, s):
            self.writes.append(s)
            return super().write(s)

    out = Recorder()
    text = generate.generate_text(lm_run, "w1 w2 nonsense", 8, out=out, **_SAMPLED)
    # The prompt, one write per token, the decoder's final flush (empty), then a newline.
    assert out.writes[0] == "w1 w2 nonsense" and len(out.writes) == 1 + 8 + 2
    assert out.writes[-2:] == ["", "\n"]
    pieces = out.writes[1:9]
    assert "".join(pieces) == text
    assert all(p == "\n" or (p.startswith(" ") and p[1:] in {*_WORDS, ".", "<unk>"})
               for p in pieces)
    tok = generate.run_tokenizer(load_run(lm_run))
    eos, unk = 0, 1                            # word-level WikiText specials come first
    assert tok.encode("w1 w2 nonsense")[2] == unk and tok.decode([eos]) == "\n"
    assert tok.decode(tok.encode("w3 w4 .")) == " w3 w4 ."


def test_generate_refuses_classifiers_and_prompts_past_max_len(digits_run, lm_run):
    with pytest.raises(ValueError, match="generate needs a language model"):
        generate.generate_text(digits_run, "hello", 3, out=io.StringIO())
    with pytest.raises(ValueError, match="max_len=16"):
        generate.generate_text(lm_run, "w1 " * 10, 7, out=io.StringIO())
    with pytest.raises(ValueError, match="no tokens"):
        generate.generate_text(lm_run, "   ", 3, out=io.StringIO())


def test_the_commands_print_and_write_their_results(lm_run):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ev = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"--workdir={lm_run}",
                         "--split=validation", "--step=latest"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr[-2000:]
    record = json.loads(ev.stdout)
    assert record["split"] == "validation" and record["step"] == 6
    assert (lm_run / "eval_validation_6.json").is_file()
    gen = subprocess.run([sys.executable, "-m", "experiments.generate", f"--workdir={lm_run}",
                          "--prompt=w1 w2", "--max_new_tokens=5", "--temperature=0.8",
                          "--top_k=5", "--seed=3"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr[-2000:]
    text = generate.generate_text(lm_run, "w1 w2", 5, out=io.StringIO(), **_SAMPLED)
    assert gen.stdout == "w1 w2" + text + "\n"


def test_write_stream_prints_a_character_split_over_tokens_once_complete():
    out = io.StringIO()
    writes = []
    out.write = lambda s: writes.append(s) or len(s)
    # "café ☕": é is 2 bytes and ☕ 3 bytes, each split over BPE-like pieces; then a cut byte.
    pieces = [b"caf", b"\xc3", b"\xa9 ", b"\xe2\x98", b"\x95", b"\xe2"]
    assert generate.write_stream(pieces, out) == "café ☕\ufffd"
    assert writes == ["caf", "", "é ", "", "☕", "", "\ufffd"]   # the last: final flush


def test_sample_token_is_argmax_when_greedy_and_stays_within_the_top_k_when_sampling():
    from astroflax.models.lm import sample_token

    logits = jax.numpy.asarray([[0.1, 2.0, -1.0, 1.5, 0.0], [3.0, -2.0, 0.5, 2.9, 1.0]])
    top2 = [{1, 3}, {0, 3}]  # by hand: the two largest logits of each row
    temperature = jax.numpy.asarray(1.0)
    greedy = sample_token(logits, jax.random.key(0), temperature, top_k=None, greedy=True)
    assert greedy.dtype == jax.numpy.int32 and greedy.tolist() == [1, 0]
    seen: list[set[int]] = [set(), set()]
    for seed in range(40):
        key = jax.random.key(seed)
        assert sample_token(logits, key, temperature, top_k=1, greedy=False).tolist() == [1, 0]
        for row, token in enumerate(sample_token(logits, key, temperature, top_k=2,
                                                 greedy=False).tolist()):
            seen[row].add(token)
    # 40 draws from two tokens of probability >= 0.38 each: both turn up, nothing else does.
    assert seen == top2
    cold = sample_token(logits, jax.random.key(1), jax.numpy.asarray(1e-3), top_k=None,
                        greedy=False)
    assert cold.tolist() == [1, 0]


@pytest.mark.parametrize("task", ["lm", "classification"])
def test_summed_eval_metrics_sums_the_batches_before_dividing(task):
    from astroflax.train.evaluation import summed_eval_metrics

    batches = [{"nll": 6.0, "correct": 3.0, "count": 4.0}, {"nll": 1.0, "correct": 0.0,
                                                          "count": 1.0}]
    metrics = summed_eval_metrics(({k: jax.numpy.asarray(v) for k, v in b.items()}
                                   for b in batches), task)
    # By hand: 7 nats over 5 examples (not the mean of the batch means, 1.25), 3 of 5 right.
    assert metrics["eval_loss"] == pytest.approx(7.0 / 5.0)
    if task == "lm":
        assert metrics["eval_perplexity"] == pytest.approx(np.exp(1.4))
        assert metrics["eval_token_accuracy"] == pytest.approx(0.6)
    else:
        assert metrics == pytest.approx({"eval_loss": 1.4, "eval_accuracy": 0.6})
