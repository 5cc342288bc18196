"""Accuracy against trainable variables (log x), one curve per method: the paper's Figure 6."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from smh_jax.experiments.sweep_plan import Reference

_STYLE = {"smh": ("o-", "tab:blue", "SMH"), "width": ("s--", "tab:orange", "width multiplier"),
          "dense": ("D", "black", "dense")}


def method_label(method: Optional[str], variant: str,
                 extra: Sequence[tuple[str, Any]] = ()) -> str:
    """'smh', 'smh (hash2)', 'smh (hash2, lr=0.1)'."""
    details = [variant] if variant else []
    details += [f"{k}={v}" for k, v in extra]
    return f"{method or '-'} ({', '.join(details)})" if details else (method or "-")


def plot(groups: dict[tuple, dict], references: Sequence[Reference], title: str,
         paths: Sequence[str]) -> None:
    """Draws `collect.group_rows` groups (error bars: min-max over seeds) and published
    reference points, and saves the figure to every path (.png, .svg, ...)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    fig, ax = plt.subplots(figsize=(7.5, 5))
    models = sorted({k[0] for k in groups})
    series: dict[tuple, list] = {}
    for (model, method, variant, _, extra), g in groups.items():
        series.setdefault((model, method, variant, extra), []).append(g)
    extra_colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"][2:] * 4)
    for (model, method, variant, extra), members in sorted(series.items(), key=str):
        members.sort(key=lambda g: g["trainable_params"])
        x = [g["trainable_params"] for g in members]
        y = [100 * g["accuracy"] for g in members]
        err = [[100 * (g["accuracy"] - g["min"]) for g in members],
               [100 * (g["max"] - g["accuracy"]) for g in members]]
        fmt, color, label = _STYLE.get(method, ("^", None, method))
        if variant or extra:
            fmt, color, label = "^", next(extra_colors), method_label(method, variant, extra)
        if len(models) > 1:
            label = f"{model} {label}"
        ax.errorbar(x, y, yerr=err if any(max(e) > 0 for e in err) else None, fmt=fmt,
                    color=color, label=label, capsize=3, markersize=6)
        if method == "dense" and not variant:
            ax.axhline(y[0], color=color, linestyle=":", linewidth=0.8)
    for ref in references:
        ax.scatter([ref.params], [ref.accuracy], marker=ref.marker, s=110, facecolors="none",
                   edgecolors="crimson", linewidths=1.4, label=ref.label, zorder=5)
    ax.set_xscale("log")
    low, high = ax.get_xlim()
    ticks = [m * 10**e for e in range(2, 10) for m in (1, 2, 3, 5) if low <= m * 10**e <= high]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda v, _: f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}K"))
    ax.set_xlabel("trainable variables")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title or "accuracy vs trainable variables")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
