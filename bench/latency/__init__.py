"""Latency, size and compute per model and runtime: ``python -m bench [options]``.

Each (model, runtime, device) runs in a fresh worker subprocess
(``bench.latency.worker``); records go to ``results/raw/*.jsonl`` and
``bench.latency.report`` turns them into CSV, Markdown and a plot.
"""
