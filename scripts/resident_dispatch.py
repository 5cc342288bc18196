r"""Resident training's epoch dispatch, measured side by side: one scanned epoch (0)
against calls of k unrolled steps.

    python scripts/resident_dispatch.py --net=lenet5 --runs=2 --steps_per_call=0,10
    python scripts/resident_dispatch.py --net=mlp3 --runs=3 --steps_per_call=0,10

Trains `runs` runs of `net` together on synthetic 28x28 images for 2 epochs per setting,
the settings alternating over the repetitions (smh_jax/experiments/resident_dispatch.py),
and prints per setting: the first epoch (with its compile), the fastest later epoch,
milliseconds per run-step (the epoch's time, its evaluation included, over its steps and
runs), the ratio to the first setting, and the final loss (the settings train the same
steps, so the losses agree up to rounding).

    python scripts/resident_dispatch.py --net=lenet5 --runs=7 --examples=500 \
        --eval_examples=10000 --steps_per_call=0,5    # a search's epoch, MNIST-sized splits

`--model` (repeatable) compares model options as well, each with every setting:

    python scripts/resident_dispatch.py --net=lenet5 --steps_per_call=10 \
        --model=max_pool=window --model=max_pool=tiles
"""

from absl import app, flags

from smh_jax.errors import UserError
from smh_jax.experiments import resident_dispatch
from smh_jax.training import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("net", "lenet5", "A network of the model zoo (28x28x1 inputs).")
flags.DEFINE_integer("runs", 2, "Runs trained together, as a learning-rate search does.")
flags.DEFINE_list("steps_per_call", ["0", "10"], "Settings to compare; 0 = scanned epoch.")
flags.DEFINE_integer("examples", 2000, "Synthetic training examples (an epoch).")
flags.DEFINE_integer("batch_size", 100, "Examples per step.")
flags.DEFINE_integer("eval_examples", 100, "Synthetic validation and test examples, each; "
                     "an epoch's time includes evaluating both.")
flags.DEFINE_integer("repetitions", 2, "Times each setting is measured (order alternates).")
flags.DEFINE_multi_string("model", [], "One variant of the net to compare: its constructor "
                          "options as key=value pairs, comma-separated (max_pool=window); "
                          "repeat the flag for more. None given: the net as it is.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    text = ",".join(FLAGS.steps_per_call)
    try:
        settings = [int(k) for k in FLAGS.steps_per_call]
    except ValueError:
        settings = []
    if not settings or min(settings) < 0 or len(set(settings)) != len(settings):
        raise UserError(f"--steps_per_call={text}: give distinct integers >= 0, "
                        "comma-separated (0: the scanned epoch)")
    variants = [resident_dispatch.parse_variant(f"--model={text}", text)
                for text in FLAGS.model] or [{}]
    rows = resident_dispatch.measure(FLAGS.net, FLAGS.runs, settings, FLAGS.examples,
                                     FLAGS.batch_size, repetitions=FLAGS.repetitions,
                                     eval_examples=FLAGS.eval_examples, variants=variants)
    base = rows[0]["ms_per_run_step"]

    def label(row):
        model = ",".join(f"{k}={v}" for k, v in row["model"].items())
        return (f"{model} " if FLAGS.model else "") + str(row["steps_per_call"])

    print(cli.format_table([("model steps_per_call" if FLAGS.model else "steps_per_call",
                             "first epoch s | later epoch s | ms per run-step | vs first | "
                             "final loss")] + [
        (label(r), f"{r['compile_epoch_s']:.1f} | {r['epoch_s']:.2f} | "
         f"{r['ms_per_run_step']:.1f} | {r['ms_per_run_step'] / base:.2f} | "
         f"{r['final_loss']:.5f}") for r in rows]), flush=True)


if __name__ == "__main__":
    cli.run(main)
