"""Training recipes shared by the experiment files in configs/ (one function per family).

Each returns a complete, validated-schema ConfigDict; the files in configs/ pick the
architecture, size and dataset and document the command and expected result.
"""

from __future__ import annotations

from typing import Optional

import ml_collections

from smh_jax.training.config_base import base_config


def _set_smh(config: ml_collections.ConfigDict, fraction: Optional[float],
             target_params: Optional[int] = None) -> None:
    config.smh.fraction = fraction
    config.smh.target_params = target_params


def cifar_resnet(depth: int, fraction: Optional[float] = None) -> ml_collections.ConfigDict:
    """He et al. 2016, Sec. 4.2: SGD 0.1, momentum 0.9, wd 1e-4, batch 128, 64k iterations
    (164 epochs) with /10 at 32k and 48k, pad-4 crop + flip. Nesterov momentum as most
    reproductions use. ResNet-32 reaches 92.49% in the paper."""
    c = base_config()
    c.model.name = f"resnet{depth}"
    c.dataset.name = "cifar10"
    c.dataset.image_size = 32
    c.dataset.augment = "cifar"
    c.batch_size = 128
    c.num_epochs = 164.0
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "step"
    c.schedule.step_epochs = (82.0, 123.0)
    c.schedule.step_factor = 0.1
    c.eval_every_steps = 2000
    c.checkpoint_every_steps = 2000
    _set_smh(c, fraction)
    return c


def cifar_resnet_fast(depth: int, fraction: Optional[float] = None,
                      epochs: float = 60.0) -> ml_collections.ConfigDict:
    """A short schedule for sweeps on one GPU: batch 512, one-cycle LR peaking at 0.4,
    Nesterov SGD, wd 5e-4, label smoothing 0.1, bfloat16 compute."""
    c = cifar_resnet(depth, fraction)
    c.batch_size = 512
    c.num_epochs = epochs
    c.optimizer.learning_rate = 0.4
    c.optimizer.weight_decay = 5e-4
    c.schedule.name = "one_cycle"
    c.schedule.one_cycle_peak = 0.25
    c.label_smoothing = 0.1
    c.model.dtype = "bfloat16"
    c.eval_every_steps = 0
    c.checkpoint_every_steps = 2000
    c.log_every_steps = 200
    return c


def imagenet(model: str, image_size: int = 224) -> ml_collections.ConfigDict:
    """ImageNet via TFDS (imagenet2012 must be prepared offline), Inception crop + flip."""
    c = base_config()
    c.model.name = model
    c.model.dtype = "bfloat16"
    c.dataset.name = "imagenet2012"
    c.dataset.source = "tfds"
    c.dataset.train_split = "train"
    c.dataset.eval_split = "validation"
    c.dataset.image_size = image_size
    c.dataset.augment = "inception"
    c.dataset.cache = False
    c.log_every_steps = 100
    c.eval_every_steps = 5000
    c.checkpoint_every_steps = 5000
    return c


def imagenet_resnet(model: str, fraction: Optional[float] = None) -> ml_collections.ConfigDict:
    """Goyal et al. 2017: SGD momentum 0.9, LR 0.1 x batch/256 with 5 warmup epochs, wd
    1e-4, 90 epochs (cosine instead of steps), label smoothing 0.1."""
    c = imagenet(model)
    c.batch_size = 1024
    c.num_epochs = 90.0
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.optimizer.base_batch_size = 256
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 5.0
    c.label_smoothing = 0.1
    _set_smh(c, fraction)
    return c


def efficientnet(variant: str, fraction: Optional[float] = None,
                 target_params: Optional[int] = None) -> ml_collections.ConfigDict:
    """The EfficientNet reference recipe (Tan & Le 2019, tpu/models/official/efficientnet):
    RMSProp (decay 0.9, momentum 0.9, eps 1e-3), LR 0.016 x batch/256 with 5 warmup epochs
    then x0.97 every 2.4 epochs, wd 1e-5, label smoothing 0.1, EMA 0.9999 for eval, 350
    epochs, the variant's resolution. (AutoAugment of the later reference is not used.)"""
    from smh_jax import models  # deferred: keeps config loading light

    name = f"efficientnet_{variant}"
    c = imagenet(name, image_size=models.default_resolution(name))
    c.batch_size = 4096
    c.num_epochs = 350.0
    c.optimizer.name = "rmsprop"
    c.optimizer.learning_rate = 0.016
    c.optimizer.base_batch_size = 256
    c.optimizer.rmsprop_decay = 0.9
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = False
    c.optimizer.eps = 1e-3
    c.optimizer.weight_decay = 1e-5
    c.schedule.name = "exponential"
    c.schedule.warmup_epochs = 5.0
    c.schedule.decay_epochs = 2.4
    c.schedule.decay_rate = 0.97
    c.label_smoothing = 0.1
    c.ema_decay = 0.9999
    _set_smh(c, fraction, target_params)
    return c


def mobilenet(model: str, fraction: Optional[float] = None) -> ml_collections.ConfigDict:
    """MobileNet V2/V3 reference recipe: RMSProp (decay 0.9, momentum 0.9), LR 0.016 x
    batch/256... as the TF-slim/TPU references (x0.97 every 2.4 epochs after 5 warmup
    epochs), wd 4e-5 (V2) / 1e-5 (V3), label smoothing 0.1, EMA 0.9999, 350 epochs."""
    c = imagenet(model)
    c.batch_size = 4096
    c.num_epochs = 350.0
    c.optimizer.name = "rmsprop"
    c.optimizer.learning_rate = 0.016
    c.optimizer.base_batch_size = 256
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = False
    c.optimizer.eps = 1e-3
    c.optimizer.weight_decay = 4e-5 if model == "mobilenet_v2" else 1e-5
    c.schedule.name = "exponential"
    c.schedule.warmup_epochs = 5.0
    c.schedule.decay_epochs = 2.4
    c.schedule.decay_rate = 0.97
    c.label_smoothing = 0.1
    c.ema_decay = 0.9999
    _set_smh(c, fraction)
    return c


def runlocal(c: ml_collections.ConfigDict, image_size: Optional[int] = None,
             batch_size: int = 16, steps: int = 4) -> ml_collections.ConfigDict:
    """Shrinks a config to a few CPU steps (tests, laptops): tiny batch, few steps."""
    c.batch_size = batch_size
    c.eval_batch_size = batch_size
    c.num_steps = steps
    c.log_every_steps = 1
    c.eval_every_steps = 0
    c.checkpoint_every_steps = steps
    if image_size:
        c.dataset.image_size = image_size
    c.model.dtype = "float32"
    return c


def cifar_experiment(depth: int, arg: Optional[str],
                     fraction: Optional[float]) -> ml_collections.ConfigDict:
    """The configs/resnet*_cifar10*.py files: He et al.'s recipe, or `fast`, or `runlocal`.

    Config arguments: fast (the 60-epoch one-cycle GPU recipe), epochs=N (with fast),
    npz=PATH (read CIFAR-10 from an .npz, e.g. ../shared/data/cifar10_jpeg.npz, no TFDS),
    runlocal (4 tiny CPU steps).
    """
    from smh_jax.training.config_base import parse_arg

    args = parse_arg(arg, fast=False, epochs=60.0, npz="", runlocal=False)
    c = cifar_resnet_fast(depth, fraction, args.epochs) if args.fast else cifar_resnet(
        depth, fraction)
    if args.npz:
        c.dataset.source = "npz"
        c.dataset.path = args.npz
    if args.runlocal:
        runlocal(c)
    return c
