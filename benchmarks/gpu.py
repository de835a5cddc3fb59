"""The GPU part: bf16 autocast throughput of the base presets and the fraction of the GPU's peak it reaches (MFU).

    python benchmarks/gpu.py [--presets P ...] [--batch-size B] [--mask-ratios 0.75] [--peak-tflops T] [--json FILE]
    python benchmarks/gpu.py --check [--device cuda|cpu] [--budget 300] [--sections S ...] [--out FILE]

--check: the prepared run for a lent GPU (benchmarks/gpu_check.py says what it runs); `make gpu-check` calls it.

Runs only where CUDA is present; elsewhere it says so and exits 0 (`run_all.py` calls it either way).
Pretraining: `pretrain_step.run` on the GPU under bf16 autocast (MAE step vs the SSAST step as published, memory by
torch.cuda.max_memory_allocated), and MFU = analytic training FLOPs per step / step time / the GPU's dense bf16
peak. The FLOPs are counted from the configuration, matmuls only (see `pretrain_step.step_flops`: per block
24 L D^2 + 4 L^2 D forward, training 3 x forward); elementwise work, the optimiser and the loss are not counted,
so MFU is a lower bound on the matmul units' use. Embedding: `embed_throughput.run` under bf16 autocast.
Peak dense bf16 FLOP/s (no sparsity) by device name, from the vendors' data sheets; pass --peak-tflops for others.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_check  # noqa: E402
from common import provenance, table, write_json  # noqa: E402

import torch  # noqa: E402

BASE_PRESETS = ["msm-mae-base-80x208p16x16", "mae-ast-patch-12l", "mae-ast-frame-12l"]
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0,
                    "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.0}


def peak_tflops(name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():  # most specific first
        if key in name:
            return value
    return None


def run(presets, batch: int, mask_ratios, repeats: int, peak: float | None, embed: bool, device: str = "cuda") -> dict:
    import embed_throughput
    import pretrain_step
    from common import device_name

    dev = torch.device(device)
    name = device_name(dev)
    peak = peak or peak_tflops(name)
    out = dict(device=name, peak_bf16_tflops=peak, pretrain={}, embed=None)
    rows = []
    for preset in presets:
        res = pretrain_step.run(preset, mask_ratios, batch, torch.get_num_threads(), 2, repeats, device, "bf16")
        for r, v in res["results"].items():
            for path, m in v["paths"].items():
                tflops = m["gflop_per_s"] / 1000
                rows.append(dict(preset=preset, mask=r, path=path, ms=1000 * m["time_s"], clips=batch / m["time_s"],
                                 tflops=tflops, mfu=tflops / peak if peak else None, mib=m["memory_mib"]))
        out["pretrain"][preset] = res
    print(table(rows, [("preset", "preset"), ("mask", "mask"), ("path", "path"), ("ms", "step ms"),
                       ("clips", "clips / s"), ("tflops", "TFLOP/s"), ("mfu", "MFU"), ("mib", "act. MiB")],
                f"Pretraining step on {name}, bf16 autocast, batch {batch} (peak {peak} TFLOP/s)"), flush=True)
    out["mfu_rows"] = rows
    if embed:
        out["embed"] = embed_throughput.run(presets, [10, 600], [1, 16], torch.get_num_threads(), repeats, 120.0,
                                            device, "bf16")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=BASE_PRESETS)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--mask-ratios", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, if its name is not in the table")
    ap.add_argument("--no-embed", action="store_true", help="pretraining only")
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # "cpu" with --peak-tflops: a dry run of this script
    ap.add_argument("--json")
    ap.add_argument("--check", action="store_true", help="the prepared check for a lent GPU (benchmarks/gpu_check.py)")
    gpu_check.add_arguments(ap)
    a = ap.parse_args(argv)
    if a.check:
        gpu_check.check(a)
        return
    problem = gpu_check.device_problem(a.device, missing_cuda=False)
    if problem:
        gpu_check.usage_error(problem, "benchmarks/gpu.py")
    if torch.device(a.device).type == "cuda" and not torch.cuda.is_available():
        print("GPU benchmarks: no CUDA device here, skipped (run benchmarks/gpu.py on a machine with one).", flush=True)
        write_json(a.json, dict(skipped="no CUDA device", provenance=provenance(torch.device("cpu"))))
        return
    out = run(a.presets, a.batch_size, a.mask_ratios, a.repeats, a.peak_tflops, not a.no_embed, a.device)
    out["provenance"] = provenance(torch.device(a.device))
    write_json(a.json, out)


if __name__ == "__main__":
    main()
