"""LRA Retrieval (AAN document pairs as bytes), one config per variant: lra_retrieval_<variant>.

``python -m experiments.run --config=lra_retrieval_softmax`` (needs LRA's
``new_aan_pairs.{train,eval,test}.tsv`` under ``--config.data.data_dir``; docs/tasks.md).
LRA's recipe (its released ``base_match_config``): a two-tower encoder, 4 layers, width 128,
4 heads, MLP 512, CLS pooling, 4 000 bytes per document, batch 32, 5 000 steps, weight decay
0.1. LRA's ``rsqrt`` schedule with 8 000 warmup steps never leaves its warmup in 5 000 steps;
this config warms up for 1 000 steps to 5.6e-4 and decays by a cosine (astroflax's choice).
LRA: Transformer 57.46, Linear Trans. 53.09, Performer 53.82; RMAAT 83.2 (docs/tasks.md).
Not timed here (a GPU/TPU run).
"""

from experiments.configs import common

FAMILY = True


def get_config(arg: str | None = None):
    """``arg``: ``"<variant>"`` or ``"<variant>:smoke"``."""
    return common.family_config(
        "lra_retrieval", arg, data={"name": "lra_retrieval", "max_len": 4_000},
        model="lra_retrieval",
        train={"batch_size": 32, "num_train_steps": 5_000, "learning_rate": 5.6e-4,
               "warmup_steps": 1_000, "weight_decay": 0.1, "b2": 0.98,
               "log_every_steps": 100, "eval_every_steps": 500,
               "checkpoint_every_steps": 1_000})
