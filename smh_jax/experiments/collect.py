"""A sweep's results: one row per run, seed averages, CSV and Markdown (and the plot).

Finished runs are read from their summary.json; unfinished ones report their last
periodic evaluation (status `incomplete`), `stopped` (started, no logged step) or
`not run`. The sweep's own labels (ROOT/<run>/sweep_run.json) say what each run is.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Optional, Sequence

from smh_jax.errors import UserError
from smh_jax.experiments.expansion import read_json
from smh_jax.experiments.plot import method_label, plot
from smh_jax.experiments.sweep_plan import Reference

CSV_COLUMNS = (
    "run", "model", "method", "variant", "pool", "fraction", "achieved_fraction",
    "trainable_params", "dense_params", "width_multiplier", "seed", "accuracy", "top5",
    "epochs", "steps", "batch_size", "wall_seconds", "device", "status",
)
# Labels with a column of their own; any other label (e.g. a learning rate) gets an
# extra column and keeps its runs apart in the seed averages.
_STANDARD_LABELS = ("model", "method", "variant", "fraction", "seed")


def _last_eval(workdir: str) -> tuple[Optional[float], Optional[int]]:
    accuracy, step = None, None
    try:
        with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                step = record.get("step", step)
                if record.get("split") == "eval":
                    accuracy = record.get("accuracy")
    except OSError:
        pass
    return accuracy, step


def _run_names(root: str) -> list[str]:
    plan = read_json(os.path.join(root, "sweep.json"))
    if plan is not None:
        return [r["name"] for r in plan["runs"]]
    if not os.path.isdir(root):
        raise UserError(f"--root {root!r}: no such directory")
    return sorted(d for d in os.listdir(root)
                  if os.path.isfile(os.path.join(root, d, "summary.json"))
                  or os.path.isfile(os.path.join(root, d, "sweep_run.json")))


def collect(root: str) -> list[dict[str, Any]]:
    """One row per run: finished runs from summary.json, others from their last eval."""
    rows = []
    for name in _run_names(root):
        workdir = os.path.join(root, name)
        meta = read_json(os.path.join(workdir, "sweep_run.json")) or {}
        labels = dict(meta.get("labels") or {})
        summary = read_json(os.path.join(workdir, "summary.json"))
        row: dict[str, Any] = {c: None for c in CSV_COLUMNS}
        row.update({k: v for k, v in labels.items() if k not in _STANDARD_LABELS})
        row.update(run=name, model=labels.get("model"), variant=labels.get("variant", ""),
                   seed=labels.get("seed"), fraction=labels.get("fraction"),
                   trainable_params=meta.get("expected_params"),
                   dense_params=meta.get("dense_params"),
                   width_multiplier=meta.get("width_multiplier"))
        method = labels.get("method")
        if summary is not None:
            for key in CSV_COLUMNS:
                # The sweep's own labels win: fraction (a width run's matched size) and
                # dense_params (one reference for every run of a model).
                if key in summary and not (key in ("fraction", "method") or (
                        key == "dense_params" and row[key])):
                    row[key] = summary[key]
            row["status"] = "complete"
            method = method or summary.get("method")
            if row["fraction"] is None:
                row["fraction"] = summary.get("fraction")
        else:
            row["accuracy"], row["steps"] = _last_eval(workdir)
            if row["steps"] is not None:
                row["status"] = "incomplete"  # trained some steps
            elif os.path.exists(os.path.join(workdir, "log.txt")):
                row["status"] = "stopped"  # started, never reached a logged step
            else:
                row["status"] = "not run"
        row["method"] = method
        if method == "dense" and row["fraction"] is None:
            row["fraction"] = 1.0
        if row["variant"] is None:
            row["variant"] = ""
        if row["trainable_params"] and row["dense_params"]:
            row["achieved_fraction"] = row["trainable_params"] / row["dense_params"]
        rows.append(row)
    if not rows:
        raise UserError(f"--root {root!r} holds no runs (no sweep.json, no */summary.json)")
    return rows


def extra_labels(row: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, v) for k, v in row.items() if k not in CSV_COLUMNS))


def group_rows(rows: Sequence[dict]) -> dict[tuple, dict]:
    """Seed averages of the complete runs.

    Key: (model, method, variant, fraction, extra labels); value: n, accuracy (mean),
    min, max, trainable_params and wall_seconds (means).
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["status"] != "complete" or row["accuracy"] is None:
            continue
        key = (row["model"], row["method"], row["variant"],
               None if row["method"] == "dense" else row["fraction"], extra_labels(row))
        groups.setdefault(key, []).append(row)
    out = {}
    for key, members in groups.items():
        accs = [m["accuracy"] for m in members]
        out[key] = {
            "n": len(members), "accuracy": sum(accs) / len(accs), "min": min(accs),
            "max": max(accs),
            "trainable_params": sum(m["trainable_params"] for m in members) / len(members),
            "wall_seconds": sum(m["wall_seconds"] or 0 for m in members) / len(members),
        }
    return out


def write_csv(rows: Sequence[dict], path: str) -> None:
    extra = sorted({k for row in rows for k in row if k not in CSV_COLUMNS})
    columns = (*CSV_COLUMNS, *extra)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})


def _cell(value: Any, kind: str = "") -> str:
    if value is None or value == "":
        return "-"
    if kind == "pct":
        return f"{100 * value:.2f}"
    if kind == "int":
        return f"{int(round(value)):,}"
    if kind == "float":
        return f"{value:.4g}"
    if kind == "s":
        return f"{value:.0f}"
    return str(value)


def markdown(rows: Sequence[dict], groups: dict[tuple, dict]) -> str:
    lines = ["| run | method | fraction | trainable | width mult. | accuracy (%) | epochs "
             "| wall (s) | device | status |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        method = method_label(r["method"], r["variant"], extra_labels(r))
        status = r["status"]
        if status == "incomplete":
            status = f"incomplete (step {r['steps']})"
        lines.append(
            f"| {r['run']} | {method} | {_cell(r['fraction'], 'float')} "
            f"| {_cell(r['trainable_params'], 'int')} | {_cell(r['width_multiplier'], 'float')} "
            f"| {_cell(r['accuracy'], 'pct')} | {_cell(r['epochs'], 'float')} "
            f"| {_cell(r['wall_seconds'], 's')} | {_cell(r['device'])} | {status} |")
    if any(g["n"] > 1 for g in groups.values()):
        lines += ["", "Seed averages (min - max):", "",
                  "| model | method | fraction | trainable | seeds | accuracy (%) |",
                  "| --- | --- | ---: | ---: | ---: | ---: |"]
        for (model, method, variant, fraction, extra), g in sorted(
                groups.items(), key=lambda kv: (str(kv[0]), -kv[1]["n"])):
            lines.append(
                f"| {model} | {method_label(method, variant, extra)} "
                f"| {_cell(fraction, 'float')} | {_cell(g['trainable_params'], 'int')} "
                f"| {g['n']} "
                f"| {100 * g['accuracy']:.2f} ({100 * g['min']:.2f} - {100 * g['max']:.2f}) |")
    incomplete = [r["run"] for r in rows if r["status"] != "complete"]
    if incomplete:
        lines += ["", f"Not complete ({len(incomplete)}): {', '.join(incomplete)}; their "
                  "accuracy, if any, is the last periodic evaluation."]
    return "\n".join(lines) + "\n"


def write_results(root: str, out_dir: str, name: str, references: Sequence[Reference] = (),
                  title: str = "") -> dict[str, str]:
    """NAME.csv, NAME_tables.md, NAME.png and NAME.svg of everything under ROOT; returns
    their paths. The tables never overwrite a hand-written results page NAME.md.

    Title and references default to those the sweep recorded in ROOT/sweep.json.
    """
    rows = collect(root)
    plan = read_json(os.path.join(root, "sweep.json")) or {}
    if not references and plan.get("references"):
        references = [Reference(**r) for r in plan["references"]]
    title = title or plan.get("title", "")
    groups = group_rows(rows)
    os.makedirs(out_dir, exist_ok=True)
    paths = {ext: os.path.join(out_dir, f"{name}.{ext}") for ext in ("csv", "png", "svg")}
    paths["md"] = os.path.join(out_dir, f"{name}_tables.md")
    write_csv(rows, paths["csv"])
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(markdown(rows, groups))
    plot(groups, references, title, [paths["png"], paths["svg"]])
    return paths
