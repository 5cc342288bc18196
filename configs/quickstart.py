"""Quickstart: SMH-compressed ResNet-20 (25% of the variables) on the 8x8 digits that
scikit-learn ships, so it runs offline on a fresh machine with no download.

    python train.py --config=configs/quickstart.py --workdir=/tmp/smh_quickstart
    python train.py --config=configs/quickstart.py --config.smh.fraction=0 --workdir=/tmp/qs_dense
    python train.py --config=configs/quickstart.py --config.model.api=nnx --workdir=/tmp/qs_nnx

1,437 training / 360 test images, 60 epochs of batch 64 (1,320 steps), checkpoints every
200 steps, evaluation every 440. Expected runtime: about 2 minutes on 2 CPU cores.
Expected result: about 97-99% test accuracy with about 71K trainable variables against the
dense ResNet-20's 270K (the dense run, one override away, reaches about the same; so does
the Flax NNX twin, `model.api=nnx`).
"""

from smh_jax.training import config_base


def get_config():
    c = config_base.base_config()
    c.model.name = "resnet20"
    c.dataset.name = "digits"
    c.dataset.source = "digits"
    c.dataset.image_size = 8
    c.dataset.augment = "none"  # digits are not flip-invariant
    c.smh.fraction = 0.25
    c.batch_size = 64
    c.eval_batch_size = 360
    c.num_epochs = 60.0
    c.optimizer.learning_rate = 0.1
    c.optimizer.weight_decay = 5e-4
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 2.0
    c.log_every_steps = 110
    c.eval_every_steps = 440
    c.checkpoint_every_steps = 200
    c.keep_checkpoints = 2
    return c
