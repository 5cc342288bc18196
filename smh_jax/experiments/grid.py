"""Resident sweeps: compression methods x sizes, each with its own learning rate chosen on
validation, trained with the whole dataset on the device (`training/resident.py`).

A resident preset (configs/sweeps/NAME.py with `kind = "resident"`) lists *groups*: a
network, a method (experiments/methods.py), a compression factor and SMH options. Every
group goes through the same protocol:

1. search: one run per learning rate of the preset's grid (per learning rate and weight
   decay, when the preset lists `weight_decays`), all from the first seed, trained
   together, for `search_epochs` (the schedule decays over the shorter run); a grid of
   one setting has nothing to choose, so it skips the search and the selection;
2. selection: when the search is shorter than the recipe, the `finalists` (default 2)
   settings with the lowest best-epoch validation errors are trained again from the first
   seed for the recipe's full length, and the one with the lowest validation error wins
   (a short search alone favours large rates); with a full-length search, its best
   setting. Validation only, never the test error; non-finite runs lose;
3. seeds: every other seed at that setting, trained together (the first seed's
   full-length run is reused; every seed, for a grid of one setting). A rate must train
   every seed: if one diverges, all seeds are trained again at the next smaller rate of
   the grid, the weight decay kept (a rate at the edge of stability can pass one seed and
   fail another).

Each group's result (`ROOT/<group>/result.json`: the search, the selected runs and their
per-epoch validation and test errors) is written when it completes, so rerunning the
command resumes; a group whose result was made with another recipe, grid or size is
refused rather than mixed in. Presets that share a group (the same network, method,
compression, options, recipe, grid and data) can share a root and reuse it.

Preset fields: title; dataset (fields of config.dataset); splits (train, validation,
test split names); recipe (fields of resident.Recipe); search_epochs; finalists;
learning_rates; weight_decays (optional: L2 coefficients searched jointly with the rates,
each method choosing its own on validation; one coefficient trains at that one, as
recipe.weight_decay does; give one or the other); seeds; groups
[{net, method, compression, options, model}] (`model`: ModelSpec overrides); references
[{net, method, compression, test_error}] (published numbers, for the report);
steps_per_call (how an epoch is dispatched, resident.train_runs: 0, the default, runs it
as one loop; convolutional nets on CPU train several times faster in calls of about 10
unrolled steps), also settable per group. steps_per_call changes speed, not results, so
it is not part of what a stored result must match.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import fnmatch
import hashlib
import json
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import Any

import ml_collections

from smh_jax.errors import UserError
from smh_jax.experiments import methods, provenance
from smh_jax.models.spec import ModelSpec
from smh_jax.training import config_base, resident

RESULT_FILE = "result.json"
GROUP_FIELDS = ("net", "method", "compression", "options", "model", "name", "steps_per_call")


def compression_label(compression: float) -> str:
    """1/8 for 0.125, 1 for 1.0: the factor as HashedNets' tables write it (a factor that
    is not a power-of-two fraction, e.g. 0.01509, as a decimal)."""
    fraction = Fraction(compression).limit_denominator(1 << 20)
    if fraction.denominator & (fraction.denominator - 1):
        return f"{compression:g}"
    return str(fraction.numerator) if fraction.denominator == 1 else (
        f"{fraction.numerator}/{fraction.denominator}")


@dataclasses.dataclass(frozen=True)
class Group:
    """One network x method x size, trained under the preset's protocol."""

    net: str
    method: str
    compression: float
    options: tuple[tuple[str, Any], ...] = ()
    model: tuple[tuple[str, Any], ...] = ()
    name: str = ""
    steps_per_call: int | None = None  # the preset's when None; speed, not results

    @property
    def directory(self) -> str:
        if self.name:
            return self.name
        size = compression_label(self.compression).replace("/", "-")
        extra = "".join(f"_{k}-{v}" for k, v in self.options)
        return f"{self.net}_{self.method}{extra}_{size}".replace(" ", "")

    @property
    def variant(self) -> str:
        """The options that make this group differ from its method's defaults."""
        return ",".join(f"{k}={v}" for k, v in self.options)


@dataclasses.dataclass(frozen=True)
class Plan:
    """A resident preset, loaded and validated."""

    name: str
    title: str
    dataset: dict[str, Any]
    splits: tuple[str, str, str]
    recipe: resident.Recipe
    search_epochs: int
    finalists: int
    learning_rates: tuple[float, ...]
    seeds: tuple[int, ...]
    groups: tuple[Group, ...]
    references: tuple[dict[str, Any], ...]
    steps_per_call: int = 0  # how epochs are dispatched (resident.train_runs); not a result
    # Searched with the rates, ascending; () the recipe's only. plan_from_config turns one
    # coefficient into recipe.weight_decay (the same group as a recipe with that decay).
    weight_decays: tuple[float, ...] = ()
    selection: tuple[str, ...] = ()  # only_groups' patterns, when a subset is trained

    @property
    def settings(self) -> list[tuple[float, float]]:
        """The search grid: (learning rate, weight decay) pairs, rates varying fastest."""
        decays = self.weight_decays or (self.recipe.weight_decay,)
        return [(rate, decay) for decay in decays for rate in self.learning_rates]

    def dispatch(self, group: Group) -> int:
        """The group's steps_per_call, else the preset's."""
        return self.steps_per_call if group.steps_per_call is None else group.steps_per_call

    def fingerprint(self, group: Group) -> dict[str, Any]:
        """What a stored result must match to count as this group's."""
        return {"net": group.net, "method": group.method, "compression": group.compression,
                "options": [list(o) for o in group.options],
                "model": [list(m) for m in group.model],
                "dataset": self.dataset, "splits": list(self.splits),
                "recipe": dataclasses.asdict(self.recipe),
                "search_epochs": self.search_epochs, "finalists": self.finalists,
                "learning_rates": list(self.learning_rates),
                # Only when searched: results of single-decay presets keep their identity.
                **({"weight_decays": list(self.weight_decays)} if self.weight_decays else {})}


def literal(text: str) -> Any:
    """A command-line value: a Python literal (3, 0.1, (0, 1)) where it parses as one,
    else the text itself (window, /data/mnist)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_sets(config: ml_collections.ConfigDict, sets: Sequence[str]) -> None:
    """`--set key.sub=value` overrides on the preset itself (dataset.path=..., seeds=(0,))."""
    for item in sets:
        key, _, raw = item.partition("=")
        node, parts = config, key.split(".")
        for part in parts[:-1]:
            if part not in node:
                raise UserError(f"--set {item!r}: the preset has no {key!r}")
            node = node[part]
        if parts[-1] not in node:
            raise UserError(f"--set {item!r}: the preset has no {key!r}")
        value = literal(raw)
        try:
            node[parts[-1]] = tuple(value) if isinstance(value, list) else value
        except TypeError:  # ml_collections keeps each field's type
            old = node[parts[-1]]
            raise UserError(f"--set {item!r}: {key} takes a {type(old).__name__} like "
                            f"{old!r}, not {raw!r}") from None


def _steps_per_call(preset: str, field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"preset {preset!r}: {field} {value!r} must be an integer >= 0 (0: "
                        "each epoch in one call)")
    return value


def plan_from_config(name: str, config: ml_collections.ConfigDict) -> Plan:
    """A Plan from a preset's ConfigDict; UserError naming a missing or bad field."""
    for field in ("dataset", "recipe", "learning_rates", "seeds", "groups"):
        if field not in config:
            raise UserError(f"preset {name!r}: field {field!r} is missing")
    dataset = config_base.base_config().dataset
    for key, value in dict(config.dataset).items():
        if key not in dataset:
            raise UserError(f"preset {name!r}: dataset.{key} is not a dataset field")
        dataset[key] = value
    try:
        recipe = resident.Recipe(**dict(config.recipe))
    except TypeError as e:
        raise UserError(f"preset {name!r}: recipe: {e}") from None
    rates = tuple(float(r) for r in config.learning_rates)
    if not rates or any(not r > 0 for r in rates):
        raise UserError(f"preset {name!r}: learning_rates {rates} must be positive numbers")
    listed = tuple(config.get("weight_decays", ()) or ())
    if not all(isinstance(d, (int, float)) and not isinstance(d, bool) and 0.0 <= d < math.inf
               for d in listed) or len(set(listed)) != len(listed):
        raise UserError(f"preset {name!r}: weight_decays {listed} must be distinct finite "
                        "numbers >= 0")
    decays = tuple(sorted(float(d) for d in listed))  # in any order, one search
    if decays and recipe.weight_decay:
        raise UserError(f"preset {name!r}: recipe.weight_decay {recipe.weight_decay} and "
                        f"weight_decays {decays}: give one or the other")
    if len(decays) == 1:  # one coefficient is a recipe, not a search
        recipe, decays = dataclasses.replace(recipe, weight_decay=decays[0]), ()
    seeds = tuple(int(s) for s in config.seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"preset {name!r}: seeds {seeds} must be distinct integers")
    groups = []
    for i, g in enumerate(config.groups):
        g = dict(g)
        unknown = sorted(set(g) - set(GROUP_FIELDS))
        if unknown or "net" not in g or "method" not in g:
            raise UserError(f"preset {name!r}: groups[{i}] needs net and method; fields are "
                            f"{', '.join(GROUP_FIELDS)} (got {sorted(g)})")
        if g["method"] not in methods.METHODS:
            raise UserError(f"preset {name!r}: groups[{i}].method {g['method']!r} is not one "
                            f"of {', '.join(methods.METHODS)}")
        dispatch = g.get("steps_per_call")
        groups.append(Group(
            net=g["net"], method=g["method"], compression=float(g.get("compression", 1.0)),
            options=tuple(sorted(dict(g.get("options") or {}).items())),
            model=tuple(sorted(dict(g.get("model") or {}).items())), name=g.get("name", ""),
            steps_per_call=None if dispatch is None else _steps_per_call(
                name, f"groups[{i}].steps_per_call", dispatch)))
    names = [g.directory for g in groups]
    if len(set(names)) != len(names):
        raise UserError(f"preset {name!r}: two groups share a directory name")
    splits = tuple(config.get("splits", ("train", "validation", "test")))
    search_epochs = int(config.get("search_epochs", recipe.epochs))
    if not 1 <= search_epochs <= recipe.epochs:
        raise UserError(f"preset {name!r}: search_epochs {search_epochs} must be in "
                        f"1..{recipe.epochs} (the recipe's epochs)")
    finalists = int(config.get("finalists", 2))
    if finalists < 1:
        raise UserError(f"preset {name!r}: finalists {finalists} must be >= 1")
    steps_per_call = _steps_per_call(name, "steps_per_call", config.get("steps_per_call", 0))
    return Plan(name=name, title=str(config.get("title", name)), dataset=dataset.to_dict(),
                splits=splits, recipe=recipe, search_epochs=search_epochs, finalists=finalists,
                learning_rates=rates, seeds=seeds,
                groups=tuple(groups),
                references=tuple(dict(r) for r in config.get("references", ())),
                steps_per_call=steps_per_call, weight_decays=decays)


def only_groups(plan: Plan, patterns: Sequence[str]) -> Plan:
    """The plan with only the groups whose directory names match one of `patterns`
    (shell-style, e.g. `mlp5_*_1-8`); UserError for a pattern that matches none."""
    if not patterns:
        raise UserError(f"--groups: no pattern given; groups of preset {plan.name!r}: "
                        f"{', '.join(g.directory for g in plan.groups)}")
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(g.directory, pattern) for g in plan.groups):
            raise UserError(f"--groups {pattern!r} matches no group of preset {plan.name!r}; "
                            f"its groups: {', '.join(g.directory for g in plan.groups)}")
    return dataclasses.replace(plan, selection=tuple(patterns), groups=tuple(
        g for g in plan.groups if any(fnmatch.fnmatchcase(g.directory, p) for p in patterns)))


# ----------------------------------------------------------------------------- one group


def _run_json(run: resident.RunResult, share: float) -> dict[str, Any]:
    return {"learning_rate": run.learning_rate, "weight_decay": run.weight_decay,
            "seed": run.seed,
            "trainable_params": run.trainable_params, "best_epoch": run.best_epoch,
            "best_validation_error": run.best_validation_error,
            "test_error": run.test_error_at_best, "final_test_error": run.final_test_error,
            "train_loss": run.train_loss, "validation_error": run.validation_error,
            "test_error_per_epoch": run.test_error, "wall_seconds": share}


def _selection_key(run: dict[str, Any]) -> tuple[float, float, float]:
    error = run["best_validation_error"]
    return (error if math.isfinite(error) else math.inf, run["learning_rate"],
            run["weight_decay"])


def select(search: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The search run with the lowest best-epoch validation error (on ties the smaller
    rate, then the smaller weight decay)."""
    return min(search, key=_selection_key)


def setting_label(rate: float, decay: float, searched_decays: bool) -> str:
    """`lr 0.1` or, where weight decays were searched, `lr 0.1, wd 5e-05`."""
    return f"lr {rate:g}" + (f", wd {decay:g}" if searched_decays else "")


def run_group(plan: Plan, group: Group, root: str, data: resident.ResidentData,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Search, select, seeds (module doc); writes and returns ROOT/<group>/result.json."""
    directory = os.path.join(root, group.directory)
    path = os.path.join(directory, RESULT_FILE)
    fingerprint = json.loads(json.dumps(plan.fingerprint(group)))  # as the file holds it
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            done = json.load(f)
        if done.get("fingerprint") != fingerprint:
            raise UserError(f"{path} holds a result made with another recipe, grid, data or "
                            "size; use another --root or remove that directory")
        if all(s in [r["seed"] for r in done["runs"]] for s in plan.seeds):
            log(f"{group.directory}: done, skipped")
            return done
    os.makedirs(directory, exist_ok=True)
    provenance.at_process_start()  # the code this group trains with, not HEAD when it ends
    spec = ModelSpec(group.net, num_classes=data.num_classes, overrides=dict(group.model))
    built = methods.build(spec, group.method, group.compression,
                          (1, *data.image_shape), **dict(group.options))
    say = lambda text: log(f"{group.directory}: {text}")  # noqa: E731
    say(f"{built.stored_params:,} stored parameters {built.description}")
    start = time.time()
    rates = list(plan.learning_rates)
    searched_decays = bool(plan.weight_decays)
    label = lambda run: setting_label(run["learning_rate"], run["weight_decay"],  # noqa: E731
                                      searched_decays)
    steps_per_call = plan.dispatch(group)
    full = plan.search_epochs == plan.recipe.epochs

    def train(recipe, settings, seeds):
        trained = resident.train_runs(
            built.module, data, recipe, [r for r, _ in settings], seeds, log=say,
            steps_per_call=steps_per_call, weight_decays=[d for _, d in settings])
        return [_run_json(r, trained[0].wall_seconds / len(trained)) for r in trained]

    settings = plan.settings
    search, finals, best = [], [], None
    if len(settings) > 1:
        search = train(dataclasses.replace(plan.recipe, epochs=plan.search_epochs), settings,
                       [plan.seeds[0]] * len(settings))
        if full:
            best = select(search)
        else:
            finalists = [(s["learning_rate"], s["weight_decay"])
                         for s in sorted(search, key=_selection_key)
                         if math.isfinite(s["best_validation_error"])][:plan.finalists]
            finalists = finalists or [min(settings)]
            say(f"finalists {'; '.join(setting_label(*f, searched_decays) for f in finalists)}"
                f": full length from seed {plan.seeds[0]}")
            finals = train(plan.recipe, finalists, [plan.seeds[0]] * len(finalists))
            best = select(finals)
        say(f"selected {label(best)} (validation error {best['best_validation_error']:.2f}%)")
        rate, decay = best["learning_rate"], best["weight_decay"]
    else:  # one setting: nothing to choose, so no search; every seed trains at it together
        [(rate, decay)] = settings
        say(f"one setting, {setting_label(rate, decay, searched_decays)}: no search")
    searched_rate, diverged = rate, []
    while True:
        reuse = best is not None and rate == best["learning_rate"]
        runs = [best] if reuse else []
        seeds = list(plan.seeds[1:] if reuse else plan.seeds)
        if seeds:
            runs += train(plan.recipe, [(rate, decay)] * len(seeds), seeds)
        smaller = [r for r in rates if r < rate]
        if all(math.isfinite(r["train_loss"][-1]) for r in runs) or not smaller:
            break
        diverged.append(rate)
        rate = max(smaller)
        say(f"a seed diverged at learning rate {diverged[-1]:g}; every seed again at {rate:g}")
    result = {
        "group": group.directory, "net": group.net, "method": group.method,
        "compression": group.compression, "variant": group.variant,
        "stored_params": built.stored_params, "description": built.description,
        "epochs": plan.recipe.epochs, "selected_learning_rate": rate,
        "selected_weight_decay": decay,
        "searched_learning_rate": searched_rate, "diverged_rates": diverged,
        "runs": runs, "search": search, "finals": finals,
        "wall_seconds": time.time() - start, "steps_per_call": steps_per_call,
        "fingerprint": fingerprint, "provenance": provenance.at_process_start(),
    }
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)
    mean = sum(r["test_error"] for r in runs) / len(runs)
    say(f"test error {mean:.2f}% (mean of {len(runs)} seeds, best-validation epoch) in "
        f"{result['wall_seconds']:.0f} s")
    return result


def _worker(plan: Plan, groups: Sequence[Group], root: str) -> list[str]:
    """Trains `groups` in this process (a worker of `run`'s pool); `run_group` captures
    the provenance before it trains."""
    data = resident.load(plan.dataset, plan.splits)
    return [run_group(plan, g, root, data, log=lambda t: print(t, flush=True))["group"]
            for g in groups]


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) while inside (main thread only), so `with` blocks
    clean up instead of the process dying at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _digest(patterns: Sequence[str]) -> str:
    return hashlib.sha256(",".join(patterns).encode()).hexdigest()[:8]


def run(plan: Plan, root: str, parallel: int = 1,
        log: Callable[[str], None] = print) -> float:
    """Every group of the plan (resuming), `parallel` processes at once; the wall time."""
    if parallel < 1:
        raise UserError(f"--parallel {parallel}: must be >= 1")
    os.makedirs(root, exist_ok=True)
    start = time.time()
    provenance.at_process_start()
    if parallel == 1:
        data = resident.load(plan.dataset, plan.splits)
        for group in plan.groups:
            run_group(plan, group, root, data, log=log)
    else:
        # Round-robin shares, in spawned processes (JAX does not survive a fork). Leaving
        # the pool terminates its workers, also on an error or a SIGTERM to this process
        # (raised here as SystemExit), so no worker outlives the sweep.
        shares = [plan.groups[i::parallel] for i in range(parallel)]
        context = multiprocessing.get_context("spawn")
        with _sigterm_as_exit(), context.Pool(parallel) as pool:
            for result in [pool.apply_async(_worker, (plan, share, root)) for share in shares
                           if share]:
                result.get()
    wall = time.time() - start
    # A subset's record goes beside the whole preset's, named by its patterns.
    record = plan.name + (f"_groups-{_digest(plan.selection)}" if plan.selection else "")
    with open(os.path.join(root, f"{record}.json"), "w", encoding="utf-8") as f:
        json.dump({"preset": plan.name, "selection": list(plan.selection),
                   "wall_seconds": wall, "parallel": parallel,
                   "groups": [g.directory for g in plan.groups],
                   "provenance": provenance.at_process_start()}, f, indent=1)
    return wall
