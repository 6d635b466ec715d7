"""MQAR (multi-query associative recall, Zoology), one config per variant: mqar_<variant>.

``python -m experiments.run --config=mqar_softmax`` (any variant of ``astroflax.nn.VARIANTS``,
``:smoke`` for seconds). Zoology's model (2 layers, no MLP, learned positions, width 64, one
head) on the CPU setting V = 256, L = 64, K = 4 (20 000 / 1 000 examples; docs/tasks.md);
the paper's grid is ``--config.data.vocab_size=8192 --config.data.max_len=L
--config.data.num_pairs=K --config.data.num_train=100000 --config.data.num_eval=3000`` with
(L, K) in (64, 4), (128, 8), (256, 16), (512, 64). The metric is accuracy over the K queried
positions (chance 1/K). Expected: softmax attention 0.999 at (64, 4) after ~1 500 steps on a
2-core CPU; Zoology reports ≈0.98 for attention at every width of its grid.
"""

from experiments.configs import common

FAMILY = True


def get_config(arg: str | None = None):
    """``arg``: ``"<variant>"`` or ``"<variant>:smoke"``."""
    return common.family_config(
        "mqar", arg, model="mqar",
        data={"name": "mqar", "vocab_size": 256, "max_len": 64, "num_pairs": 4,
              "num_train": 20_000, "num_eval": 1_000},
        train={"batch_size": 64, "num_train_steps": 3_000, "learning_rate": 3e-3,
               "schedule": "cosine", "warmup_steps": 100, "weight_decay": 0.1,
               "log_every_steps": 100, "eval_every_steps": 250,
               "checkpoint_every_steps": 1_000, "target_accuracy": 0.99})
