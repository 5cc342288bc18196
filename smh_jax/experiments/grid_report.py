"""Tables and the error-vs-compression plot of resident sweeps (experiments/grid.py).

From every `ROOT/<group>/result.json`:
- `NAME.csv`: one row per selected run (net, method, compression, stored_params, seed,
  test_error at the best-validation epoch, final_test_error, best_epoch, epochs,
  wall_seconds, learning_rate, variant, weight_decay), errors in percent;
- `NAME_search.csv`: every run of every learning-rate (and weight-decay) search (the
  first seed);
- `NAME_tables.md`: per network, the mean test error of each method at each compression next
  to the published one, the learning rates (and weight decays) chosen, and each search's
  test error at every setting of its grid (what one shared setting would have given each
  method) and its finalists (a grid of one setting has neither);
- `NAME.png` / `.svg`: test error vs compression (log scale), ours solid, published
  dashed (needs matplotlib).
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from smh_jax.experiments.grid import RESULT_FILE, compression_label, setting_label

CSV_COLUMNS = ("net", "method", "compression", "stored_params", "seed", "test_error",
               "final_test_error", "best_epoch", "epochs", "wall_seconds", "learning_rate",
               "variant", "weight_decay")
SEARCH_COLUMNS = ("net", "method", "variant", "compression", "stored_params", "seed",
                  "learning_rate", "weight_decay", "best_validation_error", "test_error",
                  "final_test_error", "best_epoch")
METHOD_ORDER = ("dense", "nn", "lrd", "lrd_learned", "hashnet", "smh")


def load_results(root: str) -> list[dict[str, Any]]:
    """Every group result under `root`, in a stable order."""
    out = []
    for path in sorted(glob.glob(os.path.join(root, "*", RESULT_FILE))):
        with open(path, encoding="utf-8") as f:
            out.append(_with_weight_decays(json.load(f)))
    return sorted(out, key=_order)


def _with_weight_decays(result: dict[str, Any]) -> dict[str, Any]:
    """Results written before runs recorded their weight decay: the recipe's, everywhere."""
    decay = result["fingerprint"]["recipe"].get("weight_decay", 0.0)
    for run in (*result["runs"], *result["search"], *result.get("finals", ())):
        run.setdefault("weight_decay", decay)
    result.setdefault("selected_weight_decay", decay)
    return result


def _order(result: dict[str, Any]) -> tuple:
    method = result["method"]
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return (result["net"], -result["compression"], rank, result.get("variant", ""))


def _label(result: dict[str, Any]) -> str:
    variant = result.get("variant", "")
    return f"{result['method']} ({variant})" if variant else result["method"]


def rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in results:
        for run in r["runs"]:
            out.append({
                "net": r["net"], "method": r["method"], "compression": r["compression"],
                "stored_params": r["stored_params"], "seed": run["seed"],
                "test_error": run["test_error"], "final_test_error": run["final_test_error"],
                "best_epoch": run["best_epoch"], "epochs": r["epochs"],
                "wall_seconds": round(run["wall_seconds"], 1),
                "learning_rate": run["learning_rate"], "variant": r.get("variant", ""),
                "weight_decay": run["weight_decay"]})
    return out


def search_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"net": r["net"], "method": r["method"], "variant": r.get("variant", ""),
             "compression": r["compression"], "stored_params": r["stored_params"],
             "seed": s["seed"], "learning_rate": s["learning_rate"],
             "weight_decay": s["weight_decay"], "best_validation_error": s["best_validation_error"],
             "test_error": s["test_error"], "final_test_error": s["final_test_error"],
             "best_epoch": s["best_epoch"]}
            for r in results for s in r["search"]]


def write_csv(table: Sequence[dict[str, Any]], columns: Sequence[str], path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        for row in table:
            writer.writerow({k: row[k] for k in columns})


def _mean(values: Sequence[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "n/a"
    if len(finite) == 1:
        return f"{finite[0]:.2f}"
    return f"{statistics.mean(finite):.2f} ± {statistics.stdev(finite):.2f}"


def _published(references: Sequence[dict[str, Any]], net: str, method: str,
               compression: float) -> str:
    for ref in references:
        if (ref["net"], ref["method"]) == (net, method) and math.isclose(
                ref["compression"], compression):
            return ref.get("text") or f"{ref['test_error']:.2f}"
    return ""


def table_column(compression: float) -> float:
    """The tables' column of a size: the nearest 1/2^k when within 5% of it (a variant
    sized in whole units sits beside the size it approximates), else the size itself."""
    nominal = 2.0 ** -round(-math.log2(compression))
    return nominal if abs(compression / nominal - 1) < 0.05 else compression


def markdown(results: Sequence[dict[str, Any]], references: Sequence[dict[str, Any]]) -> str:
    """Per network: mean test error (best-validation epoch, and last epoch) by method and
    compression, the published value beside ours, the chosen learning rates and weight
    decays, and each search's test error at every setting of the grid (a grid of one
    setting has no search)."""
    lines: list[str] = []
    by_net: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_net[r["net"]].append(r)
    for net, group in by_net.items():
        sizes = sorted({table_column(r["compression"]) for r in group}, reverse=True)
        labels = list(dict.fromkeys(_label(r) for r in group))
        cell = {(_label(r), table_column(r["compression"])): r for r in group}
        header = " | ".join(compression_label(c) for c in sizes)
        lines += [f"### {net}: test error (%), mean ± std over seeds, best-validation epoch "
                  "(published in brackets)", "", f"| method | {header} |",
                  "|---|" + "---:|" * len(sizes)]
        for label in labels:
            cells = []
            for c in sizes:
                r = cell.get((label, c))
                if r is None:
                    cells.append("")
                    continue
                text = _mean([run["test_error"] for run in r["runs"]])
                published = _published(references, net, r["method"], c)
                cells.append(f"{text} [{published}]" if published else text)
            lines.append(f"| {label} | {' | '.join(cells)} |")
        lines += ["", f"Last epoch instead of best-validation epoch ({net}):", "",
                  f"| method | {header} |", "|---|" + "---:|" * len(sizes)]
        for label in labels:
            cells = [_mean([run["final_test_error"] for run in cell[(label, c)]["runs"]])
                     if (label, c) in cell else "" for c in sizes]
            lines.append(f"| {label} | {' | '.join(cells)} |")
        lines += ["", f"Stored parameters, chosen learning rate and weight decay, seeds, wall "
                  f"seconds ({net}):", "",
                  "| method | compression | stored | learning rate | weight decay | seeds | "
                  "wall s |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in group:
            rate = f"{r['selected_learning_rate']:g}"
            if r.get("diverged_rates"):
                rate += " (a seed diverged at " + ", ".join(
                    f"{x:g}" for x in r["diverged_rates"]) + ")"
            lines.append(f"| {_label(r)} | {compression_label(r['compression'])} | "
                         f"{r['stored_params']:,} | {rate} | "
                         f"{r['selected_weight_decay']:g} | "
                         f"{len(r['runs'])} | {r['wall_seconds']:.0f} |")
        rates = sorted({s["learning_rate"] for r in group for s in r["search"]})
        if rates:  # a grid of one setting has no search
            lines += ["", f"The search ({net}, first seed): test error (%) at the "
                      "best-validation epoch for every learning rate (and weight decay) of the "
                      "grid; **bold**: the setting the seeds trained at (chosen on validation; "
                      "the next smaller rate where a seed diverged there).", "",
                      "| method | compression | weight decay | "
                      + " | ".join(f"lr {x:g}" for x in rates) + " |",
                      "|---|---:|---:|" + "---:|" * len(rates)]
        for r in group:
            for decay in sorted({s["weight_decay"] for s in r["search"]}):
                by_rate = {s["learning_rate"]: s for s in r["search"]
                           if s["weight_decay"] == decay}
                cells = []
                for x in rates:
                    s = by_rate.get(x)
                    text = "" if s is None else (f"{s['test_error']:.2f}" if math.isfinite(
                        s["test_error"]) else "diverged")
                    chosen = (x, decay) == (r["selected_learning_rate"],
                                            r["selected_weight_decay"])
                    cells.append(f"**{text}**" if chosen and text else text)
                lines.append(f"| {_label(r)} | {compression_label(r['compression'])} | "
                             f"{decay:g} | {' | '.join(cells)} |")
        finals = [r for r in group if r.get("finals")]
        if finals:
            lines += ["", f"The finalists ({net}): the search's best settings trained for "
                      "the full length from the first seed; validation error / test error (%) "
                      "at the best-validation epoch.", "",
                      "| method | compression | finalists |", "|---|---:|---|"]
            for r in finals:
                searched = "weight_decays" in r["fingerprint"]  # the grid had several
                text = "; ".join(
                    f"{setting_label(f['learning_rate'], f['weight_decay'], searched)}: "
                    f"{f['best_validation_error']:.2f} / {f['test_error']:.2f}"
                    for f in r["finals"])
                lines.append(f"| {_label(r)} | {compression_label(r['compression'])} | "
                             f"{text} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: Sequence[dict[str, Any]], references: Sequence[dict[str, Any]],
         title: str, path_stem: str) -> list[str]:
    """Test error vs compression per network (log axes); [] without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    nets = list(dict.fromkeys(r["net"] for r in results))
    fig, axes = plt.subplots(1, len(nets), figsize=(6 * len(nets), 4.5), squeeze=False)
    colors: dict[str, Any] = {}
    for ax, net in zip(axes[0], nets, strict=True):
        series: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for r in results:
            if r["net"] == net and r["method"] != "dense":
                errors = [run["test_error"] for run in r["runs"]
                          if math.isfinite(run["test_error"])]
                if errors:
                    series[_label(r)].append((r["compression"], statistics.mean(errors)))
        variant_markers = iter("s^vDPX<>*" * 4)
        for label, points in series.items():
            points.sort()
            color = colors.setdefault(label.split(" ")[0], f"C{len(colors)}")
            # A method's line; each variant of it, its own marker in the method's color.
            style = "o-" if " " not in label else next(variant_markers)
            ax.plot(*zip(*points, strict=True), style, color=color, label=label,
                    markerfacecolor="none" if " " in label else color)
        published: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for ref in references:
            if ref["net"] == net and ref["method"] != "dense" and ref.get("test_error"):
                published[ref["method"]].append((ref["compression"], ref["test_error"]))
        for method, points in published.items():
            points.sort()
            color = colors.setdefault(method, f"C{len(colors)}")
            ax.plot(*zip(*points, strict=True), "--", color=color, alpha=0.6,
                    label=f"{method} (published)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("compression factor (stored / original parameters)")
        ax.set_ylabel("test error (%)")
        ax.set_title(f"{title}: {net}" if title else net)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a dense-only panel has no lines
            ax.legend(fontsize=7)
    fig.tight_layout()
    out = []
    for ext in ("png", "svg"):
        fig.savefig(f"{path_stem}.{ext}", dpi=120)
        out.append(f"{path_stem}.{ext}")
    plt.close(fig)
    return out


def write(root: str, out_dir: str, name: str, references: Sequence[dict[str, Any]] = (),
          title: str = "") -> list[str]:
    """Writes NAME.csv, NAME_search.csv, NAME_tables.md and the plot; returns the paths.

    The tables go to NAME_tables.md so that a hand-written NAME.md beside them (the
    results page that discusses them) is never overwritten."""
    results = load_results(root)
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, name)
    write_csv(rows(results), CSV_COLUMNS, f"{stem}.csv")
    write_csv(search_rows(results), SEARCH_COLUMNS, f"{stem}_search.csv")
    with open(f"{stem}_tables.md", "w", encoding="utf-8") as f:
        f.write(markdown(results, references))
    return [f"{stem}.csv", f"{stem}_search.csv", f"{stem}_tables.md",
            *plot(results, references, title, stem)]
