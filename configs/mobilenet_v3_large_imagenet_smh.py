"""MobileNetV3-Large on ImageNet with SMH at 50% of the variables (paper Figure 5).

    python train.py --config=configs/mobilenet_v3_large_imagenet_smh.py \\
        --workdir=/tmp/mobilenet_v3_large_smh50

Needs imagenet2012 prepared for TFDS (`tfds build imagenet2012`, after placing the
manual download). Recipe: the MobileNet reference (TF-slim / TPU): RMSProp (momentum
0.9, eps 1e-3), learning rate 0.016 x batch/256 with 5 warmup epochs, then x0.97 every
2.4 epochs, weight decay 1e-5, label smoothing 0.1, EMA 0.9999 for eval, 350 epochs at
batch 4096, 224x224 Inception crops, bfloat16 compute.

Config arguments (`--config=<file>:runlocal`):
    runlocal   4 steps at batch 16 and 64x64 images, to check the set-up on a CPU

Expected result (paper Figure 5): SMH above the width multiplier at matched size; the
width+resolution baseline is slightly better near full size for V3.
Expected runtime: not yet measured (350 epochs of ImageNet).
"""

from smh_jax.training import config_base


def get_config(arg=None):
    args = config_base.parse_arg(arg, runlocal=False)
    c = config_base.base_config()

    c.model.name = "mobilenet_v3_large"
    c.model.dtype = "bfloat16"

    c.dataset.name = "imagenet2012"
    c.dataset.source = "tfds"
    c.dataset.data_dir = None  # TFDS default; override with --config.dataset.data_dir=...
    c.dataset.train_split = "train"
    c.dataset.eval_split = "validation"
    c.dataset.image_size = 224
    c.dataset.augment = "inception"  # random-resized crop + flip; center crop for eval
    c.dataset.cache = False

    c.smh.fraction = 0.5
    c.smh.pool = "product"
    c.smh.weight_decay_on = "variables"

    c.batch_size = 4096
    c.num_epochs = 350.0
    c.optimizer.name = "rmsprop"
    c.optimizer.learning_rate = 0.016  # at batch 256, scaled linearly to batch_size
    c.optimizer.base_batch_size = 256
    c.optimizer.rmsprop_decay = 0.9
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = False
    c.optimizer.eps = 1e-3
    c.optimizer.weight_decay = 1e-5
    c.schedule.name = "exponential"
    c.schedule.warmup_epochs = 5.0
    c.schedule.decay_epochs = 2.4  # x0.97 every 2.4 epochs
    c.schedule.decay_rate = 0.97
    c.label_smoothing = 0.1
    c.ema_decay = 0.9999  # evaluate the EMA of the weights

    c.log_every_steps = 100
    c.eval_every_steps = 5000
    c.checkpoint_every_steps = 5000

    if args.runlocal:
        config_base.runlocal(c, image_size=64)
    return c
