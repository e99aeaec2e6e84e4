"""The Markdown view of a raw run: set-up, peak, fastest runtime per model, full tables.

It takes the records and the table rows it is given and never imports the report module
that calls it.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from converters.formats import default_formats
from zoo.env import markdown_header
from zoo.tables import md_table

if TYPE_CHECKING:
    from bench.latency.records import PeakRecord, RawRun

MB = 2**20
SIZE_FORMATS = default_formats()  # converters.formats: what a plain convert makes


def number_cell(v: Any) -> str:
    """A latency table cell: 3 significant digits, thousands as whole numbers, ``|`` escaped."""
    if v is None or v == "":
        return ""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v).replace("|", "\\|")


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def _peak_text(run: "RawRun") -> str:
    peak = run.peak
    if not peak or not peak.gflops_per_s:
        return f"not measured ({peak.error if peak else 'no record'})"
    sizes = ", ".join(f"{k}: {v['gflops_per_s']:.0f}" for k, v in peak.by_size.items())
    sessions = "; ".join(_session(p) for p in run.peaks)
    text = (f"{peak.gflops_per_s:.1f} GFLOP/s (fastest fp32 GEMM call, {peak.threads} threads, "
            f"best of {sessions}; measured {peak.when}: {sizes})")
    if len(peak.by_precision) > 1:  # a GPU: each precision's own peak
        rates = ", ".join(f"{k} {run.peak_rate(peak.hardware, k) or 0:,.0f}"
                          for k in peak.by_precision)
        text += (f"; per precision (GFLOP/s, the reference of that precision's rows): "
                 f"{rates}")
    return text


def _skipped(run: "RawRun") -> str:
    skipped = run.env.get("bench", {}).get("skipped_runtimes") or {}
    if not skipped:
        return ""
    return ("- not measured (cannot run on this machine): "
            + "; ".join(f"`{k}`: {v}" for k, v in skipped.items()) + "\n")


def _session(p: "PeakRecord") -> str:
    value = f"{p.gflops_per_s:.1f}" if p.gflops_per_s else f"failed ({p.error})"
    if p.when == "cached":
        return f"cached from an earlier run on this machine: {value}"
    return f"{p.when} the models: {value}"


def _peak_value(peak: "PeakRecord | None") -> str:
    return f"{peak.gflops_per_s:.1f} GFLOP/s" if peak and peak.gflops_per_s else "none"


def _setup(run: "RawRun") -> str:
    bench = run.env.get("bench", {})
    return (f"- device: {bench.get('device')}; batch sizes: {bench.get('batch_sizes')}; "
            f"runtimes: {', '.join(bench.get('runtimes', []))}\n"
            f"- timing: {bench.get('timing')}; each (model, runtime) in "
            f"{(bench.get('timing') or {}).get('repeats', 1)} fresh process(es), run in "
            "interleaved passes, samples pooled; `spread` = (max - min) / min of the "
            "processes' own medians\n"
            f"- measured peak: {_peak_text(run)}\n"
            f"{_skipped(run)}"
            "- GFLOPs (2/MAC): a multiply-add counts as 2 FLOPs, in every table and in "
            "`python -m zoo list`; `gflops` is counted per image at batch 1 "
            "(torch.utils.flop_counter); `gflops_per_s` = gflops x batch / median; "
            "`peak_fraction` = gflops_per_s / the peak of the row's precision; "
            "`images_per_s` = batch / median\n"
            "- `~` marks IQR/median > 10% (unstable); `load_s` = load + first inference "
            "(compilation included), library imports excluded"
            f"{_GPU_NOTE if bench.get('device') == 'cuda' else ''}\n\n")


_GPU_NOTE = ("\n- GPU rows: timed between CUDA events (PyTorch) or by the host clock around "
             "a synchronous call (ONNX Runtime, TensorFlow: host arrays in and out); "
             "`GPU MB` = torch.cuda.max_memory_allocated during that batch size (PyTorch "
             "rows), else the process's memory as nvidia-smi reports it, else empty (not "
             "measured); a batch size after one that ran out of memory is not tried")


def _fastest(best: list[dict[str, Any]]) -> str:
    best = sorted(best, key=lambda r: (r["batch_size"], r["model"]))
    return md_table(("model", "weights", "batch", "fastest runtime", "median ms", "images/s",
                     "GFLOP/s", "of peak"),
                    ((r["model"], r["weights"], r["batch_size"], r["runtime"], r["median_ms"],
                      r["images_per_s"], r["gflops_per_s"], _pct(r["peak_fraction"]))
                     for r in best), cell=number_cell)


def _static(run: "RawRun") -> str:
    def mb(n: int | None) -> float | None:
        return n / MB if n else None

    rows = [(s.model, s.weights, f"{s.params / 1e6:.2f}" if s.params else "", s.gflops,
             s.published_gflops, mb(s.state_dict_bytes),
             *(mb(s.artifact_bytes.get(f)) for f in SIZE_FORMATS), s.error)
            for s in run.static.values()]
    return md_table(("model", "weights", "params (M)", "GFLOPs (2/MAC) counted",
                     "GFLOPs (2/MAC) published",
                     "state dict MB", *(f"{f} MB" for f in SIZE_FORMATS), "error"), rows,
                    cell=number_cell)


def _latency(rows: list[dict[str, Any]], *, gpu: bool = False) -> str:
    def flag(r: dict[str, Any]) -> str:
        return "~" if r["unstable"] else ""

    return md_table(
        ("model", "runtime", "precision", "batch", "median ms", "IQR ms", "p90 ms", "p99 ms",
         "mean ms", "images/s", "n", "procs", "spread", "load s", "RSS MB",
         *(("GPU MB",) if gpu else ()), "GFLOP/s", "of peak", "error"),
        ((r["model"], r["runtime"], r["precision"], r["batch_size"],
          f"{r['median_ms']:.3g}{flag(r)}" if r["median_ms"] is not None else "", r["iqr_ms"],
          r["p90_ms"], r["p99_ms"], r["mean_ms"], r["images_per_s"], r["n_samples"],
          r["n_processes"],
          _pct(r["process_spread"]), r["load_s"], r["peak_rss_mb"],
          *((r["peak_gpu_mb"],) if gpu else ()),
          r["gflops_per_s"], _pct(r["peak_fraction"]), r["error"]) for r in rows), cell=number_cell)


def _overhead(run: "RawRun") -> str:
    rows = [(r.model, r.runtime, r.batch_size, r.repeat + 1, r.overhead["bare_mean_ms"],
             r.overhead["harness_mean_ms"], _pct(r.overhead["overhead_rel"]),
             f"{r.overhead['empty_call_ns']:.0f}", f"{100 * r.overhead['empty_call_rel']:.4f}%")
            for r in run.latency if r.overhead]
    if not rows:
        return ""
    return ("\n## Harness overhead (`--check-overhead`)\n\n"
            "Interleaved rounds of the harness and of a bare perf_counter loop over the same "
            "`run_prepared` call (median over rounds of the per-round mean ratio), and the "
            "harness's own cost per sample (timing an empty call) relative to the call.\n\n"
            + md_table(("model", "runtime", "batch", "process", "bare ms", "harness ms",
                        "harness - bare",
                        "empty call ns", "empty / call"), rows, cell=number_cell))


def write_markdown(run: "RawRun", rows: list[dict[str, Any]], path: Path, *,
                   best: list[dict[str, Any]], plots: Sequence[str] = ()) -> Path:
    """``best``: the fastest row per (model, batch); ``plots``: PNG names to embed."""
    bench = run.env.get("bench", {})
    title = f"Latency: {bench.get('device', '?')}, {run.env.get('threads')} threads"
    text = (markdown_header(run.env, title) if run.env else f"# {title}\n\n") + _setup(run)
    hardware, gpu = run.hardware, bench.get("device") == "cuda"
    if len(hardware) <= 1:
        text += "## Fastest runtime per model\n\n" + _fastest(best)
        text += "\n## Static figures\n\n" + _static(run)
        text += "\n## All runs\n\n" + _latency(rows, gpu=gpu)
    else:  # a cluster of several kinds of node: each its own tables and its own peak
        text += "\n## Static figures\n\n" + _static(run)
        for hw in hardware:
            peak = run.peak_for(hw)
            mine = [r for r in rows if r.get("hardware") == hw]
            text += (f"\n## {hw}\n\nnodes: {', '.join(sorted({r['nodes'] for r in mine}))}; "
                     f"measured peak {_peak_value(peak)}\n\n"
                     + _fastest([r for r in best if r.get("hardware") == hw])
                     + "\n" + _latency(mine, gpu=gpu))
    text += _overhead(run)
    for name in plots:
        what = "latency and images/s vs batch size" if name.endswith("-batch.png") else (
            "latency vs FLOPs")
        text += f"\n![{what}]({name})\n"
    from zoo import atomic

    return atomic.write_text(path, text)
