"""Where a GPU training step's device time goes: a `bench_gpu.py --profile-dir` trace, kernel by kernel, grouped.

`bench_gpu.py --variants ... --profile-dir DIR` leaves, for its first variant, a JAX profiler trace of five
steps of `TrainStep` (`DIR/plugins/profile/*/*.trace.json.gz`) and XLA's optimised HLO of the training step
(`DIR/hlo/*train_step*after_optimizations.txt`). XLA runs the step as CUDA graphs, so the trace names kernels,
not the operations they came from; a fusion's kernel is named after its HLO instruction, whose metadata holds
the JAX operation (`jvp(block_3)/mlp_norm/...`). This joins the two and sums the device time per operation
(blocks folded together), per step: cuBLAS products and cuDNN attention by kernel family.

Usage: python bench/gpu_profile.py DIR [--steps 5] [--top 40] [--json OUT]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
from pathlib import Path

_OP_NAME = re.compile(r'\s*(?:ROOT )?%([\w.\-]+) = .*?op_name="([^"]*)"')


def operation_names(hlo: Path) -> dict[str, str]:
    """Kernel name (the instruction's name, '.' and '-' as '_') -> the JAX operation it came from."""
    names = {}
    for line in hlo.read_text().splitlines():
        match = _OP_NAME.match(line)
        if match:
            names[re.sub(r"[.\-]", "_", match.group(1))] = match.group(2)
    return names


def group_of(kernel: str, names: dict[str, str]) -> str:
    if kernel in names:
        operation = names[kernel].replace("jit(train_step)/", "")
        return re.sub(r"block_\d+", "block_N", operation)
    if kernel.startswith(("nvjet", "sm90_xmma", "cutlass")) or "gemm" in kernel:
        return "matrix products (cuBLAS)"
    if "cudnn" in kernel or "sdpa" in kernel:
        return "attention (cuDNN)"
    return kernel[:60]


def device_time(folder: Path, steps: int) -> tuple[dict[str, float], dict[str, int], float, float]:
    """Per-group ms per step and kernels per step; the device's busy time and the traced span per step."""
    [trace_file] = sorted(folder.glob("plugins/profile/*/*.trace.json.gz"))[-1:]
    [hlo] = sorted(folder.glob("hlo/*train_step*after_optimizations.txt"))[:1]
    names = operation_names(hlo)
    events = json.loads(gzip.decompress(trace_file.read_bytes()))["traceEvents"]
    processes = [e for e in events if e.get("ph") == "M" and e.get("name") == "process_name"]
    devices = {e["pid"] for e in processes if "GPU" in e["args"]["name"]}
    kernels = [e for e in events if e.get("ph") == "X" and e["pid"] in devices and not e["name"].startswith("Memcpy")]
    if not kernels:
        raise SystemExit(f"no GPU kernels in {trace_file}: the trace was taken on a machine without a GPU")
    total: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for event in kernels:
        group = group_of(event["name"], names)
        total[group] += event["dur"]
        count[group] += 1
    busy = sum(total.values())
    span = max(e["ts"] + e["dur"] for e in kernels) - min(e["ts"] for e in kernels)
    per_step = {g: t / steps / 1e3 for g, t in total.most_common()}
    return per_step, {g: c // steps for g, c in count.items()}, busy / steps / 1e3, span / steps / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the --profile-dir of bench_gpu.py")
    parser.add_argument("--steps", type=int, default=5, help="steps in the trace (bench_gpu.py traces 5)")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()
    per_step, kernels, busy, span = device_time(args.folder, args.steps)
    print(f"device busy {busy:.2f} ms per step, traced span {span:.2f} ms per step\n")
    print(f"{'ms/step':>8} {'kernels':>7}  operation")
    for group, ms in list(per_step.items())[: args.top]:
        print(f"{ms:8.3f} {kernels[group]:7d}  {group[:110]}")
    if args.json:
        table = {g: {"ms_per_step": round(ms, 3), "kernels_per_step": kernels[g]} for g, ms in per_step.items()}
        args.json.write_text(json.dumps({"busy_ms_per_step": busy, "span_ms_per_step": span, "operations": table}))


if __name__ == "__main__":
    main()
