"""Timing compiled programs fairly, and what they cost in memory.

    measurements = [Measurement("train", "dense", compiled=..., args=(...)), ...]
    rounds = time_interleaved(measurements, warmup=2, repetitions=30)
    summarize_samples(measurements[0].samples)      # median, p10-p90, min (ms)

Interleaved: each round runs every measurement once, in a fresh random order (seeded),
so all of them see the same machine conditions, and no measurement always follows the
same other one (a fixed or merely rotated order would, and would always find the caches
that one left). A SIGTERM ends the timing after the last complete round, so what was
measured is still reported.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from smh_jax.training.preemption import SigtermFlag


@dataclasses.dataclass
class Measurement:
    """One callable (usually a compiled executable), its arguments and its timings."""

    group: str  # e.g. 'train', 'materialize', 'inference'
    name: str
    args: tuple
    lowered: Any = None  # compiled by `compile_all` into `compiled`
    compiled: Optional[Callable] = None
    stateful: bool = False  # train steps: output[0] replaces args[0] (donated)
    compile_s: float = 0.0
    samples: list = dataclasses.field(default_factory=list)  # seconds per call
    memory: dict = dataclasses.field(default_factory=dict)
    flops: Optional[float] = None
    device_peak_bytes: Optional[int] = None

    def run(self, calls: int = 1) -> float:
        """`calls` back-to-back calls, waiting for the outputs to be ready; seconds per call.

        More than one call per sample amortizes the host-device synchronization, which
        would otherwise add its latency to every (short) step.
        """
        start = time.perf_counter()
        for _ in range(calls):
            out = self.compiled(*self.args)
            if self.stateful:
                self.args = (out[0],) + self.args[1:]
        jax.block_until_ready(out)
        return (time.perf_counter() - start) / calls


# ----------------------------------------------------------------------------- compile


def compile_parallel(lowered: Sequence[Any], threads: int) -> list[tuple[Any, float]]:
    """(executable, seconds) of each lowering; XLA compiles in C++ without the GIL, so
    several threads cut the wait on big models."""
    def one(item: Any) -> tuple[Any, float]:
        start = time.perf_counter()
        return item.compile(), time.perf_counter() - start

    if threads <= 1:
        return [one(item) for item in lowered]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, lowered))


def compile_all(measurements: Sequence[Measurement], threads: int) -> None:
    """Compiles every measurement; those that share a lowering share one executable."""
    unique: dict[int, Any] = {}
    for m in measurements:
        unique.setdefault(id(m.lowered), m.lowered)
    done = dict(zip(unique, compile_parallel(list(unique.values()), threads), strict=True))
    for m in measurements:
        m.compiled, m.compile_s = done[id(m.lowered)]
        m.lowered = None
        m.memory = memory_bytes(m.compiled)
        m.flops = flops_of(m.compiled)


# ----------------------------------------------------------------------------- cost


def memory_bytes(compiled: Any) -> dict[str, int]:
    """What an executable needs, from XLA's `memory_analysis()` (CPU and GPU alike).

    argument, output, alias (outputs that reuse donated arguments), temp and
    generated_code bytes, and peak = argument + output - alias + temp: what the device
    must hold at once. `reported_peak` is XLA's own peak estimate, where the backend
    gives one.
    """
    stats = compiled.memory_analysis()
    if stats is None:
        return {}
    out = {k: int(getattr(stats, f"{k}_size_in_bytes", 0) or 0)
           for k in ("argument", "output", "alias", "temp", "generated_code")}
    out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    reported = int(getattr(stats, "peak_memory_in_bytes", 0) or 0)
    if reported:
        out["reported_peak"] = reported
    return out


def flops_of(compiled: Any) -> Optional[float]:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports costs
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def device_peak_bytes() -> Optional[int]:
    """Peak bytes in use on the first device so far (cumulative over the process)."""
    stats = jax.local_devices()[0].memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


# ----------------------------------------------------------------------------- timing


def time_interleaved(measurements: Sequence[Measurement], warmup: int, repetitions: int,
                     calls: int = 1, deadline: Optional[float] = None,
                     log: Callable[[str], None] = print, seed: int = 0) -> int:
    """Warm-up, then rounds that run every measurement once, each round in a fresh
    (seeded) random order; appends to each measurement's `samples`.

    With a `deadline` (a time.perf_counter() value), the repetitions are cut to what the
    warm-up's last round says fits (at least 1). A SIGTERM ends the timing after the
    last complete round. Returns the number of complete rounds.
    """
    with SigtermFlag() as stop:
        round_s = 0.0
        for m in measurements:
            last = 0.0
            for _ in range(warmup):
                last = m.run()
            round_s += last * calls
            m.device_peak_bytes = device_peak_bytes()
        if deadline is not None and round_s > 0:
            fit = int((deadline - time.perf_counter()) / round_s)
            if fit < repetitions:
                repetitions = max(1, fit)
                log(f"  time budget: {repetitions} repetitions fit ({round_s:.2f} s a round)")
        order = np.random.default_rng(seed)
        start = time.perf_counter()
        for r in range(repetitions):
            for i in order.permutation(len(measurements)):
                if stop.reached():
                    for m in measurements:  # only complete rounds: paired ratios stay paired
                        del m.samples[r:]
                    log(f"  SIGTERM: stopped after {r} complete repetitions")
                    return r
                measurements[i].samples.append(measurements[i].run(calls))
            if r == 0 or (r + 1) % max(1, repetitions // 5) == 0:
                log(f"  repetition {r + 1}/{repetitions} ({time.perf_counter() - start:.1f} s)")
        return repetitions


# ----------------------------------------------------------------------------- statistics


def summarize_samples(seconds: Sequence[float]) -> dict[str, float]:
    """Milliseconds: median, p10, p25, p75, p90, min, mean."""
    ms = np.asarray(seconds, np.float64) * 1e3
    p10, p25, p50, p75, p90 = np.percentile(ms, [10, 25, 50, 75, 90])
    return {"median": float(p50), "p10": float(p10), "p25": float(p25), "p75": float(p75),
            "p90": float(p90), "min": float(ms.min()), "mean": float(ms.mean())}


def paired_ratios(samples: Sequence[float], reference: Sequence[float]) -> dict[str, float]:
    """Per-round ratios to the reference measured in the same round: robust to drift."""
    ratios = np.asarray(samples) / np.asarray(reference)
    p10, p50, p90 = np.percentile(ratios, [10, 50, 90])
    return {"median": float(p50), "p10": float(p10), "p90": float(p90)}
