"""ResNet-56 on CIFAR-10 with SMH at 25% of the variables.

    python train.py --config=configs/resnet56_cifar10_smh.py --workdir=/tmp/r56_smh25

Recipe (He et al. 2016, Sec. 4.2): SGD with Nesterov momentum 0.9, learning rate 0.1
divided by 10 at epochs 82 and 123, weight decay 1e-4, batch 128, 164 epochs,
pad-4 random crop + horizontal flip.
SMH: one product pool A @ B holding 25% of the hashed weights; weight decay on the factors.

Config arguments (`--config=<file>:arg1,arg2=value`):
    fast       the sweep recipe for one GPU: batch 512, one-cycle SGD peaking at 0.4 after
               25% of training, weight decay 5e-4, label smoothing 0.1, bfloat16 compute
    epochs=N   epochs of the fast recipe (default 60)
    npz=PATH   read CIFAR-10 from an .npz file instead of TFDS (no TensorFlow needed; the
               format is described in smh_jax/data/npz_source.py)
    runlocal   4 steps at batch 16, to check the set-up on a CPU

Expected result: the paper reports ResNet-32 only; at 25% expect close to the
dense 93.03% top-1 (He et al.).
Expected runtime: not yet measured.
"""

from smh_jax.training import config_base


def get_config(arg=None):
    args = config_base.parse_arg(arg, fast=False, epochs=60.0, npz="", runlocal=False)
    c = config_base.base_config()

    c.model.name = "resnet56"
    c.model.width_multiplier = 1.0
    c.model.dtype = "float32"

    c.dataset.name = "cifar10"
    c.dataset.source = "npz" if args.npz else "tfds"
    c.dataset.path = args.npz
    c.dataset.train_split = "train"
    c.dataset.eval_split = "test"
    c.dataset.image_size = 32
    c.dataset.augment = "cifar"  # pad 4, random 32x32 crop, random flip (on the device)

    c.smh.fraction = 0.25  # hash 25% of the weights into A @ B
    c.smh.pool = "product"
    c.smh.weight_decay_on = "variables"  # decay the factors, not the materialized weights

    c.batch_size = 128
    c.num_epochs = 164.0  # 64k iterations
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "step"
    c.schedule.step_epochs = (82.0, 123.0)  # iterations 32k and 48k
    c.schedule.step_factor = 0.1
    c.label_smoothing = 0.0

    c.log_every_steps = 100
    c.eval_every_steps = 2000
    c.checkpoint_every_steps = 2000

    if args.fast:  # The sweep recipe: short enough for one GPU.
        c.model.dtype = "bfloat16"
        c.batch_size = 512
        c.num_epochs = args.epochs
        c.optimizer.learning_rate = 0.4
        c.optimizer.weight_decay = 5e-4
        c.schedule.name = "one_cycle"
        c.schedule.one_cycle_peak = 0.25  # fraction of training spent warming up
        c.label_smoothing = 0.1
        c.log_every_steps = 200
        c.eval_every_steps = 0  # at the end only
    if args.runlocal:
        config_base.runlocal(c)
    return c
