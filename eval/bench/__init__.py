"""`visuomotor bench NAME`: one module a benchmark, each with `run_benchmark(json_path, quick=...) -> dict`.

`dataload` (episode store and sampler throughput), `sim` (simulator steps, rendering, collection),
`latency` (inference per action chunk, every registered policy), `tokenizer` (CARP's reconstruction
error), `frames` (PAD's predicted frames against the real ones, and its actions sampled with its own
and with the real future frames). Figures, commands and dates are in BENCHMARKS.md.
"""
