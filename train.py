r"""Trains a model, compressed with SMH or dense, from one config file.

    python train.py --config=configs/quickstart.py --workdir=/tmp/smh_quickstart
    python train.py --config=configs/resnet32_cifar10_smh.py --config.smh.fraction=0.1 \
        --workdir=/tmp/resnet32_smh10

Rerunning the same command resumes from the newest checkpoint in --workdir.
"""

from absl import app, flags
from ml_collections import config_flags

from smh_jax.training import cli, trainer

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Checkpoints, metrics.jsonl, TensorBoard, summary.json.")
config_flags.DEFINE_config_file("config", None, "Experiment config (configs/*.py).",
                                lock_config=True)
cli.define_distributed_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.initialize_distributed()
    summary = trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    print(f"\n{cli.summary_table(summary)}\n", flush=True)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    cli.run(main)
