"""Where a pretraining step's time goes, on the device it runs on: time by kind, ops per step, compiled graphs.

    python benchmarks/step_profile.py [--presets P ...] [--paths mae ssast full] [--batch-size B] [--steps S]
                                      [--device cpu|cuda] [--precision fp32|bf16] [--threads N] [--no-compile]
                                      [--json FILE] [--markdown FILE]

The step is benchmarks/pretrain_step.py's (forward + loss, backward, clipping, AdamW; masks pre-drawn), built by its
`setup_path` / `build`, so the paths are the same: mae (ours), ssast (SSAST as published), full (one all-token pass).
Eager: torch.profiler over --steps steps after one warm-up step; each op's self time goes to one kind:
  matmul            mm / addmm / bmm / linear ... and their backward
  attention         scaled_dot_product_attention's kernels (flash / efficient / math) and their backward
  norm/elementwise  layer norm, GELU, softmax, adds, losses: every other op that computes
  optimiser         AdamW (the fused kernel), gradient clipping (_foreach_*), zero_grad
  data movement     copies, casts, cat / stack, gather / scatter, index, sorts (the masked-token gathers), fills
  host              ops that only make views or allocate, the autograd engine's and Python's own time: the step's
                    wall time not spent in an op of another kind (on CUDA: the time the device sits idle)
On CPU the times are CPU self times; on CUDA, device (kernel) times, and "kernels / step" counts the launches.
"aten ops / step": every aten op the dispatcher ran (on CPU a proxy for kernel launches); "compute ops": those of
them that are leaves and not views (what a fusing compiler can merge).
Compiled (unless --no-compile): torch._dynamo.explain of the step's forward + loss gives its graphs and graph
breaks (with reasons); then --steps + 1 steps on different pre-drawn masks under a backend that counts the graphs
dynamo hands over: any graph after the first step's is a recompile. This needs no C++ / Triton compilation, so it
runs in seconds on a CPU and says the same for inductor on CUDA (the graphs are dynamo's, before the backend).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, provenance, set_threads, sync, table, write_json  # noqa: E402

import torch  # noqa: E402

BASE_PRESETS = ["mae-ast-patch-12l", "msm-mae-base-80x208p16x16"]
PATHS = ("mae", "ssast", "full")
KINDS = ("matmul", "attention", "norm/elementwise", "optimiser", "data movement", "host")
MATMUL = {"mm", "addmm", "bmm", "matmul", "linear", "baddbmm", "addbmm", "_addmm_activation", "mkldnn_linear",
          "_mkl_linear", "mkldnn_matmul", "_int_mm", "dot", "mv", "addmv"}
MOVEMENT = {"copy_", "_to_copy", "to", "clone", "contiguous", "cat", "stack", "gather", "scatter", "scatter_",
            "scatter_add", "scatter_add_", "index", "index_select", "index_put_", "_index_put_impl_", "where", "fill_",
            "zero_", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "sort", "argsort", "nonzero",
            "masked_fill", "masked_fill_", "pad", "constant_pad_nd", "repeat", "new_zeros", "new_ones", "embedding",
            "gather_backward", "scatter_backward", "select_backward", "slice_backward", "index_add_"}
VIEWS = {"view", "reshape", "permute", "transpose", "t", "expand", "expand_as", "as_strided", "unsqueeze", "squeeze",
         "slice", "select", "split", "split_with_sizes", "unbind", "chunk", "empty", "empty_like", "empty_strided",
         "detach", "detach_", "alias", "_unsafe_view", "resolve_conj", "resolve_neg", "lift_fresh", "diagonal",
         "narrow", "flatten", "unflatten", "result_type", "resize_", "view_as", "_reshape_alias", "numpy_T",
         "is_nonzero", "item", "_local_scalar_dense", "set_", "_has_compatible_shallow_copy_type", "requires_grad_"}


# ---- classification ------------------------------------------------------------------------------------------------
def own_kind(name: str) -> str | None:
    """The kind an op's name says, None for a generic computing op (decided by its ancestors, else elementwise)."""
    low = name.lower()
    if low.startswith("optimizer.") or "_fused_adam" in low or "_foreach_" in low:
        return "optimiser"
    if "attention" in low or "sdpa" in low or "flash" in low or "fmha" in low:
        return "attention"
    if not name.startswith("aten::"):
        if any(k in low for k in ("gemm", "cutlass", "matmul", "cublas", "sm90_xmma", "ampere_", "_mm_")):
            return "matmul"
        if "memcpy" in low or "memset" in low:
            return "data movement"
        return "host"  # record_function scopes, the autograd engine, CUDA runtime calls
    op = name[6:]
    if op in MATMUL:
        return "matmul"
    if op in MOVEMENT:
        return "data movement"
    if op in VIEWS:
        return "host"
    return None


def kind_of(event) -> str:
    """One event's kind: its own name's, else its nearest ancestor's (attention / matmul / optimiser), else
    norm/elementwise. Anything under an Optimizer.* scope is the optimiser's."""
    mine, up = own_kind(event.name), event.cpu_parent
    while up is not None:
        k = own_kind(up.name)
        if k == "optimiser":
            return k
        if mine is None and k in ("attention", "matmul"):
            mine = k
        up = up.cpu_parent
    return mine or "norm/elementwise"


def is_aten_leaf(event) -> bool:
    return event.name.startswith("aten::") and not any(c.name.startswith("aten::") for c in event.cpu_children)


# ---- eager profile -------------------------------------------------------------------------------------------------
def profile_eager(step, device: torch.device, steps: int) -> dict:
    """Profile `steps` calls of step() (after one warm-up): wall ms / step, ms / step by kind, op and kernel counts."""
    from torch.profiler import ProfilerActivity, profile

    step()
    sync(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        wall = (time.perf_counter() - t0) / steps
    events = [e for e in prof.events() if getattr(e.device_type, "name", "CPU") == "CPU"]
    on_cuda = device.type == "cuda"
    by_kind = dict.fromkeys(KINDS, 0.0)
    for e in events:
        t = e.self_device_time_total if on_cuda else e.self_cpu_time_total  # microseconds
        by_kind[kind_of(e)] += t / 1e3 / steps
    busy = sum(v for k, v in by_kind.items() if k != "host")
    by_kind["host"] = max(0.0, wall * 1e3 - busy)  # on CPU: views, engine, Python; on CUDA: the device idle
    aten = [e for e in events if e.name.startswith("aten::")]
    kernels = sum(len(getattr(e, "kernels", []) or []) for e in events)
    kernels = max(kernels, sum(1 for e in prof.events() if getattr(e.device_type, "name", "CPU") == "CUDA"))
    return dict(wall_ms=wall * 1e3, ms_by_kind=by_kind, aten_ops_per_step=len(aten) / steps,
                compute_ops_per_step=sum(1 for e in aten if is_aten_leaf(e) and kind_of(e) != "host") / steps,
                kernels_per_step=kernels / steps if on_cuda else None)


# ---- compiled: graphs, breaks, recompiles --------------------------------------------------------------------------
def compile_report(preset: str, path: str, batch: int, device: torch.device, precision: str, steps: int) -> dict:
    """Graphs and graph breaks of the step's forward + loss (torch._dynamo.explain), and recompiles over steps on
    other masks (a counting backend; the backward is AOTAutograd's and adds no dynamo graph)."""
    import torch._dynamo as dynamo

    from hear_maeast.config import get_preset
    from pretrain_step import build, materialise_optimizer_state, pre_drawn, spectrograms

    cfg = get_preset(preset).replace(mask_ratio=0.75)
    torch.manual_seed(0)
    model, optimizer, loss_fn, _, draw = build(cfg, path, device, precision)
    g = torch.Generator().manual_seed(0)
    spec = spectrograms(cfg, model.frontend if path == "mae" else model.mae.frontend, batch, g, str(device))
    masks = pre_drawn(draw, batch, g, steps + 1)
    materialise_optimizer_state(model, optimizer)
    dynamo.reset()
    ex = dynamo.explain(loss_fn)(spec, *masks[0])
    graphs: list[int] = []

    def counting(gm, example_inputs):
        graphs.append(len(gm.graph.nodes))
        return gm.forward

    dynamo.reset()
    fn = torch.compile(loss_fn, backend=counting, dynamic=False)
    first = None
    for i, m in enumerate(masks):
        fn(spec, *m).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        first = len(graphs) if i == 0 else first
    dynamo.reset()
    return dict(graphs=ex.graph_count, graph_breaks=ex.graph_break_count, ops_in_graphs=ex.op_count,
                break_reasons=[str(r.reason)[:300] for r in ex.break_reasons], recompiles=len(graphs) - first,
                steps_checked=len(masks))


# ---- driver --------------------------------------------------------------------------------------------------------
def run(presets, paths, batch: int, steps: int, device: str, precision: str, compiled: bool, log=print) -> dict:
    from pretrain_step import setup_path

    dev = torch.device(device)
    rows, out = [], {}
    for preset in presets:
        for path in paths:
            t0 = time.perf_counter()
            _, step = setup_path(preset, path, 0.75, batch, device, precision, n_masks=steps + 1)
            res = profile_eager(step, dev, steps)
            del step
            if compiled:
                res["compiled"] = compile_report(preset, path, batch, dev, precision, steps)
            out[f"{preset}/{path}"] = res
            c = res.get("compiled", {})
            share = {k: v / res["wall_ms"] for k, v in res["ms_by_kind"].items()}
            rows.append(dict(preset=preset, path=path, ms=res["wall_ms"], **share, aten=res["aten_ops_per_step"],
                             leaf=res["compute_ops_per_step"], kernels=res["kernels_per_step"], graphs=c.get("graphs"),
                             breaks=c.get("graph_breaks"), recompiles=c.get("recompiles")))
            log(f"  {preset} {path}: {res['wall_ms']:.0f} ms / step, {res['aten_ops_per_step']:.0f} aten ops, "
                f"compiled graphs {c.get('graphs')} breaks {c.get('graph_breaks')} recompiles {c.get('recompiles')} "
                f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return dict(rows=rows, results=out)


COLUMNS = [("preset", "preset"), ("path", "path"), ("ms", "step ms"), *[(k, k) for k in KINDS],
           ("aten", "aten ops / step"), ("leaf", "compute ops / step"), ("kernels", "kernels / step"),
           ("graphs", "graphs"), ("breaks", "graph breaks"), ("recompiles", "recompiles")]


def markdown(res: dict, title: str) -> str:
    rows = [dict(r, **{k: f"{100 * r[k]:.0f} %" for k in KINDS}) for r in res["rows"]]
    return table(rows, COLUMNS, title)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=BASE_PRESETS)
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    ap.add_argument("--batch-size", type=int, default=None, help="default: 2 on CPU, 128 on CUDA")
    ap.add_argument("--steps", type=int, default=2, help="profiled steps (after one warm-up)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default=None, choices=["fp32", "bf16"], help="default: fp32 on CPU, bf16 on CUDA")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled graphs report")
    ap.add_argument("--json", help=f"default: {RESULTS}/step_profile_<device>.json")
    ap.add_argument("--markdown", help="also write the table here (default: the JSON's name with .md)")
    a = ap.parse_args(argv)
    threads = set_threads(a.threads)
    cuda = a.device.startswith("cuda")
    batch, precision = a.batch_size or (128 if cuda else 2), a.precision or ("bf16" if cuda else "fp32")
    res = run(a.presets, a.paths, batch, a.steps, a.device, precision, not a.no_compile)
    title = (f"Step profile: batch {batch}, {precision}, mask 0.75, {threads} threads on {a.device} "
             f"(share of the step's time by kind; {a.steps} profiled steps after 1 warm-up)")
    md = markdown(res, title)
    print(md, flush=True)
    path = a.json or str(RESULTS / f"step_profile_{torch.device(a.device).type}.json")
    write_json(path, dict(res, batch_size=batch, precision=precision, steps=a.steps,
                          provenance=provenance(torch.device(a.device))))
    Path(a.markdown or Path(path).with_suffix(".md")).write_text(md.strip() + "\n")


if __name__ == "__main__":
    main()
