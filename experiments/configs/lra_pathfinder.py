"""LRA Pathfinder-32 (1 024 pixel tokens), one config per variant: lra_pathfinder_<variant>.

``python -m experiments.run --config=lra_pathfinder_softmax`` (needs LRA's
``pathfinder32/curv_contour_length_14`` under ``--config.data.data_dir``; docs/tasks.md).
LRA's recipe (its released ``pathfinder32`` configs): 4 layers, width 32, 4 heads, MLP 32,
dropout 0.2, learned positions, mean pooling, batch 512, 200 epochs, peak 1e-3 with a cosine
decay. LRA: Transformer 71.40, Linear Trans. 75.30, Performer 77.05; RMAAT 87.1
(docs/tasks.md). Not timed here (a GPU/TPU run).
"""

from experiments.configs import common

FAMILY = True


def get_config(arg: str | None = None):
    """``arg``: ``"<variant>"`` or ``"<variant>:smoke"``."""
    return common.family_config(
        "lra_pathfinder", arg, data={"name": "lra_pathfinder"}, model="lra_pathfinder",
        train={"batch_size": 512, "num_epochs": 200.0, "learning_rate": 1e-3,
               "warmup_steps": 312, "weight_decay": 0.0, "log_every_steps": 100,
               "checkpoint_every_steps": 2_000})
