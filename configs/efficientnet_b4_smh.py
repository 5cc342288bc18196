"""EfficientNet-B4 compressed by SMH to B0's size (5,288,548 trainable variables).

    python train.py --config=configs/efficientnet_b4_smh.py --workdir=/tmp/b4_smh
    python train.py --config=configs/efficientnet_b4_smh.py:fraction=0.1 --workdir=/tmp/b4_10

Needs imagenet2012 prepared for TFDS (`tfds build imagenet2012`, after placing the
manual download). The size is given as target_params (total trainable variables:
factors, scales and the unhashed BatchNorm parameters), so the compressed B4 has exactly
as many variables as the dense B0 of efficientnet_b0_imagenet.py, and is trained with
B0's recipe at B4's resolution: RMSProp (decay 0.9, momentum 0.9, eps 1e-3), learning
rate 0.016 x batch/256 with 5 warmup epochs, then x0.97 every 2.4 epochs, weight decay
1e-5, label smoothing 0.1, EMA 0.9999 for eval, 350 epochs at batch 4096, 380x380
Inception crops, bfloat16 compute.

Config arguments (`--config=<file>:arg1,arg2=value`):
    fraction=F hash F x the hashed weights instead of matching B0's size
    runlocal   4 steps at batch 16 and 64x64 images, to check the set-up on a CPU

Expected result (paper Sec. 4): over 3 points above B0's 76.3% top-1 at equal size.
Expected runtime: not yet measured; B4's training time plus one A @ B product per step.
"""

from smh_jax.training import config_base


def get_config(arg=None):
    args = config_base.parse_arg(arg, runlocal=False, fraction=0.0)
    c = config_base.base_config()

    c.model.name = "efficientnet_b4"
    c.model.dtype = "bfloat16"

    c.dataset.name = "imagenet2012"
    c.dataset.source = "tfds"
    c.dataset.data_dir = None  # TFDS default; override with --config.dataset.data_dir=...
    c.dataset.train_split = "train"
    c.dataset.eval_split = "validation"
    c.dataset.image_size = 380
    c.dataset.augment = "inception"  # random-resized crop + flip; center crop for eval
    c.dataset.cache = False

    c.smh.fraction = args.fraction or None
    c.smh.target_params = None if args.fraction else 5_288_548  # dense B0's parameters
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
