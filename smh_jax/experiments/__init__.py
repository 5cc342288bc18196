"""What the scripts in scripts/ run: sweeps of train.py, benchmarks, evaluations.

Sweeps: `sweep_plan` (what runs; presets in configs/sweeps/), `expansion` (validated,
sized runs and the plan on disk), `sizing` (parameter counts and width matching),
`scheduler` (runs here, K at once), `slurm` (or as a job array), `collect` and `plot`
(CSV, Markdown, the accuracy-vs-size figure). Benchmarks: `benchmark` (training-step
cost of SMH and its baselines), `inference_memory` (per-layer materialization),
`timing` (compile, interleaved timing, memory, statistics), `benchmark_report`,
`provenance`. Evaluations: `warm_start_eval`, `artifact_eval`.
"""
