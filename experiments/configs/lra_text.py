"""LRA Text (IMDB as bytes, 4 000 per review), one config per variant: lra_text_<variant>.

``python -m experiments.run --config=lra_text_softmax`` (needs ``aclImdb_v1.tar.gz`` under
``--config.data.data_dir``; docs/tasks.md). LRA's recipe (its released ``base_tc_config``):
4 layers, width 256, 4 heads, MLP 1024, CLS pooling, batch 32, 20 000 steps, weight decay 0.1;
LRA's ``rsqrt`` schedule (peak 0.05/sqrt(8000) ≈ 5.6e-4 after 8 000 warmup steps) is replaced
by the same warmup and peak with a cosine decay (astroflax has no rsqrt schedule). LRA's
released config reads 1 000 bytes; its paper and this config 4 000.
LRA: Transformer 64.27, Linear Trans. 65.90, Performer 65.40; RMAAT 65.9 (docs/tasks.md).
Not timed here (a GPU/TPU run).
"""

from experiments.configs import common

FAMILY = True


def get_config(arg: str | None = None):
    """``arg``: ``"<variant>"`` or ``"<variant>:smoke"``."""
    return common.family_config(
        "lra_text", arg, data={"name": "lra_text", "max_len": 4_000}, model="lra_text",
        train={"batch_size": 32, "num_train_steps": 20_000, "learning_rate": 5.6e-4,
               "warmup_steps": 8_000, "weight_decay": 0.1, "b2": 0.98,
               "log_every_steps": 100, "eval_every_steps": 1_000,
               "checkpoint_every_steps": 2_000})
