"""ListOps as LRA generates it (500-2000 tokens), one config per variant: listops_<variant>.

``python -m experiments.run --config=listops_softmax`` (any variant of ``astroflax.nn.VARIANTS``;
``:smoke`` for seconds). The data is generated once (about 2 minutes on 2 cores, 636 MB) into
``~/astroflax_data/`` or ``--config.data.data_dir`` (a folder of LRA's released
``basic_*.tsv`` is read as it is); tokens as S4 (``]`` -> ``X``, no parentheses). LRA's recipe
(its released ``base_listops_config``): 6 layers, width 512, 8 heads, MLP 2048, CLS pooling,
batch 32, 5 000 steps, Adam (0.9, 0.98), weight decay 0.1; LRA's ``rsqrt`` schedule (peak
≈1.58e-3 after 1 000 warmup steps) is replaced by the same warmup and peak with a cosine
decay. Majority class 17.3 % of test. LRA: Transformer 36.37, Linear Trans. 16.13, Performer
18.01; RMAAT 38.9 (docs/tasks.md). Not timed here (a GPU/TPU run).
"""

from experiments.configs import common

FAMILY = True


def get_config(arg: str | None = None):
    """``arg``: ``"<variant>"`` or ``"<variant>:smoke"``."""
    return common.family_config(
        "listops", arg, data={"name": "listops", "listops_tier": "lra"}, model="lra_listops",
        train={"batch_size": 32, "num_train_steps": 5_000, "learning_rate": 1.58e-3,
               "warmup_steps": 1_000, "weight_decay": 0.1, "b2": 0.98,
               "log_every_steps": 50, "eval_every_steps": 250,
               "checkpoint_every_steps": 1_000, "target_accuracy": 0.3})
