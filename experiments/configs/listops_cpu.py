"""ListOps, CPU tier (50-256 tokens), one config per variant: listops_cpu_<variant>.

``python -m experiments.run --config=listops_cpu_softmax`` (any variant; ``:smoke`` for
seconds). LRA's generator and S4's tokens at lengths 51-255 (padded to 256), 20 000 / 2 000 /
2 000 distinct trees (generated once, about 30 s). Model ``small_listops``: 2 layers, width 64,
4 heads, MLP 128, mean pooling; AdamW 1e-3, batch 32. Majority class 15.55 % of test; chance
10 %. Measured while building the tier (a throwaway script with this model, softmax
attention, 2 shared CPU cores): 33-37 % test accuracy after 1 079 steps in 20 minutes.
"""

from experiments.configs import common

FAMILY = True


def get_config(arg: str | None = None):
    """``arg``: ``"<variant>"`` or ``"<variant>:smoke"``."""
    return common.family_config(
        "listops_cpu", arg, data={"name": "listops", "listops_tier": "cpu"}, model="small_listops",
        train={"batch_size": 32, "num_train_steps": 1_500, "learning_rate": 1e-3,
               "warmup_steps": 100, "weight_decay": 0.01, "log_every_steps": 50,
               "eval_every_steps": 250, "checkpoint_every_steps": 500,
               "target_accuracy": 0.3})
