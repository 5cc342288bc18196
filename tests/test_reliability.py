"""Reliability: bad input fails early and clearly, refused runs touch nothing,
interrupted saves are never restored, numerical faults stop (or skip) exactly, and the same
seed gives the same run.

In-process where the property lives in the library (8 simulated CPU devices, see
conftest.py), through the real `train.py`/`eval.py` where it is about the command line
(one `error:` line, no traceback, the exit status). The kill tests are in
test_preemption.py, the 2,000-step run in test_load.py; docs/reliability.md lists them all.
"""

import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from config_helpers import built_once, tiny_config, tiny_flags, xla_flags

from smh_jax.errors import UserError
from smh_jax.training import checkpointing, trainer
from smh_jax.training import experiment as experiment_lib

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TINY_FLAGS = tiny_flags()


def raw_config(edit) -> ml_collections.ConfigDict:
    """A config built from a plain dict, as a config file may build one: no type safety."""
    tree = tiny_config().to_dict()
    edit(tree)
    return ml_collections.ConfigDict(tree)


def snapshot(root: str) -> dict:
    """Every path under root with, for files, size, mtime and SHA-256."""
    out = {}
    for base, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(base, name), root)] = "dir"
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            stat = os.stat(path)
            out[os.path.relpath(path, root)] = (stat.st_size, stat.st_mtime_ns, digest)
    return out


def params_at(config, workdir, step=None):
    _, state, restored = trainer.restore_for_eval(config, workdir, step)
    return jax.device_get(state.params), restored


def assert_same_arrays(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(x, y)


def train_lines(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


# ----------------------------------------------------------------------------- bad input


def _tfds_missing():
    return importlib.util.find_spec("tensorflow_datasets") is None


def _set(key, value):
    def edit(tree):
        *parents, leaf = key.split(".")
        for parent in parents:
            tree = tree[parent]
        tree[leaf] = value
    return edit


BAD_INPUT = [
    ("unknown model", {"model.name": "resnet33"},
     r"config\.model\.name: 'resnet33' is not a known model; allowed: .*resnet20"),
    ("unknown key", _set("smh.fractoin", 0.1),
     r"unknown config key config\.smh\.fractoin; did you mean config\.smh\.fraction\?"),
    ("unknown top-level key", _set("learning_rate", 0.1),
     r"unknown config key config\.learning_rate"),
    ("str for int", _set("batch_size", "16"),
     r"config\.batch_size: '16' has type str; expected int"),
    ("str for float", _set("smh.fraction", "0.25"),
     r"config\.smh\.fraction: '0\.25' has type str; expected float"),
    ("bool for int", _set("keep_checkpoints", True),
     r"config\.keep_checkpoints: True has type bool; expected int"),
    ("str for tuple", _set("smh.modifiers", "scale"),
     r"config\.smh\.modifiers: 'scale' has type str; expected tuple"),
    ("fraction < 0", {"smh.fraction": -0.1}, r"smh\.fraction: -0\.1 is outside .*\(0, 1\]"),
    ("fraction > 1", {"smh.fraction": 1.5}, r"smh\.fraction: 1\.5 is outside .*\(0, 1\]"),
    ("fraction nan", {"smh.fraction": math.nan}, r"smh\.fraction: nan is not finite"),
    ("fraction inf", {"smh.fraction": math.inf}, r"smh\.fraction: inf is not finite"),
    ("include selects nothing", {"smh.include": "no_such_layer"},
     r"include=\['no_such_layer'\] .* select no parameter to hash; the parameters are: fc1/kernel"),
    ("exclude drops everything", {"smh.exclude": "."},
     r"exclude=\['\.'\] select no parameter to hash"),
    ("batch vs devices", {"batch_size": 12},
     r"config\.batch_size: 12 is not divisible by the 8 devices and 1 processes; use a multiple "
     r"of 8"),
    ("eval batch vs devices", {"eval_batch_size": 20},
     r"config\.eval_batch_size: 20 is not divisible by the 8 devices"),
    ("batch vs dataset", {"batch_size": 2048},
     r"config\.batch_size: 2048 is larger than the 1437 training examples"),
    ("unknown source", {"dataset.source": "csv"},
     r"config\.dataset\.source: 'csv' is not one of tfds, npz, folder, digits"),
    ("missing npz", {"dataset.source": "npz", "dataset.path": "/no/such/data.npz"},
     r"dataset\.path='/no/such/data\.npz': no such \.npz file"),
    ("missing folder", {"dataset.source": "folder", "dataset.path": "/no/such/folder"},
     r"dataset\.path='/no/such/folder': no such directory"),
    ("image too small", {"model.name": "resnet50", "model.hidden_sizes": None,
                         "model.dropout_rate": None},
     r"images of 8x8 are too small for resnet50, which needs at least 32x32"),
    ("image size vs data", {"dataset.image_size": 16},
     r"dataset\.image_size=16 does not match the 8x8 images of digits"),
]


@pytest.mark.parametrize("name,change,message", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_a_user_error_before_the_workdir_exists(tmp_path, name, change, message):
    config = raw_config(change) if callable(change) else tiny_config(**change)
    workdir = tmp_path / "run"
    with pytest.raises(UserError, match=message) as error:
        trainer.train_and_evaluate(config, str(workdir))
    assert "\n" not in str(error.value)
    assert not workdir.exists()


@pytest.mark.skipif(_tfds_missing(), reason="tensorflow_datasets is not installed")
@pytest.mark.parametrize("name,message", [
    ("cifar10", r"TFDS dataset 'cifar10' is not prepared in data_dir (\S+) .*prepare it with "
                r"`tfds build cifar10 --data_dir=\1`"),
    ("no_such_dataset", r"dataset\.name='no_such_dataset' is not a TFDS dataset"),
])
def test_unprepared_or_unknown_tfds_dataset_says_how_to_prepare_it(tmp_path, name, message):
    empty = tmp_path / "tfds"
    empty.mkdir()
    config = tiny_config(**{"dataset.source": "tfds", "dataset.name": name,
                           "dataset.data_dir": str(empty), "dataset.image_size": 32})
    with pytest.raises(UserError, match=message):
        trainer.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def _named_smallest_fraction() -> float:
    with pytest.raises(UserError, match="smallest allowed fraction is") as error:
        experiment_lib.build_experiment(tiny_config(**{"smh.fraction": 1e-4}))
    return float(re.search(r"smallest allowed fraction is ([0-9.e-]+)",
                           str(error.value)).group(1))


def test_fraction_below_one_rank_names_the_smallest_allowed_fraction(tmp_path):
    smallest = _named_smallest_fraction()  # 2n / N rounded up to 4 significant digits
    # The named fraction is the boundary to within its printed precision: just above it
    # builds, just below it is refused, before any workdir exists.
    experiment_lib.build_experiment(tiny_config(**{"smh.fraction": smallest * 1.001}))
    with pytest.raises(UserError, match="smallest allowed fraction"):
        trainer.train_and_evaluate(tiny_config(**{"smh.fraction": smallest * 0.999}),
                                   str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_the_named_smallest_fraction_itself_is_accepted():
    # Rounded up, not to nearest: 100 / 2,410 = 0.041494 is named 0.0415, not 0.04149.
    experiment_lib.build_experiment(tiny_config(**{"smh.fraction": _named_smallest_fraction()}))


def test_unwritable_workdir_is_refused_before_anything_is_written(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match=r"--workdir '.*a_file/run' is not writable \(Not a "
                                        r"directory\)"):
        trainer.train_and_evaluate(tiny_config(), str(blocker / "run"))
    assert blocker.read_text() == "not a directory"
    if os.geteuid() != 0:  # root writes anywhere; the permission case needs a normal user
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(UserError, match=r"is not writable \(Permission denied\)"):
            trainer.train_and_evaluate(tiny_config(), str(locked / "run"))
        assert os.listdir(locked) == []


def test_eval_of_a_workdir_without_checkpoints_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"--workdir '.*' holds no checkpoints"):
        trainer.restore_for_eval(tiny_config(), str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(UserError, match=r"holds no complete checkpoint"):
        trainer.restore_for_eval(tiny_config(), str(tmp_path))


# ----------------------------------------------------------------------------- refusals


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 4-step quickstart run (eval at step 2 and 4): (config, workdir).

    Trained once per test run and copied, so each worker's tests see a workdir no other
    process touches.
    """
    config = tiny_config(eval_every_steps=2)
    original = built_once(tmp_path_factory, "reliability_trained",
                          lambda path: trainer.train_and_evaluate(config, str(path)))
    workdir = tmp_path_factory.mktemp("trained") / "run"
    shutil.copytree(original, workdir)
    return config, str(workdir)


MISMATCHES = [
    ({"model.name": "mlp3"}, "model.name: checkpoint has 'mlp', this config has "
                             "'mlp3'"),
    ({"model.width_multiplier": 0.5}, "model.width_multiplier: checkpoint has 1.0"),
    ({"smh.fraction": 0.5}, "smh.pool.M: checkpoint has"),
    ({"smh.pool": "kronecker"}, "smh.pool.pool: checkpoint has 'product', this config has "
                                "'kronecker'"),
    ({"smh.fraction": 0.0}, "smh: checkpoint has an SMH layout, this config has None (the "
                            "checkpoint is SMH-compressed, this config is dense"),
    ({"smh.include": "fc1"}, "smh.hashed: checkpoint has 4 entries, this config has"),
    ({"dataset.name": "digits_v2"}, "dataset.name: checkpoint has 'digits', this config has "
                                    "'digits_v2'"),
]


def test_a_checkpoint_of_another_run_is_refused_naming_the_field_and_nothing_changes(trained):
    _, workdir = trained
    before = snapshot(workdir)
    assert "config.json" in before and "summary.json" in before
    for change, named in MISMATCHES:
        mismatched = tiny_config(**change)
        for attempt in (trainer.train_and_evaluate, trainer.restore_for_eval):  # train, eval
            with pytest.raises(UserError, match="was written by a different run") as error:
                attempt(mismatched, workdir)
            assert named in str(error.value), (change, str(error.value))
            assert "use another --workdir" in str(error.value)
    assert snapshot(workdir) == before


# ----------------------------------------------------------------------------- the CLI

# The learning rate is 0.1 for steps 0-2 and infinite from step 3 on (exponential decay by
# an infinite rate every 3 steps: 89 steps per epoch at batch 16): step 3's loss and
# gradient are finite, but its update makes the parameters infinite or NaN.
INFINITE_LR_AT_3 = {"schedule.name": "exponential", "schedule.decay_rate": math.inf,
                    "schedule.decay_epochs": 3 / 89, "schedule.warmup_epochs": 0.0}


def _cli_cases(tmp, trained_workdir):
    """(name, argv, devices, exit status, message, workdir that must not change)."""
    blocker = os.path.join(tmp, "a_file")
    with open(blocker, "w") as f:
        f.write("x")
    train = ["train.py", "--config=configs/quickstart.py", *TINY_FLAGS]
    evaluate = ["eval.py", "--config=configs/quickstart.py", *TINY_FLAGS]
    fresh = {name: os.path.join(tmp, name) for name in
             ("nonfinite", "key", "value", "range")}
    nonfinite = [f"--config.{k}={v}" for k, v in INFINITE_LR_AT_3.items()]
    return [
        # One case per way a command can fail (the messages of each kind of bad input are
        # checked in-process above, those of building the run among them): flag parsing,
        # config validation, a refused checkpoint, a workdir, a training error.
        ("unknown config key", [*train, f"--workdir={fresh['key']}",
                                "--config.smh.fractoin=0.1"], 1, 2,
         "bad --config: 'fractoin' Did you mean \"fraction\"", fresh["key"]),
        ("unparsable value", [*train, f"--workdir={fresh['value']}", "--config.batch_size=abc"],
         1, 2, "--config.batch_size=abc: invalid literal for int() with base 10: 'abc' (see",
         fresh["value"]),
        ("fraction out of range", [*train, f"--workdir={fresh['range']}",
                                   "--config.smh.fraction=1.5"], 1, 2,
         "smh.fraction: 1.5 is outside the allowed range", fresh["range"]),
        ("train refuses another run's checkpoint",
         [*train, f"--workdir={trained_workdir}", "--config.smh.pool=kronecker"], 1, 2,
         "smh.pool.pool: checkpoint has 'product', this config has 'kronecker'",
         trained_workdir),
        ("eval refuses another run's checkpoint",
         [*evaluate, f"--workdir={trained_workdir}", "--config.smh.fraction=0.5"], 1, 2,
         "was written by a different run (smh.pool.M", trained_workdir),
        ("workdir not writable", [*train, f"--workdir={blocker}/run"], 1, 2,
         "is not writable (Not a directory)", None),
        # A training error, not a user error: exit status 1, still one line. Non-finite
        # steps are caught when saving, not only when logging (a log line every 100 steps).
        ("non-finite update", [*train, f"--workdir={fresh['nonfinite']}", *nonfinite,
                               "--config.num_steps=6", "--config.log_every_steps=100"], 1, 1,
         "non-finite loss or gradient at step 3 (a NaN/Inf loss, gradient or updated "
         "parameter; config.nonfinite='stop'); stopped at step 4; the last good checkpoint "
         "is step 3", None),
    ]


def test_command_line_errors_are_one_line_with_the_right_exit_status(trained, tmp_path):
    """All cases run at once (each is a Python start-up); each checks its own outcome."""
    _, trained_workdir = trained
    cases = _cli_cases(str(tmp_path), trained_workdir)
    watched = {case[5]: snapshot(case[5]) if os.path.exists(case[5]) else None
               for case in cases if case[5]}
    procs = []
    for _, argv, devices, *_ in cases:
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
               "XLA_FLAGS": xla_flags(devices)}
        procs.append(subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = [p.communicate(timeout=600) for p in procs]
    problems = []
    for (name, _, _, status, message, _), p, (_, err) in zip(cases, procs, outputs,
                                                             strict=True):
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        if p.returncode != status or len(errors) != 1 or message not in errors[0] \
                or "Traceback" in err:
            problems.append(f"{name}: exit {p.returncode}, stderr tail:\n{err[-1500:]}")
    for workdir, before in watched.items():
        after = snapshot(workdir) if os.path.exists(workdir) else None
        if after != before:
            problems.append(f"{workdir} changed: {before} -> {after}")
    assert not problems, "\n\n".join(problems)

    # The non-finite run kept steps 1-3, each with finite parameters, and no summary.
    workdir = os.path.join(str(tmp_path), "nonfinite")
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1", "2", "3"]
    assert not os.path.exists(os.path.join(workdir, "summary.json"))
    config = tiny_config(**INFINITE_LR_AT_3, num_steps=6, log_every_steps=100)
    for step in (1, 2, 3):
        params, _ = params_at(config, workdir, step)
        assert all(np.isfinite(x).all() for x in jax.tree.leaves(params)), step


# ----------------------------------------------------------------------------- checkpoints


def test_an_interrupted_save_is_never_restored_and_is_removed_on_resume(trained, tmp_path):
    config, original = trained
    workdir = str(tmp_path / "run")
    shutil.copytree(original, workdir)
    step4, _ = params_at(config, workdir, 4)
    # What a kill leaves when it lands after every file of step 4 was written but before
    # Orbax renamed the directory into place (the last instant a save can be cut short).
    directory = os.path.join(workdir, "checkpoints")
    os.rename(os.path.join(directory, "4"), os.path.join(directory, "4.orbax-checkpoint-tmp"))
    os.remove(os.path.join(workdir, "summary.json"))
    assert checkpointing.TMP_DIR_SUFFIX == ".orbax-checkpoint-tmp"

    _, restored = params_at(config, workdir)
    assert restored == 3  # eval.py takes the newest complete step
    with pytest.raises(UserError, match=r"--step 4 is not among the checkpoints .*\[1, 2, 3\]"):
        params_at(config, workdir, 4)
    assert os.path.isdir(os.path.join(directory, "4.orbax-checkpoint-tmp"))  # eval is read-only

    summary = trainer.train_and_evaluate(config, workdir)  # resumes from step 3
    assert summary["steps"] == 4
    assert sorted(os.listdir(directory)) == ["1", "2", "3", "4"]  # the leftover is gone
    redone = [m["step"] for m in train_lines(workdir) if m["split"] == "train"]
    assert redone == [1, 2, 3, 4, 4]  # step 4 trained again, from step 3
    again, _ = params_at(config, workdir, 4)
    assert_same_arrays(again, step4)


def test_a_sigterm_at_a_periodic_checkpoint_saves_that_step_once(tmp_path):
    """The SIGTERM branch asks again for the step the periodic checkpoint just saved."""
    saver = checkpointing.Checkpointer(str(tmp_path / "checkpoints"), max_to_keep=3)
    try:
        state = {"w": np.arange(4.0, dtype=np.float32)}
        saver.save(6, state, {"step": 6}, {"run": "a"})  # checkpoint_every_steps
        saver.save(6, state, {"step": 6}, {"run": "a"})  # the preemption notice
        saver.wait()
        assert saver.all_steps() == [6]
    finally:
        saver.close()


def test_same_config_and_seed_give_the_same_metrics(trained, tmp_path):
    config, first_workdir = trained
    second_workdir = str(tmp_path / "again")
    second = trainer.train_and_evaluate(config, second_workdir)
    with open(os.path.join(first_workdir, "summary.json")) as f:
        first = json.load(f)
    varying = {"wall_seconds", "loop_seconds"}
    assert {k: v for k, v in first.items() if k not in varying} == \
        {k: v for k, v in json.loads(json.dumps(second)).items() if k not in varying}

    def metrics(workdir):
        return [{k: v for k, v in m.items() if k not in ("images_per_second", "time")}
                for m in train_lines(workdir)]

    assert metrics(first_workdir) == metrics(second_workdir)
    assert [m["step"] for m in metrics(first_workdir) if m["split"] == "eval"] == [2, 4]
    assert_same_arrays(params_at(config, first_workdir)[0], params_at(config, second_workdir)[0])


# ----------------------------------------------------------------------------- numerics


def test_nonfinite_skip_skips_and_counts_every_bad_step(tmp_path):
    config = tiny_config(num_steps=6, checkpoint_every_steps=3, nonfinite="skip",
                        **INFINITE_LR_AT_3)
    workdir = str(tmp_path / "run")
    summary = trainer.train_and_evaluate(config, workdir)
    assert summary["steps"] == 6 and summary["skipped_steps"] == 3  # steps 3, 4 and 5
    assert math.isfinite(summary["eval_loss"])
    logged = {m["step"]: m["skipped_steps"] for m in train_lines(workdir)
              if m["split"] == "train"}
    assert logged == {1: 0, 2: 0, 3: 0, 4: 1, 5: 2, 6: 3}
    # Every skipped update left the parameters exactly as the last good step made them.
    assert_same_arrays(params_at(config, workdir, 6)[0], params_at(config, workdir, 3)[0])
