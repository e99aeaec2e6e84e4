"""Benchmarks: latency per runtime, static figures, transfer accuracy; tables under results/."""
