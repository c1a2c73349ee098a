"""Training speed against the real peer: whole processes, each alone on the machine, alternating.

GPT: nanoGPT's own `train.py` (../shared/yardsticks/nanogpt, run from a temporary copy, never copied into
the project) against `llmtui run`, on the "baby GPT" (4 layers, 4 heads, 128 wide, context 64, batch 12,
AdamW, no dropout, no biases: nanoGPT's `train.py` default) over the characters of tinyshakespeare, split at
90% as nanoGPT splits it.
LSTM, GRU, RNN: a 2-layer, 256-wide `torch.nn.LSTM` / `torch.nn.GRU` / `torch.nn.RNN` language model (this file's
`--torch-recurrent` mode, same batch, context, AdamW, clip and embedding tie) against `llmtui run` with
`model.arch = "lstm"` / `"gru"` / `"rnn"`.

Method, per model and round (the order of the two sides flips every round):
  - each side is a fresh process started alone (nothing else of ours running), trained ITERS steps;
  - its steady-state ms/step is the median of its own per-step log after the first tenth of the steps
    (nanoGPT and the torch LSTM print every iteration's time; llmtui's is read from its TensorBoard
    `tokens_per_sec` per logging window, the first two windows, compilation, left out);
  - the speed ratio of a round is peer ms/step ÷ llmtui ms/step (> 1: llmtui is faster); the result is the
    median over rounds. Every round's figures are written, with the load average before each process.
PyTorch runs with OMP_NUM_THREADS = the machine's cores, as `race-nanogpt.sh` runs it.

Why not long-lived workers timed in alternating windows (this benchmark's previous method, which put a
hand-written PyTorch GPT at ~68 ms/step where nanoGPT itself runs ~40): see `WHY_WHOLE_PROCESSES` below,
which is also written into the results.

`--quality`: time to quality from process start. nanoGPT's baby config trained `--max_iters` (2000) with
`--eval_iters=200`, its wall time from process start to exit and its last validation loss; then
`llmtui run RECIPE` (default recipes/shakespeare-fast.toml) from process start, with the wall time at which
its TensorBoard validation loss first reached nanoGPT's, read from the event files' wall times.

Usage (torch for the peers: TORCH_PYTHON=/path/to/python with torch, else ~/.cache/llmtui-race/torch, which
../shared/tools/race-nanogpt.sh creates):
    python bench/bench_train.py [--models gpt,lstm,gru,rnn] [--rounds 3] [--iters 300] [--set train.precision=...]
    LAYERS=4 HEADS=8 DIM=512 CONTEXT=128 BATCH=16 python bench/bench_train.py --models gpt --iters 30 --name gpt512
    python bench/bench_train.py --quality [--recipe recipes/shakespeare-fast.toml]
Results go to bench/results/train.json (each run updates only its own entries).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The project's shared folder: beside the checkout (../shared), or beside its parent for a worktree.
SHARED = (
    Path(os.environ["LLMTUI_SHARED"])
    if os.environ.get("LLMTUI_SHARED")
    else next(
        (p for p in (ROOT.parent / "shared", ROOT.parent.parent / "shared") if p.is_dir()), ROOT.parent / "shared"
    )
)
NANOGPT = SHARED / "yardsticks" / "nanogpt"
TEXT = ROOT / "assets" / "tinyshakespeare.txt"
RESULTS = ROOT / "bench" / "results" / "train.json"

WHY_WHOLE_PROCESSES = (
    "The previous method kept three long-lived workers (PyTorch, llmtui, a matmul 'floor' that loaded PyTorch "
    "and JAX) and timed them in alternating 40-step windows. On a 2-core machine that is not 'each alone' (the "
    "causes below were not isolated one by one: the machine was loaded by other sessions while this was studied): "
    "(1) every idle worker still owns thread pools: PyTorch's OpenMP team (libgomp spins after each parallel "
    "region before it sleeps), TensorFlow's Eigen pools and XLA's, and the window that starts right after another "
    "worker's ran against those threads still spinning or being descheduled; (2) PyTorch eager steps are hundreds "
    "of short OpenMP parallel regions, each ending in a barrier over both cores, so any other runnable thread on "
    "either core stalls every region: measured here, nanoGPT's step went from ~40 ms to 345 ms while a test suite "
    "ran, while XLA's one compiled step per iteration loses far less; (3) the floor worker's PyTorch and JAX "
    "pools were a third set. The result was a PyTorch figure 1.6x slower than nanoGPT's own train.py on the same "
    "configuration, and a speedup that credited llmtui with the peer's contention. Whole processes started "
    "alone and alternated, as race-nanogpt.sh does, measure each side as a user would run it."
)


def torch_python() -> str:
    path = os.environ.get("TORCH_PYTHON") or str(Path.home() / ".cache/llmtui-race/torch/bin/python")
    if not Path(path).exists():
        sys.exit(
            f"no Python with torch at {path}: set TORCH_PYTHON, or run ../shared/tools/race-nanogpt.sh once "
            "(it creates that venv)"
        )
    return path


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def median(values):
    return statistics.median(values) if values else float("nan")


def shape() -> dict:
    env = os.environ
    return {
        "layers": int(env.get("LAYERS", 4)),
        "heads": int(env.get("HEADS", 4)),
        "dim": int(env.get("DIM", 128)),
        "context": int(env.get("CONTEXT", 64)),
        "batch": int(env.get("BATCH", 12)),
    }


# Preparing both sides' inputs -----------------------------------------------------------------------
def prepare_nanogpt(work: Path, python: str) -> Path:
    """A temporary copy of nanoGPT (run there, never copied into the project) with the char dataset."""
    copy = work / "nanogpt"
    shutil.copytree(NANOGPT, copy)
    data = copy / "data" / "shakespeare_char"
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, __file__, "--write-char-data", str(data)], check=True)
    return copy


def write_char_data(folder: Path) -> None:
    """nanoGPT's char dataset files: train.bin/val.bin (uint16 ids, split at 90%) and meta.pkl."""
    import pickle

    import numpy as np

    text = TEXT.read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    cut = int(len(text) * 0.9)
    np.array([index[c] for c in text[:cut]], np.uint16).tofile(folder / "train.bin")
    np.array([index[c] for c in text[cut:]], np.uint16).tofile(folder / "val.bin")
    with open(folder / "meta.pkl", "wb") as handle:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": index}, handle)


def llmtui_recipe(work: Path, arch: str, s: dict, iters: int) -> Path:
    path = work / f"{arch}.toml"
    path.write_text(
        f"""[run]
name = "{arch}"
seed = 1
[data]
sources = ["{TEXT}"]
split_by = "tail"
val_fraction = 0.1
chunk_chars = 20000
dedup = "none"
contamination_ngram = 0
[tokenizer]
kind = "char"
[model]
arch = "{arch}"
layers = {s["layers"] if arch == "gpt" else 2}
heads = {s["heads"] if arch == "gpt" else 1}
dim = {s["dim"] if arch == "gpt" else 256}
context = {s["context"]}
dropout = 0.0
bias = {"false" if arch == "gpt" else "true"}
[train]
batch_size = {s["batch"]}
steps = {iters}
optimizer = "adamw"
lr = 1e-3
beta2 = 0.99
eval_every = 100000
checkpoint_every = 100000
log_every = {25 if iters >= 100 else 5}
""",
        encoding="utf-8",
    )
    return path


def llmtui_command(recipe: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "llmtui", "run", str(recipe), *extra]


def llmtui_env() -> dict:
    """The environment of an `llmtui run`: this checkout's code first (run from a temporary folder, `-m llmtui`
    would otherwise import whichever checkout the environment's editable install points at)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": path}


# One side, one round --------------------------------------------------------------------------------
def nanogpt_command(python: str, s: dict, iters: int, out: Path, *logging: str) -> list[str]:
    """nanoGPT's own `train.py` on the CPU at shape `s` for `iters` iterations; `logging`: its eval/log options."""
    return [
        python,
        "train.py",
        "config/train_shakespeare_char.py",
        "--device=cpu",
        "--compile=False",
        *logging,
        f"--block_size={s['context']}",
        f"--batch_size={s['batch']}",
        f"--n_layer={s['layers']}",
        f"--n_head={s['heads']}",
        f"--n_embd={s['dim']}",
        f"--max_iters={iters}",
        f"--lr_decay_iters={iters}",
        "--dropout=0.0",
        f"--out_dir={out}",
        "--always_save_checkpoint=False",
    ]


def run_nanogpt(copy: Path, python: str, s: dict, iters: int, out: Path) -> list[float]:
    command = nanogpt_command(python, s, iters, out, "--eval_iters=1", "--eval_interval=100000", "--log_interval=1")
    log = subprocess.run(
        command,
        cwd=copy,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": str(os.cpu_count())},
    ).stdout
    return [float(v) for v in re.findall(r"time ([0-9.]+)ms", log)]


def run_torch_recurrent(python: str, cell: str, s: dict, iters: int) -> list[float]:
    log = subprocess.run(
        [python, __file__, "--torch-recurrent", json.dumps({**s, "iters": iters, "cell": cell})],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": str(os.cpu_count())},
    ).stdout
    return [float(v) for v in re.findall(r"time ([0-9.]+)ms", log)]


def run_llmtui(work: Path, recipe: Path, s: dict, extra: list[str]) -> list[float]:
    """ms/step of each logging window after the first two (compilation), from the run's TensorBoard log."""
    from llmtui.evaluation.tensorboard_logs import read_log_folder

    subprocess.run(
        llmtui_command(recipe, "--until", "train", "--fresh", *extra),
        cwd=work,
        check=True,
        capture_output=True,
        env=llmtui_env(),
    )
    logs = read_log_folder(work / "runs" / recipe.stem / "logs" / "train")
    rates = [value for _, value in logs.scalars["tokens_per_sec"]][2:]
    return [s["batch"] * s["context"] * 1000.0 / rate for rate in rates]


def steady(times: list[float]) -> float:
    return median(times[len(times) // 10 + 1 :])


def race(model: str, rounds: int, iters: int, extra: list[str]) -> dict:
    s = shape()
    python = torch_python()
    with tempfile.TemporaryDirectory(prefix="llmtui-bench-") as tmp:
        work = Path(tmp)
        recipe = llmtui_recipe(work, model, s, iters)
        subprocess.run(
            llmtui_command(recipe, "--until", "tokenizer", *extra),
            cwd=work,
            check=True,
            capture_output=True,
            env=llmtui_env(),
        )
        if model == "gpt":
            copy = prepare_nanogpt(work, python)
            peer = lambda: run_nanogpt(copy, python, s, iters, work / "ngout")  # noqa: E731
        else:
            peer = lambda: run_torch_recurrent(python, model, s, iters)  # noqa: E731
        sides = {"peer": peer, "llmtui": lambda: run_llmtui(work, recipe, s, extra)}
        per_round = []
        for r in range(rounds):
            row = {}
            for name in ["peer", "llmtui"] if r % 2 == 0 else ["llmtui", "peer"]:
                row[f"{name}_load_before"] = load()
                row[f"{name}_ms_per_step"] = round(steady(sides[name]()), 2)
            row["speed_ratio"] = round(row["peer_ms_per_step"] / row["llmtui_ms_per_step"], 3)
            per_round.append(row)
            print(f"{model} round {r + 1}: {json.dumps(row)}", flush=True)
    return {
        "peer": "nanoGPT train.py (PyTorch eager, CPU)"
        if model == "gpt"
        else f"torch.nn.{TORCH_CELLS[model]}, this file's --torch-recurrent mode (PyTorch eager, CPU)",
        "shape": s if model == "gpt" else {**s, "layers": 2, "dim": 256},
        "iters_per_process": iters,
        "llmtui_overrides": extra,
        "rounds": per_round,
        "median_speed_ratio": median([row["speed_ratio"] for row in per_round]),
        "median_peer_ms_per_step": median([row["peer_ms_per_step"] for row in per_round]),
        "median_llmtui_ms_per_step": median([row["llmtui_ms_per_step"] for row in per_round]),
    }


# Time to quality --------------------------------------------------------------------------------------
def quality(recipe: Path, iters: int) -> dict:
    from llmtui.evaluation.tensorboard_logs import read_log_walls

    python = torch_python()
    s = shape()
    with tempfile.TemporaryDirectory(prefix="llmtui-quality-") as tmp:
        work = Path(tmp)
        copy = prepare_nanogpt(work, python)
        command = nanogpt_command(python, s, iters, work / "ngout", "--eval_iters=200", "--log_interval=100")
        load_nanogpt = load()
        started = time.time()
        log = subprocess.run(
            command,
            cwd=copy,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": str(os.cpu_count())},
        ).stdout
        nanogpt_seconds = time.time() - started
        target = float(re.findall(r"val loss ([0-9.]+)", log)[-1])
        # The recipe runs from a copy of the project's layout, so its relative paths (assets/...) resolve.
        shutil.copytree(ROOT / "assets", work / "assets", ignore=shutil.ignore_patterns("examples"))
        load_llmtui = load()
        started = time.time()
        subprocess.run(
            llmtui_command(ROOT / recipe, "--until", "train"),
            cwd=work,
            check=True,
            capture_output=True,
            env=llmtui_env(),
        )
        llmtui_seconds = time.time() - started
        run_name = _recipe_run_name(ROOT / recipe)
        walls = read_log_walls(work / "runs" / run_name / "logs" / "val").get("loss", [])
    reached = next(((step, wall - started) for step, wall, value in walls if value <= target), None)
    return {
        "nanogpt": {
            "command": " ".join(command[1:]),
            "max_iters": iters,
            "final_val_loss": target,
            "seconds_from_process_start": round(nanogpt_seconds, 1),
            "load_before": load_nanogpt,
        },
        "llmtui": {
            "recipe": str(recipe),
            "whole_run_seconds": round(llmtui_seconds, 1),
            "load_before": load_llmtui,
            "val_losses": [(step, round(wall - started, 1), round(value, 4)) for step, wall, value in walls],
            "reached_target_at_step": reached[0] if reached else None,
            "seconds_from_process_start_to_target": round(reached[1], 1) if reached else None,
        },
        "time_fraction_of_nanogpt": round(reached[1] / nanogpt_seconds, 3) if reached else None,
    }


def _recipe_run_name(path: Path) -> str:
    import tomllib

    return tomllib.loads(path.read_text(encoding="utf-8")).get("run", {}).get("name", path.stem)


# The torch recurrent peers ---------------------------------------------------------------------------------
TORCH_CELLS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}  # llmtui's arch -> the torch.nn layer of the peer


def torch_recurrent(spec: dict) -> None:
    """A 2-layer nn.LSTM (nn.GRU, nn.RNN with tanh: spec["cell"]) character model trained like llmtui's
    recipe of that arch; prints each iteration's time."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(1)
    text = TEXT.read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text[: int(len(text) * 0.9)]], np.int64)
    vocab, d, t, b = len(chars), 256, spec["context"], spec["batch"]

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, d)
            self.recurrent = getattr(nn, TORCH_CELLS[spec.get("cell", "lstm")])(d, d, num_layers=2, batch_first=True)

        def forward(self, x):
            h, _ = self.recurrent(self.embed(x))
            return h @ self.embed.weight.T  # tied output embedding, as llmtui's

    model = Model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    rng = np.random.default_rng(0)
    offsets = np.arange(t + 1)
    # "clock": "cpu" times process CPU time (bench_lstm_cpu.py), which other processes on the machine barely move.
    clock = time.process_time if spec.get("clock") == "cpu" else time.perf_counter
    for it in range(spec["iters"]):
        started = clock()
        window = torch.from_numpy(ids[rng.integers(0, len(ids) - t - 1, b)[:, None] + offsets])
        logits = model(window[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), window[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        print(f"iter {it}: loss {loss.item():.4f}, time {(clock() - started) * 1000:.2f}ms", flush=True)


# ----------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="gpt,lstm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="recipe overrides for llmtui")
    parser.add_argument("--name", default="", help="result key (default: the model's name)")
    parser.add_argument("--quality", action="store_true", help="time to nanoGPT's validation loss instead")
    parser.add_argument("--recipe", default="recipes/shakespeare-fast.toml")
    parser.add_argument("--torch-recurrent", help=argparse.SUPPRESS)
    parser.add_argument("--write-char-data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_recurrent:
        return torch_recurrent(json.loads(args.torch_recurrent))
    if args.write_char_data:
        return write_char_data(Path(args.write_char_data))
    if not NANOGPT.is_dir():
        sys.exit(f"nanoGPT yardstick not found at {NANOGPT}")
    extra = [item for value in args.overrides for item in ("--set", value)]
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update(
        {
            "method": __doc__.split("\n\n")[1:4],
            "why_not_long_lived_workers": WHY_WHOLE_PROCESSES,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        }
    )
    results.setdefault("models", {})
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.quality:
        iters = int(os.environ.get("ITERS", 2000))
        results["quality"] = {"when": when, "command": " ".join(sys.argv), **quality(Path(args.recipe), iters)}
        print(json.dumps(results["quality"], indent=2))
    else:
        for model in args.models.split(","):
            entry = race(model, args.rounds, args.iters, extra)
            results["models"][args.name or model] = {"when": when, "command": " ".join(sys.argv), **entry}
            print(f"{model}: median speed ratio (llmtui / peer) {entry['median_speed_ratio']:.3f}")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
