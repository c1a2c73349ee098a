"""The 2×256 LSTM's (`--cell gru`: GRU's, `--cell rnn`: simple RNN's) training step against `torch.nn.LSTM`
(`nn.GRU`, `nn.RNN`) in one-thread CPU time: a figure the load of a shared machine barely moves (bench_train.py's
wall-clock race needs the machine quiet).

Both sides train the model of `bench_train.py --models lstm` (gru, rnn) (2 layers, 256 wide, context 64, batch 12,
AdamW, clip 1.0, tied embedding, characters of tinyshakespeare):
  - torch: `bench_train.py --torch-recurrent` with OMP_NUM_THREADS=1, process CPU time per iteration;
  - llmtui: the model, optimizer and loss as `llmtui run` compiles them (`build_model`, `compile_model`,
    `TrainStep`, TensorFlow, XLA), one intra-op and one inter-op thread, process CPU time per step.
Each side is a fresh process, the order flipped every round; a side's figure is the median step after the first
tenth, the result the median over rounds. One-thread CPU time measures the work each side does, not how well
it spreads it over the cores: the race (`bench_train.py --models lstm`, 2 threads, wall clock) still decides.

Usage: python bench/bench_lstm_cpu.py [--cell lstm|gru|rnn] [--rounds 3] [--iters 200] [--sides torch,llmtui]
(prints; writes nothing). `--sides llmtui` times only llmtui's step (e.g. two commits' code, alternated).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_train import ROOT, TEXT, load, median, steady, torch_python  # noqa: E402

BATCH, CONTEXT = 12, 64


def llmtui_worker(cell: str, iters: int) -> None:
    """Train `iters` steps on one thread and print each step's process CPU time."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    from llmtui.config import recipe_from_dict
    from llmtui.models import build_model
    from llmtui.training.step import TrainStep
    from llmtui.training.trainer import compile_model

    text = TEXT.read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text[: int(len(text) * 0.9)]], np.int32)
    recipe = recipe_from_dict(
        {
            "model": {"arch": cell, "layers": 2, "dim": 256, "context": CONTEXT, "dropout": 0.0},
            "train": {"batch_size": BATCH, "lr": 1e-3, "beta2": 0.99, "optimizer": "adamw", "steps": iters},
        }
    )
    model = build_model(recipe.model, len(chars), seed=1)
    compile_model(model, recipe.train)
    step = TrainStep(model)
    rng = np.random.default_rng(0)
    offsets = np.arange(CONTEXT + 1)
    for it in range(iters):
        window = ids[rng.integers(0, len(ids) - CONTEXT - 1, BATCH)[:, None] + offsets]
        started = time.process_time()
        loss = float(np.asarray(step(window[:, :-1], window[:, 1:])))
        print(f"iter {it}: loss {loss:.4f}, time {(time.process_time() - started) * 1000:.2f}ms", flush=True)


def run_side(side: str, cell: str, iters: int) -> list[float]:
    if side == "torch":
        spec = {"context": CONTEXT, "batch": BATCH, "iters": iters, "clock": "cpu", "cell": cell}
        command = [torch_python(), str(BENCH / "bench_train.py"), "--torch-recurrent", json.dumps(spec)]
    else:
        command = [sys.executable, __file__, "--cell", cell, "--worker", str(iters)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    log = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    return [float(v) for v in re.findall(r"time ([0-9.]+)ms", log)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm")
    parser.add_argument("--sides", default="torch,llmtui")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return llmtui_worker(args.cell, args.worker)
    sides = args.sides.split(",")
    rows = []
    for r in range(args.rounds):
        row = {"cell": args.cell}
        for side in sides if r % 2 == 0 else sides[::-1]:
            row[f"{side}_load_before"] = load()
            row[f"{side}_cpu_ms_per_step"] = round(steady(run_side(side, args.cell, args.iters)), 2)
        if len(sides) == 2:
            row["cpu_time_ratio"] = round(row["torch_cpu_ms_per_step"] / row["llmtui_cpu_ms_per_step"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        f"median_{side}_cpu_ms_per_step": median([row[f"{side}_cpu_ms_per_step"] for row in rows]) for side in sides
    }
    if len(sides) == 2:
        summary["median_cpu_time_ratio (torch / llmtui, > 1: llmtui does less work)"] = median(
            [row["cpu_time_ratio"] for row in rows]
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
