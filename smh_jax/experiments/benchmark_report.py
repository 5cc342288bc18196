"""The benchmark's report: per-measurement statistics, ratios to dense, the printed table."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from smh_jax.experiments.timing import Measurement, paired_ratios, summarize_samples


def group_report(measurements: Sequence[Measurement], group: str, reference: Optional[str],
                 batch: int) -> list[dict[str, Any]]:
    """One row per measurement of `group`: statistics, memory, and ratios to `reference`.

    Ratios: of medians, of minima (on a shared machine, the least disturbed calls), and
    the per-round paired ratios' median and p10-p90.
    """
    rows = [m for m in measurements if m.group == group]
    ref = next((m for m in rows if m.name == reference), None)
    out = []
    for m in rows:
        stats = summarize_samples(m.samples)
        row = {"name": m.name, "ms_median": stats["median"], "ms": stats,
               "ms_samples": [s * 1e3 for s in m.samples], "compile_s": m.compile_s,
               "memory_bytes": m.memory, "flops": m.flops,
               "device_peak_bytes_so_far": m.device_peak_bytes}
        if ref is not None:
            ref_stats = summarize_samples(ref.samples)
            row["ratio_to_dense"] = stats["median"] / ref_stats["median"]
            row["ratio_of_min_to_dense"] = stats["min"] / ref_stats["min"]
            row["ratio_paired"] = paired_ratios(m.samples, ref.samples)
        if group != "materialize":
            row["images_per_second"] = batch / (stats["median"] / 1e3)
        out.append(row)
    return out


def key_ratios(variants: Sequence[dict], inference: Sequence[dict]) -> dict[str, float]:
    """The comparisons the benchmark exists for, from this run's medians: SMH against
    dense, each baseline pool against SMH, inference on materialized weights against dense."""
    med = {v["name"]: v["step_ms_median"] for v in variants}
    out = {}
    if "smh" in med and "dense" in med:
        out["smh/dense"] = med["smh"] / med["dense"]
        out["smh/dense (min)"] = next(v for v in variants if v["name"] == "smh")[
            "ratio_of_min_to_dense"]
    for k in ("hash1", "hash2", "hash10", "kronecker"):
        if k in med and "smh" in med:
            out[f"{k}/smh"] = med[k] / med["smh"]
    for row in inference:
        if row["name"] == "smh materialized" and "ratio_to_dense" in row:
            out["inference materialized/dense"] = row["ratio_to_dense"]
    return out


def _span(paired: Optional[dict]) -> str:
    return "-" if paired is None else f"{paired['p10']:.3f}-{paired['p90']:.3f}"


def _mb(nbytes: Optional[int]) -> str:
    return "-" if not nbytes else f"{nbytes / 2**20:,.1f}"


def format_table(result: dict[str, Any]) -> str:
    """The printed report: absolute figures and ratios to dense."""
    lines = [
        f"{result['preset']}: {result['model']} {result['image_size']}x{result['image_size']} "
        f"batch {result['batch']} {result['dtype']} (SMH matrix {result['smh_dtype']}) on "
        f"{result['device_count']} x {result['device']}, jax {result['jax_version']}, "
        f"{result['repetitions']} interleaved repetitions, commit {result['git_commit']}",
        "",
        f"{'training step':<16} {'trainable':>11} {'ms median':>10} {'p10-p90':>19} "
        f"{'ms min':>10} {'/dense':>7} {'paired p10-p90':>15} {'img/s':>9} {'peak MiB':>9}",
    ]
    for v in result["variants"]:
        ratio = v.get("ratio_to_dense")
        lines.append(
            f"{v['name']:<16} {v['trainable_params']:>11,} {v['step_ms_median']:>10.2f} "
            f"{v['ms']['p10']:>9.2f}-{v['ms']['p90']:<9.2f} {v['ms']['min']:>10.2f} "
            f"{'-' if ratio is None else f'{ratio:.3f}':>7} "
            f"{_span(v.get('ratio_paired')):>15} "
            f"{v['images_per_second']:>9,.0f} {_mb(v['memory_bytes'].get('peak')):>9}")
    for group, title in (("materialize", "materialization"), ("inference", "inference")):
        rows = result[group]
        if not rows:
            continue
        lines += ["", f"{title:<28} {'ms median':>10} {'p10-p90':>17} {'/dense':>7} "
                      f"{'peak MiB':>9}"]
        for row in rows:
            ratio = row.get("ratio_to_dense")
            lines.append(f"{row['name']:<28} {row['ms_median']:>10.3f} "
                         f"{row['ms']['p10']:>8.3f}-{row['ms']['p90']:<8.3f} "
                         f"{'-' if ratio is None else f'{ratio:.3f}':>7} "
                         f"{_mb(row['memory_bytes'].get('peak')):>9}")
    if result["ratios"]:
        lines += ["", "ratios: " + ", ".join(f"{k} {v:.3f}" for k, v in result["ratios"].items())]
    return "\n".join(lines)
