"""What a sweep is: a list of train.py runs, each a config file, overrides and labels.

A sweep comes from a preset file or from flags. A preset (configs/sweeps/NAME.py, the
pattern of big_vision's configs/proj/) is a Python file whose `get_config(arg=None)`
returns a ConfigDict:

    title       str, the plot's title
    references  [{label, params, accuracy, marker}]: published points drawn on the plot
    runs        [{name, config, overrides, labels, match_width}], each one train.py run:
                  name         the run's directory under the sweep root
                  config       config file[:arg], as train.py's --config
                  overrides    ["key=value", ...], as train.py's --config.key=value
                  labels       {method, fraction, variant, seed, ...}: what the run is,
                               for the table and the plot (missing ones are filled in
                               from the config: model, method, fraction, seed)
                  match_width  optional ["key=value", ...]: make this (dense) run a
                               width-multiplier baseline, as thin as needed to have as
                               many parameters as the run these overrides describe trains

`grid` builds the same list from flags (dense, SMH fractions, matched widths, named
variants, seeds), so both paths share everything after it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from typing import Any, Optional, Sequence

from smh_jax.errors import UserError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
RUN_FIELDS = ("name", "config", "overrides", "labels", "match_width")


@dataclasses.dataclass(frozen=True)
class Reference:
    """A published point, drawn as a labelled marker (never measured here)."""

    label: str
    params: float
    accuracy: float  # percent
    marker: str = "*"  # "^": the paper gives a lower bound ("above 90%")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One train.py run as a preset or the flags describe it (before sizing)."""

    name: str
    config: str
    overrides: tuple[str, ...] = ()
    labels: dict[str, Any] = dataclasses.field(default_factory=dict)
    match_width: Optional[tuple[str, ...]] = None


@dataclasses.dataclass(frozen=True)
class Sweep:
    runs: tuple[RunSpec, ...]
    title: str = ""
    references: tuple[Reference, ...] = ()
    preset: str = ""


# ----------------------------------------------------------------------------- parsing


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    """'0.25,0.1' -> (0.25, 0.1), each in (0, 1]."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        try:
            value = float(item)
        except ValueError:
            raise UserError(f"{what}: {item!r} is not a number; give a comma-separated "
                            "list like 0.25,0.1") from None
        if not 0.0 < value <= 1.0:
            raise UserError(f"{what}: {value!r} is outside (0, 1]")
        out.append(value)
    return tuple(out)


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UserError(f"{what}: {text!r} is not a comma-separated list of integers") from None


def split_top_level(text: str) -> list[str]:
    """Splits at commas outside brackets/quotes, so tuple values like (a,b) survive."""
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_override(text: str, what: str) -> str:
    """'smh.fraction=0.1' (also '--config.smh.fraction=0.1') -> 'smh.fraction=0.1'."""
    text = text.strip()
    for prefix in ("--config.", "config."):
        if text.startswith(prefix):
            text = text[len(prefix):]
    key, sep, value = text.partition("=")
    if not sep or not _KEY_RE.match(key):
        raise UserError(f"{what}: {text!r} is not KEY=VALUE with a config key like "
                        "smh.fraction=0.1")
    return f"{key}={value}"


def parse_variant(text: str) -> tuple[str, tuple[str, ...]]:
    """'hash2=smh.pool=hash,smh.num_hashes=2' -> ('hash2', (overrides...))."""
    name, sep, rest = text.partition("=")
    if not sep or not _NAME_RE.match(name) or not rest.strip():
        raise UserError(f"--variant {text!r}: expected NAME=KEY=VALUE[,KEY=VALUE...] with a "
                        "name of letters, digits, '_', '.', '-'")
    return name, tuple(parse_override(o, f"--variant {name}") for o in split_top_level(rest))


# ----------------------------------------------------------------------------- presets


def _run_from_dict(item: Any, where: str) -> RunSpec:
    if not hasattr(item, "keys"):
        raise UserError(f"{where} is not a mapping of {', '.join(RUN_FIELDS)}")
    unknown = sorted(set(item.keys()) - set(RUN_FIELDS))
    if unknown:
        raise UserError(f"{where}.{unknown[0]} is not a run field; allowed: "
                        f"{', '.join(RUN_FIELDS)}")
    for key in ("name", "config"):
        if not item.get(key):
            raise UserError(f"{where}.{key} is missing")
    if not _NAME_RE.match(str(item["name"])):
        raise UserError(f"{where}.name {item['name']!r}: use letters, digits, '_', '.', '-'")
    overrides = tuple(parse_override(o, f"{where}.overrides")
                      for o in item.get("overrides") or ())
    match = item.get("match_width")
    if match is not None:
        match = tuple(parse_override(o, f"{where}.match_width") for o in match)
    labels = dict(item.get("labels") or {})
    return RunSpec(str(item["name"]), str(item["config"]), overrides, labels, match)


def load_preset_config(path: str, arg: Optional[str] = None) -> tuple[str, Any]:
    """(name, ConfigDict) of a preset file's `get_config(arg)`."""
    if not os.path.isfile(path):
        raise UserError(f"--preset: no such file {path!r}")
    name = os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(f"sweep_preset_{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise UserError(f"--preset {path!r} has no get_config()")
    return name, module.get_config(arg) if arg is not None else module.get_config()


def load_preset(path: str, arg: Optional[str] = None) -> Sweep:
    """The sweep a preset file's `get_config(arg)` describes (see the module doc)."""
    name, config = load_preset_config(path, arg)
    return sweep_from_config(name, config, path)


def sweep_from_config(name: str, config: Any, path: str) -> Sweep:
    """The train.py runs of a loaded preset."""
    runs = tuple(_run_from_dict(r, f"{name}.runs[{i}]")
                 for i, r in enumerate(config.get("runs") or ()))
    if not runs:
        raise UserError(f"--preset {path!r} lists no runs")
    references = tuple(Reference(**dict(r)) for r in config.get("references") or ())
    return Sweep(runs, title=str(config.get("title") or ""), references=references,
                 preset=name)


# ----------------------------------------------------------------------------- flags


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.4g}"


def grid(config: str, model: str, sets_target_params: bool, fractions: Sequence[float],
         width_fractions: Sequence[float], seeds: Sequence[int], dense: bool,
         variants: Sequence[tuple[str, Sequence[str]]]) -> list[RunSpec]:
    """Dense, SMH at `fractions`, widths matched to SMH at `width_fractions` and named
    variants, each at every seed, of one config file whose model is `model`.

    `sets_target_params`: the config file sizes SMH by smh.target_params, which must then
    be cleared for a fraction (or a dense run) to take effect.
    """
    # Clearing whichever size field the config file sets makes a run dense.
    clear = ("smh.fraction=0",) + (("smh.target_params=0",) if sets_target_params else ())
    by_fraction = ("smh.target_params=0",) if sets_target_params else ()
    groups: list[tuple[str, dict[str, Any], tuple[str, ...], Optional[tuple[str, ...]]]] = []
    if dense:
        groups.append((f"{model}_dense", {"method": "dense"}, clear, None))
    for f in fractions:
        groups.append((f"{model}_smh{_percent(f)}", {"method": "smh", "fraction": f},
                       (*by_fraction, f"smh.fraction={f}"), None))
    for f in width_fractions:
        groups.append((f"{model}_width{_percent(f)}", {"method": "width", "fraction": f},
                       clear, (*by_fraction, f"smh.fraction={f}")))
    for name, overrides in variants:
        groups.append((f"{model}_{name}", {"variant": name}, tuple(overrides), None))
    return [RunSpec(f"{prefix}_s{seed}", config, (*overrides, f"seed={seed}"),
                    {**labels, "seed": seed}, match)
            for prefix, labels, overrides, match in groups for seed in seeds]
