"""ResNet-50 on ImageNet with SMH at 25% of the variables (paper Figure 3).

    python train.py --config=configs/resnet50_imagenet_smh.py --workdir=/tmp/r50_smh25

Needs imagenet2012 prepared for TFDS (`tfds build imagenet2012`, after placing the
manual download). Recipe (Goyal et al. 2017, with a cosine instead of a step decay):
SGD with Nesterov momentum 0.9, learning rate 0.1 x batch/256 (0.4 at batch 1024) with
5 warmup epochs, weight decay 1e-4, label smoothing 0.1, 90 epochs, 224x224 Inception
crops, bfloat16 compute.

Config arguments (`--config=<file>:runlocal`):
    runlocal   4 steps at batch 16 and 64x64 images, to check the set-up on a CPU

Expected result (paper Figure 3): SMH above the width multiplier at every size; at 70%
top-1, SMH models are half the size of width-multiplier ones.
Expected runtime: not yet measured (90 epochs of ImageNet).
"""

from smh_jax.training import config_base


def get_config(arg=None):
    args = config_base.parse_arg(arg, runlocal=False)
    c = config_base.base_config()

    c.model.name = "resnet50"
    c.model.dtype = "bfloat16"

    c.dataset.name = "imagenet2012"
    c.dataset.source = "tfds"
    c.dataset.data_dir = None  # TFDS default; override with --config.dataset.data_dir=...
    c.dataset.train_split = "train"
    c.dataset.eval_split = "validation"
    c.dataset.image_size = 224
    c.dataset.augment = "inception"  # random-resized crop + flip; center crop for eval
    c.dataset.cache = False

    c.smh.fraction = 0.25
    c.smh.pool = "product"
    c.smh.weight_decay_on = "variables"

    c.batch_size = 1024
    c.num_epochs = 90.0
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1  # at batch 256, scaled linearly to batch_size
    c.optimizer.base_batch_size = 256
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 5.0
    c.label_smoothing = 0.1
    c.ema_decay = 0.0

    c.log_every_steps = 100
    c.eval_every_steps = 5000
    c.checkpoint_every_steps = 5000

    if args.runlocal:
        config_base.runlocal(c, image_size=64)
    return c
