"""LRA Image (CIFAR-10 as 1 024 grey pixels), one config per variant: lra_image_<variant>.

``python -m experiments.run --config=lra_image_softmax`` (needs the CIFAR-10 binary release
or TFDS cifar10; docs/tasks.md). LRA's recipe (its released ``base_cifar10_config``): 1
layer, width 32, 1 head, MLP 64, dropout 0.3, learned positions, CLS pooling, batch 256,
200 epochs of the 45 000 training images, peak 5e-4 after one epoch of warmup, cosine decay,
no weight decay. LRA: Transformer 42.44, Linear Trans. 42.34, Performer 42.77; RMAAT 64.8
(docs/tasks.md). Not timed here (a GPU/TPU run).
"""

from experiments.configs import common

FAMILY = True


def get_config(arg: str | None = None):
    """``arg``: ``"<variant>"`` or ``"<variant>:smoke"``."""
    return common.family_config(
        "lra_image", arg, data={"name": "lra_image"}, model="lra_image",
        train={"batch_size": 256, "num_epochs": 200.0, "learning_rate": 5e-4,
               "warmup_steps": 175, "weight_decay": 0.0, "log_every_steps": 100,
               "checkpoint_every_steps": 2_000})
