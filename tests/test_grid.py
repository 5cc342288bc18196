"""Resident sweeps end to end: search, selection on validation, seeds, resume, report."""

import csv
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import ml_collections
import pytest
from config_helpers import built_once
from test_idx import make_mnist

from smh_jax.errors import UserError
from smh_jax.experiments import grid, grid_report, methods, provenance, sweep_plan
from smh_jax.models.spec import ModelSpec

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def tiny_preset(path: str) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.kind = "resident"
    c.title = "tiny"
    c.dataset = dict(source="idx", path=path, name="mnist", image_size=28, augment="none")
    c.splits = ("train[:200]", "validation[:100]", "test[:50]")
    c.recipe = dict(epochs=2, batch_size=50)
    c.search_epochs = 1
    c.learning_rates = (0.03, 0.3)
    c.seeds = (0, 1)
    small = dict(hidden_sizes=(16,))
    c.groups = [dict(net="mlp", method="dense", model=small),
                dict(net="mlp", method="smh", compression=0.25, model=small)]
    c.references = [dict(net="mlp", method="smh", compression=0.25, test_error=9.99)]
    return c


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """(plan, root, data) of the tiny preset, swept once per test run; root is read-only."""
    def sweep(path):
        make_mnist(str(path / "mnist"))
        grid.run(grid.plan_from_config("tiny", tiny_preset(str(path / "mnist"))),
                 str(path / "sweep"), log=lambda _: None)

    shared = built_once(tmp_path_factory, "tiny_sweep", sweep)
    data = str(shared / "mnist")
    return grid.plan_from_config("tiny", tiny_preset(data)), str(shared / "sweep"), data


def test_each_group_selects_its_rate_on_validation_then_trains_every_seed(swept):
    plan, root, _ = swept
    for group in plan.groups:
        with open(os.path.join(root, group.directory, grid.RESULT_FILE)) as f:
            result = json.load(f)
        search = result["search"]
        assert [s["learning_rate"] for s in search] == [0.03, 0.3]
        assert all(s["seed"] == 0 and len(s["validation_error"]) == 1 for s in search)
        # The search ran 1 epoch of the 2: the two finalists run the full 2 epochs from
        # seed 0, the best on validation wins, and seed 1 follows at its rate.
        finals = result["finals"]
        assert sorted(f["learning_rate"] for f in finals) == [0.03, 0.3]
        assert all(len(f["validation_error"]) == 2 for f in finals)
        best = min(finals, key=lambda s: s["best_validation_error"])
        assert result["selected_learning_rate"] == best["learning_rate"]
        assert result["runs"][0] == best
        assert [r["seed"] for r in result["runs"]] == [0, 1]
        assert all(len(r["validation_error"]) == 2 for r in result["runs"])
        assert all(r["learning_rate"] == best["learning_rate"] for r in result["runs"])
        # The commit of the code the sweep imported, captured before it trained.
        assert result["provenance"]["git_commit"] == provenance.git_commit()[0]


def test_provenance_is_captured_once_per_process():
    assert provenance.at_process_start() is provenance.at_process_start()
    assert set(provenance.at_process_start()) == set(provenance.environment())


def test_a_rerun_resumes_and_a_changed_protocol_is_refused(swept, tmp_path):
    plan, shared_root, data = swept
    root = str(tmp_path / "sweep")
    shutil.copytree(shared_root, root)  # a rerun rewrites the plan file
    path = os.path.join(root, plan.groups[0].directory, grid.RESULT_FILE)
    before = os.path.getmtime(path)
    grid.run(plan, root, log=lambda _: None)
    assert os.path.getmtime(path) == before
    dispatched_differently = tiny_preset(data)
    dispatched_differently.steps_per_call = 2  # speed, not results: still this group's
    grid.run(grid.plan_from_config("tiny", dispatched_differently), root, log=lambda _: None)
    assert os.path.getmtime(path) == before
    changed = tiny_preset(data)
    changed.learning_rates = (0.1,)
    with pytest.raises(UserError, match="holds a result made with another recipe"):
        grid.run(grid.plan_from_config("tiny", changed), root, log=lambda _: None)


def test_report_has_one_row_per_selected_run_and_the_search(swept, tmp_path):
    plan, root, _ = swept
    paths = grid_report.write(root, str(tmp_path), "tiny", plan.references, plan.title)
    with open(tmp_path / "tiny.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(grid_report.CSV_COLUMNS)
    assert len(table) == 2 * 2  # two groups, two seeds
    assert {r["method"] for r in table} == {"dense", "smh"}
    with open(tmp_path / "tiny_search.csv") as f:
        assert len(list(csv.DictReader(f))) == 2 * 2
    text = (tmp_path / "tiny_tables.md").read_text()
    assert "[9.99]" in text and "| smh | 0.25 |" not in text  # labels, not raw floats
    assert str(tmp_path / "tiny_tables.md") in paths


def test_results_written_before_runs_recorded_weight_decay_are_reported(swept, tmp_path):
    plan, shared_root, _ = swept
    root = tmp_path / "old"
    shutil.copytree(shared_root, root)
    path = root / plan.groups[0].directory / grid.RESULT_FILE
    result = json.loads(path.read_text())
    del result["selected_weight_decay"]
    for run in (*result["runs"], *result["search"], *result["finals"]):
        del run["weight_decay"]
    path.write_text(json.dumps(result))
    grid_report.write(str(root), str(tmp_path), "old", plan.references, plan.title)
    with open(tmp_path / "old.csv") as f:
        assert {r["weight_decay"] for r in csv.DictReader(f)} == {"0.0"}
    assert "| dense | 1 | 0 | " in (tmp_path / "old_tables.md").read_text()


def test_the_sweep_command_runs_resident_presets(swept, tmp_path):
    plan, root, data = swept
    preset = tmp_path / "tiny_preset.py"
    preset.write_text("import ml_collections\n\n\ndef get_config(arg=None):\n"
                      f"    return ml_collections.ConfigDict({tiny_preset(data).to_dict()!r})\n")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"), f"--preset={preset}",
         f"--root={root}", "--collect_only", f"--out_dir={tmp_path}", "--name=cli"],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cli.csv").exists()
    bad = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"), f"--preset={preset}",
         f"--root={root}", "--set", "recipe.epochz=3"],
        capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "the preset has no 'recipe.epochz'" in bad.stderr
    for extra, message in (
            ([], "--groups 'mlp5_*' matches no group of preset 'tiny_preset'; its groups: "
                 "mlp_dense_1, mlp_smh_1-4"),
            (["--collect_only"], "--collect_only reports every group under --root")):
        refused = subprocess.run(
            [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"), f"--preset={preset}",
             f"--root={tmp_path / 'refused'}", "--groups=mlp_smh_*,mlp5_*", *extra],
            capture_output=True, text=True, check=False)
        assert refused.returncode == 2 and message in refused.stderr
        assert not (tmp_path / "refused").exists()  # refused before anything is written
    scalar = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"), f"--preset={preset}",
         f"--root={root}", "--collect_only", "--set", "seeds=3"],
        capture_output=True, text=True, check=False)
    assert scalar.returncode == 2 and "--set 'seeds=3': seeds takes a tuple like (0, 1)" in (
        scalar.stderr)


def test_groups_patterns_keep_only_the_groups_they_match(tmp_path):
    plan = grid.plan_from_config("tiny", tiny_preset(str(tmp_path)))
    assert [g.directory for g in grid.only_groups(plan, ["*_smh_*"]).groups] == ["mlp_smh_1-4"]
    assert grid.only_groups(plan, ["mlp_dense_1", "mlp_smh_1-4"]).groups == plan.groups
    with pytest.raises(UserError, match="--groups: no pattern given"):
        grid.only_groups(plan, [])


def test_weight_decays_are_searched_with_the_rates_and_chosen_on_validation(tmp_path):
    make_mnist(str(tmp_path / "mnist"))
    c = tiny_preset(str(tmp_path / "mnist"))
    c.weight_decays = (0.0, 0.01)
    c.groups = c.groups[:1]
    plan = grid.plan_from_config("tiny", c)
    result = grid.run_group(plan, plan.groups[0], str(tmp_path / "sweep"), grid.resident.load(
        plan.dataset, plan.splits), log=lambda _: None)
    assert [(s["learning_rate"], s["weight_decay"]) for s in result["search"]] == [
        (0.03, 0.0), (0.3, 0.0), (0.03, 0.01), (0.3, 0.01)]
    # The decay reaches training: same seed and rate, other curves.
    assert result["search"][0]["train_loss"] != result["search"][2]["train_loss"]
    ranked = sorted(result["search"], key=lambda s: (s["best_validation_error"],
                                                     s["learning_rate"], s["weight_decay"]))
    assert [(f["learning_rate"], f["weight_decay"]) for f in result["finals"]] == [
        (s["learning_rate"], s["weight_decay"]) for s in ranked[:2]]
    best = min(result["finals"], key=lambda f: (f["best_validation_error"],
                                                f["learning_rate"], f["weight_decay"]))
    assert (result["selected_learning_rate"], result["selected_weight_decay"]) == (
        best["learning_rate"], best["weight_decay"])
    assert all(r["weight_decay"] == best["weight_decay"] for r in result["runs"])
    assert result["fingerprint"]["weight_decays"] == [0.0, 0.01]
    grid_report.write(str(tmp_path / "sweep"), str(tmp_path), "wd")
    with open(tmp_path / "wd_search.csv") as f:
        assert [float(r["weight_decay"]) for r in csv.DictReader(f)] == [0, 0, 0.01, 0.01]
    assert f"lr {best['learning_rate']:g}, wd {best['weight_decay']:g}: " in (
        tmp_path / "wd_tables.md").read_text()


def test_a_grid_of_one_setting_skips_the_search_and_trains_every_seed_together(
        tmp_path, monkeypatch):
    make_mnist(str(tmp_path / "mnist"))
    c = tiny_preset(str(tmp_path / "mnist"))
    c.learning_rates = (0.3,)
    c.groups = c.groups[:1]
    plan = grid.plan_from_config("tiny", c)
    real, calls = grid.resident.train_runs, []

    def recording(module, data, recipe, rates, seeds, *args, **kwargs):
        calls.append((recipe.epochs, list(rates), list(seeds)))
        return real(module, data, recipe, rates, seeds, *args, **kwargs)

    monkeypatch.setattr(grid.resident, "train_runs", recording)
    result = grid.run_group(plan, plan.groups[0], str(tmp_path / "sweep"), grid.resident.load(
        plan.dataset, plan.splits), log=lambda _: None)
    assert calls == [(2, [0.3, 0.3], [0, 1])]  # full length, both seeds in one call
    assert result["search"] == [] and result["finals"] == []
    assert result["selected_learning_rate"] == result["searched_learning_rate"] == 0.3
    assert [(r["seed"], len(r["validation_error"])) for r in result["runs"]] == [(0, 2), (1, 2)]
    grid_report.write(str(tmp_path / "sweep"), str(tmp_path), "one")
    with open(tmp_path / "one.csv") as f:
        assert [r["seed"] for r in csv.DictReader(f)] == ["0", "1"]
    with open(tmp_path / "one_search.csv") as f:
        assert list(csv.DictReader(f)) == []
    tables = (tmp_path / "one_tables.md").read_text()
    assert "| dense | 1 |" in tables and "The search" not in tables


def test_one_weight_decay_is_the_recipes_and_keeps_the_groups_identity(tmp_path):
    decayed = tiny_preset(str(tmp_path))
    decayed.recipe.weight_decay = 0.001
    listed = tiny_preset(str(tmp_path))
    listed.weight_decays = (0.001,)
    a, b = (grid.plan_from_config("tiny", c) for c in (decayed, listed))
    assert b.weight_decays == () and b.recipe == a.recipe
    assert b.fingerprint(b.groups[0]) == a.fingerprint(a.groups[0])
    assert "weight_decays" not in b.fingerprint(b.groups[0])


def test_searched_weight_decays_in_another_order_are_the_same_search(tmp_path):
    one, other = tiny_preset(str(tmp_path)), tiny_preset(str(tmp_path))
    one.weight_decays, other.weight_decays = (5e-4, 0.0), (0.0, 5e-4)
    a, b = (grid.plan_from_config("tiny", c) for c in (one, other))
    assert a.weight_decays == (0.0, 5e-4)
    assert a.fingerprint(a.groups[0]) == b.fingerprint(b.groups[0])


def test_a_rate_that_fails_a_seed_falls_back_to_the_next_smaller_one(swept, tmp_path,
                                                                      monkeypatch):
    plan, _, _ = swept
    real = grid.resident.train_runs

    # Decays searched too: the fallback changes the rate and keeps the chosen decay.
    plan = dataclasses.replace(plan, steps_per_call=3, weight_decays=(0.0, 0.01))

    def unstable_at_high_rates(module, data, recipe, rates, seeds, log, steps_per_call,
                               weight_decays):
        assert steps_per_call == 3  # the preset's dispatch reaches every training call
        runs = real(module, data, recipe, rates, seeds, log, steps_per_call, weight_decays)
        for run, rate, seed in zip(runs, rates, seeds, strict=True):
            if rate == 0.3 and seed == 1:  # passes the search (seed 0), fails seed 1
                run.train_loss[-1] = float("nan")
            if rate == 0.3 and seed == 0 and run.weight_decay == 0.01:  # ... where it wins
                run.validation_error[:] = [0.0] * len(run.validation_error)
        return runs

    monkeypatch.setattr(grid.resident, "train_runs", unstable_at_high_rates)
    result = grid.run_group(plan, plan.groups[0], str(tmp_path), grid.resident.load(
        plan.dataset, plan.splits), log=lambda _: None)
    assert result["searched_learning_rate"] == 0.3 and result["diverged_rates"] == [0.3]
    assert result["selected_learning_rate"] == 0.03 and result["selected_weight_decay"] == 0.01
    assert all((r["learning_rate"], r["weight_decay"]) == (0.03, 0.01) for r in result["runs"])


def test_bad_presets_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="mlp4_1-2: unknown setting; allowed: mlp3_1-64"):
        sweep_plan.load_preset_config(os.path.join(
            ROOT, "configs", "sweeps", "hashednets_mnist_smh_variants.py"), "mlp4_1-2")
    c = tiny_preset(str(tmp_path))
    c.groups = [dict(net="mlp", method="rer")]
    with pytest.raises(UserError, match="method 'rer' is not one of"):
        grid.plan_from_config("bad", c)
    c = tiny_preset(str(tmp_path))
    c.search_epochs = 5
    with pytest.raises(UserError, match="search_epochs 5 must be in 1..2"):
        grid.plan_from_config("bad", c)
    for decays, message in (((0.1, -0.1), r"weight_decays \(0.1, -0.1\) must be distinct"),
                            ((0.1, 0.1), r"weight_decays \(0.1, 0.1\) must be distinct")):
        c = tiny_preset(str(tmp_path))
        c.weight_decays = decays
        with pytest.raises(UserError, match=message):
            grid.plan_from_config("bad", c)
    c = tiny_preset(str(tmp_path))
    c.recipe.weight_decay = 0.5
    c.weight_decays = (0.0, 0.1)
    with pytest.raises(UserError, match="recipe.weight_decay 0.5 and weight_decays"):
        grid.plan_from_config("bad", c)
    c = tiny_preset(str(tmp_path))
    c.steps_per_call = -3
    with pytest.raises(UserError, match="steps_per_call -3 must be an integer >= 0"):
        grid.plan_from_config("bad", c)
    c = tiny_preset(str(tmp_path))
    c.steps_per_call = "x"
    with pytest.raises(UserError, match="steps_per_call 'x' must be an integer >= 0"):
        grid.plan_from_config("bad", c)
    c = tiny_preset(str(tmp_path))
    c.groups[1]["steps_per_call"] = 2.5
    with pytest.raises(UserError, match=r"groups\[1\].steps_per_call 2.5 must be an integer"):
        grid.plan_from_config("bad", c)


def test_a_group_may_dispatch_its_epochs_its_own_way(tmp_path):
    c = tiny_preset(str(tmp_path))
    c.steps_per_call = 4
    c.groups[1]["steps_per_call"] = 0
    plan = grid.plan_from_config("tiny", c)
    assert [plan.dispatch(g) for g in plan.groups] == [4, 0]
    assert plan.fingerprint(plan.groups[1]) == grid.plan_from_config(
        "tiny", tiny_preset(str(tmp_path))).fingerprint(plan.groups[1])  # speed only


def test_variant_groups_are_dispatched_as_their_protocol_preset_dispatches_the_net():
    sweeps = os.path.join(ROOT, "configs", "sweeps")
    _, lenets = sweep_plan.load_preset_config(os.path.join(sweeps, "lenet_mnist.py"))
    protocol = {g["net"]: g.get("steps_per_call") for g in lenets.groups}
    assert protocol == {"lenet_300_100": None, "lenet5": 10}
    for arg in ("lenet5_1-8", "mlp5_1-8"):
        name, config = sweep_plan.load_preset_config(
            os.path.join(sweeps, "hashednets_mnist_smh_variants.py"), arg)
        plan = grid.plan_from_config(name, config)
        assert [plan.dispatch(g) for g in plan.groups] == [protocol.get(g.net) or 0
                                                           for g in plan.groups], arg


def test_the_lenet_preset_argument_selects_a_net_and_adds_weight_decay():
    path = os.path.join(ROOT, "configs", "sweeps", "lenet_mnist.py")
    _, default = sweep_plan.load_preset_config(path)
    _, chosen = sweep_plan.load_preset_config(path, "net=lenet_300_100,weight_decay=0.0005")
    assert chosen.groups == [g for g in default.groups if g["net"] == "lenet_300_100"]
    plan, default_plan = (grid.plan_from_config("lenet", c) for c in (chosen, default))
    assert plan.recipe.weight_decay == 0.0005 and default_plan.recipe.weight_decay == 0.0
    # Another recipe: a group's results are not mistaken for the default protocol's.
    assert plan.fingerprint(plan.groups[0]) != default_plan.fingerprint(
        default_plan.groups[0])
    for arg, message in (("net=lenet4", "net='lenet4' is not one of lenet_300_100, lenet5"),
                         ("weight_decay=-1", "weight_decay=-1.0 must be >= 0"),
                         ("decay=1", "config argument 'decay' is unknown")):
        with pytest.raises(UserError, match=re.escape(message)):
            sweep_plan.load_preset_config(path, arg)


RESIDENT_PRESETS = sorted(
    os.path.join(ROOT, "configs", "sweeps", n)
    for n in os.listdir(os.path.join(ROOT, "configs", "sweeps")) if n.endswith(".py")
    and sweep_plan.load_preset_config(
        os.path.join(ROOT, "configs", "sweeps", n))[1].get("kind") == "resident")


# Each preset with its default setting; presets with settings, each other setting too.
PRESET_SETTINGS = [(path, None) for path in RESIDENT_PRESETS] + [
    (os.path.join(ROOT, "configs", "sweeps", "hashednets_mnist_smh_variants.py"), "mlp5_1-8")]


@pytest.mark.parametrize("path,arg", PRESET_SETTINGS,
                         ids=[os.path.basename(p)[:-3] + (f":{a}" if a else "")
                              for p, a in PRESET_SETTINGS])
def test_every_resident_preset_builds_each_group_at_its_size(path, arg):
    name, config = sweep_plan.load_preset_config(path, arg)
    plan = grid.plan_from_config(name, config)
    assert plan.groups and plan.learning_rates == tuple(sorted(plan.learning_rates))
    dense_counts = {}
    for group in plan.groups:
        spec = ModelSpec(group.net, num_classes=10, overrides=dict(group.model))
        built = methods.build(spec, group.method, group.compression, (1, 28, 28, 1),
                              **dict(group.options))
        if (group.net, group.model) not in dense_counts:
            dense_counts[group.net, group.model] = methods.build(
                spec, "dense", 1.0, (1, 28, 28, 1)).stored_params
        dense = dense_counts[group.net, group.model]
        # Default hashed sizes are exact; widths, ranks and other pools' factors move in
        # whole units (up to ~6% at 1/64).
        exact = group.method in ("dense", "hashnet") or (group.method, group.options) == (
            "smh", ())
        tolerance = 0.01 if exact else 0.1
        assert methods.relative_size_error(built, dense, group.compression) < tolerance, group


def test_sizes_are_labelled_as_published_and_near_sizes_share_a_column():
    assert [grid.compression_label(c) for c in (1.0, 0.125, 1 / 64, 0.01509)] == [
        "1", "1/8", "1/64", "0.01509"]
    # A variant sized in whole units (M = 6: 3% under 1/64) sits in the 1/64 column.
    assert grid_report.table_column(0.01509) == 1 / 64
    assert grid_report.table_column(0.125) == 0.125
    assert grid_report.table_column(0.1) == 0.1
