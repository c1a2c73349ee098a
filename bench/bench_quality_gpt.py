"""Model quality at equal steps: llmtui's GPT and Llama-style models against nanoGPT (issue 18).

nanoGPT's own `train.py` (../shared/yardsticks/nanogpt, run from a temporary copy, never copied into the
project) and `llmtui run` train the "baby GPT" on the same characters for the same number of steps, and the
validation loss (nats per character) is compared:
  - data: the characters of tinyshakespeare; nanoGPT's split (the first 90% train, the last 10% validation),
    llmtui's `data.split_by = "tail"` (the last 10% in whole chunks of `chunk_chars`, the default 4,000, so
    the boundary falls within 2,000 characters of nanoGPT's, and an end-of-text token stands for one line
    break in about 4,000 characters);
  - model: 4 layers, 4 heads, 128 wide, context 64, dropout 0 (llmtui: `model.arch = "gpt"` or `"llama"`);
  - training: batch 12, STEPS steps (2,000), AdamW lr 1e-3, betas (0.9, 0.99), weight decay 0.1, gradient
    clip 1.0, 100 warmup steps then cosine to 1e-4 — nanoGPT's `config/train_shakespeare_char.py` with the
    baby sizes, and the same settings in llmtui's `recipes/nanogpt-baby.toml`, which this runs;
  - validation loss: nanoGPT's own figure (the mean over `eval_iters = 200` random batches of 12 windows),
    and, from the checkpoint it saves at the end, the same model scored on every non-overlapping window of
    the validation text, llmtui's protocol (`--score-checkpoint`, run with torch); llmtui's figure is its
    evaluation at the last step over every non-overlapping window of its validation split.
Seeds: nanoGPT fixes its seed in `train.py` (`torch.manual_seed(1337 + seed_offset)`); the temporary copy
reads it from NANOGPT_SEED instead (seeds 1337, 1338, ...: 1337 is nanoGPT's own), the one change made to
the copy. llmtui: `run.seed` = 1, 2, ...
Both sides run on one thread (OMP_NUM_THREADS=1; TF_NUM_INTRAOP_THREADS=1 and TF_NUM_INTEROP_THREADS=1), one
process at a time: the loss does not depend on the machine's load, and one thread keeps PyTorch out of the
stalls it meets on shared cores (bench_train.py's WHY_WHOLE_PROCESSES).

Variants change one llmtui setting alone from "matched" (nanoGPT's settings), to find what any gap costs:
`decay_embeddings` (nanoGPT decays every 2-D parameter, its token and position tables too), `beta2_0.95`
(llmtui's default second-moment decay instead of the shakespeare config's 0.99).

Usage (torch for nanoGPT: TORCH_PYTHON=/path/to/python, else ~/.cache/llmtui-race/torch):
    python bench/bench_quality_gpt.py [--seeds 1,2,3] [--sides nanogpt,gpt,llama] [--steps 2000]
                                      [--variants matched,decay_embeddings,...]
Writes the "transformers" entry of bench/results/quality.json (each run merged in as it ends, per seed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import tomllib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import NANOGPT, ROOT, TEXT, load, torch_python

RESULTS = ROOT / "bench" / "results" / "quality.json"
RECIPE = ROOT / "recipes" / "nanogpt-baby.toml"
BABY = {"layers": 4, "heads": 4, "dim": 128, "context": 64, "batch": 12}
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}
# Recipe overrides (section -> key -> value) of each llmtui variant, applied to "matched".
VARIANTS = {
    "matched": {},
    "decay_embeddings": {"train": {"decay_embeddings": True}},
    "beta2_0.95": {"train": {"beta2": 0.95}},
    # GPT-2's biases and LayerNorm offsets, which nanoGPT's baby config leaves out (the recipe's `bias = false`)
    "gpt2_biases": {"model": {"bias": True}},
}


def recipe_dict(arch: str, steps: int, seed: int, variant: str) -> dict:
    """recipes/nanogpt-baby.toml (nanoGPT's baby configuration) for one run: its architecture, steps and seed,
    one evaluation at the end and no text samples (neither changes training), then the variant's change."""
    recipe = tomllib.loads(RECIPE.read_text(encoding="utf-8"))
    recipe["run"].update(name=f"{arch}-{variant}-{seed}", seed=seed)
    recipe["data"]["sources"] = [str(TEXT)]
    recipe["model"]["arch"] = arch
    recipe["train"].update(
        steps=steps, eval_every=steps, eval_samples=False, checkpoint_every=steps, precision="float32"
    )
    for section, values in VARIANTS[variant].items():
        recipe[section].update(values)
    return recipe


def prepare_nanogpt(work: Path) -> Path:
    """A temporary copy of nanoGPT with the char dataset; its seed read from NANOGPT_SEED."""
    copy = work / "nanogpt"
    if copy.exists():
        return copy
    shutil.copytree(NANOGPT, copy)
    train = copy / "train.py"
    source = train.read_text(encoding="utf-8")
    fixed = "torch.manual_seed(1337 + seed_offset)"
    if fixed not in source:
        sys.exit(f"nanoGPT's train.py no longer has '{fixed}': update this benchmark's seed patch")
    train.write_text(
        source.replace(fixed, "torch.manual_seed(int(os.environ.get('NANOGPT_SEED', 1337)) + seed_offset)"),
        encoding="utf-8",
    )
    data = copy / "data" / "shakespeare_char"
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run([torch_python(), str(ROOT / "bench" / "bench_train.py"), "--write-char-data", str(data)], check=True)
    return copy


def run_nanogpt(work: Path, steps: int, seed: int) -> dict:
    copy = prepare_nanogpt(work)
    out = work / f"ngout-{seed}"
    command = [
        torch_python(),
        "train.py",
        "config/train_shakespeare_char.py",
        "--device=cpu",
        "--compile=False",
        "--eval_iters=200",
        f"--eval_interval={steps}",
        "--log_interval=100",
        f"--block_size={BABY['context']}",
        f"--batch_size={BABY['batch']}",
        f"--n_layer={BABY['layers']}",
        f"--n_head={BABY['heads']}",
        f"--n_embd={BABY['dim']}",
        f"--max_iters={steps}",
        f"--lr_decay_iters={steps}",
        "--dropout=0.0",
        f"--out_dir={out}",
        "--always_save_checkpoint=True",
    ]
    env = {**os.environ, **ONE_THREAD, "NANOGPT_SEED": str(seed)}
    before, started = load(), time.perf_counter()
    done = subprocess.run(command, cwd=copy, capture_output=True, text=True, env=env, timeout=3600, check=False)
    wall = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"nanoGPT failed:\n{done.stderr[-3000:]}")
    final = re.findall(rf"step {steps}: train loss ([0-9.]+), val loss ([0-9.]+)", done.stdout)
    if not final:
        raise RuntimeError(f"nanoGPT printed no evaluation at step {steps}:\n{done.stdout[-2000:]}")
    scored = subprocess.run(
        [torch_python(), __file__, "--score-checkpoint", str(out / "ckpt.pt"), str(copy)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return {
        "command": " ".join(["NANOGPT_SEED=" + str(seed), "OMP_NUM_THREADS=1", *command[1:]]),
        "cwd": "a temporary copy of " + str(NANOGPT),
        "seed": seed,
        "steps": steps,
        "train_loss": float(final[-1][0]),
        "val_loss": float(final[-1][1]),
        "val_loss_every_window": json.loads(scored.stdout.splitlines()[-1])["val_loss"],  # after model.py's print
        "wall_s": round(wall, 1),
        "load_average_1min": {"before": before, "after": load()},
    }


def score_checkpoint(checkpoint: Path, copy: Path) -> None:
    """nanoGPT's saved model scored on every non-overlapping validation window (llmtui's protocol)."""
    import numpy as np
    import torch

    sys.path.insert(0, str(copy))
    from model import GPT, GPTConfig  # the temporary copy's model.py

    torch.set_num_threads(1)
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)  # our own run's checkpoint
    model = GPT(GPTConfig(**saved["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in saved["model"].items()})
    model.eval()
    data = np.fromfile(copy / "data" / "shakespeare_char" / "val.bin", dtype=np.uint16).astype(np.int64)
    t = saved["model_args"]["block_size"]
    windows = (len(data) - 1) // t
    x = torch.from_numpy(data[: windows * t].reshape(windows, t))
    y = torch.from_numpy(data[1 : windows * t + 1].reshape(windows, t))
    total = 0.0
    with torch.no_grad():
        for start in range(0, windows, 64):
            logits, _ = model(x[start : start + 64], y[start : start + 64])  # loss over every position
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), y[start : start + 64].reshape(-1), reduction="sum"
            ).item()
    print(json.dumps({"val_loss": total / (windows * t), "windows": windows}))


def run_llmtui(work: Path, arch: str, steps: int, seed: int, variant: str) -> dict:
    import tomli_w

    from llmtui.evaluation.tensorboard_logs import read_log_folder

    recipe = recipe_dict(arch, steps, seed, variant)
    path = work / f"{recipe['run']['name']}.toml"
    path.write_text(tomli_w.dumps(recipe), encoding="utf-8")
    command = [sys.executable, "-m", "llmtui", "run", str(path), "--until", "train", "--fresh"]
    before, started = load(), time.perf_counter()
    done = subprocess.run(
        command, cwd=work, capture_output=True, text=True, timeout=3600, check=False, env={**os.environ, **ONE_THREAD}
    )
    wall = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"llmtui {arch} {variant} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    run = work / "runs" / recipe["run"]["name"]
    last_step, val_loss = read_log_folder(run / "logs" / "val").scalars["loss"][-1]
    if last_step != steps:
        raise RuntimeError(f"llmtui {arch} {variant}: the last evaluation is at step {last_step}, not {steps}")
    tokens = json.loads((run / "tokenizer" / "tokens.json").read_text(encoding="utf-8"))
    return {
        "command": f"llmtui run {path.name} --until train --fresh  (one thread)",
        "recipe": recipe,
        "arch": arch,
        "variant": variant,
        "seed": seed,
        "steps": steps,
        "val_loss": val_loss,
        "tokens": {
            "vocab_size": tokens["vocab_size"],
            "train": tokens["train"]["tokens"],
            "val": tokens["val"]["tokens"],
        },
        "wall_s": round(wall, 1),
        "load_average_1min": {"before": before, "after": load()},
    }


def spread(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "seeds": len(values),
    }


def summarize(entry: dict) -> dict:
    summary = {}
    nanogpt = list(entry.get("nanogpt", {}).values())
    if nanogpt:
        summary["nanogpt"] = spread([r["val_loss"] for r in nanogpt])
        summary["nanogpt_every_window"] = spread([r["val_loss_every_window"] for r in nanogpt])
    for arch, variants in entry.get("llmtui", {}).items():
        for variant, runs in variants.items():
            summary[f"llmtui_{arch}_{variant}"] = spread([r["val_loss"] for r in runs.values()])
    return summary


def save(out: Path, steps: int, side: str, key: list[str], result: dict) -> None:
    """Merge one run into quality.json's "transformers" entry (read, update, replace)."""
    data = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    entry = data.setdefault("transformers", {})
    entry.update(
        {
            "benchmark": "validation loss at equal steps against nanoGPT (bench/bench_quality_gpt.py)",
            "config": {
                **BABY,
                "steps": steps,
                "optimizer": "adamw",
                "lr": 1e-3,
                "betas": [0.9, 0.99],
                "weight_decay": 0.1,
                "grad_clip": 1.0,
                "warmup": 100,
                "min_lr": 1e-4,
                "data": "tinyshakespeare characters, last 10% validation",
            },
            "method": __doc__.split("\n\n")[1],
        }
    )
    node = entry.setdefault(side, {})
    for part in key[:-1]:
        node = node.setdefault(part, {})
    node[key[-1]] = result
    entry["summary"] = summarize(entry)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,2,3", help="run numbers: llmtui run.seed n, nanoGPT seed 1336 + n")
    parser.add_argument("--sides", default="nanogpt,gpt,llama")
    parser.add_argument("--variants", default="matched")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/llmtui-bench-quality-gpt"))
    parser.add_argument("--score-checkpoint", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.score_checkpoint:
        return score_checkpoint(*args.score_checkpoint)
    if not NANOGPT.is_dir():
        sys.exit(f"nanoGPT yardstick not found at {NANOGPT}")
    args.work.mkdir(parents=True, exist_ok=True)
    sides = [s for s in args.sides.split(",") if s]
    for n in [int(s) for s in args.seeds.split(",") if s]:
        for side in sides:
            if side == "nanogpt":
                result = run_nanogpt(args.work, args.steps, 1336 + n)
                save(args.out, args.steps, "nanogpt", [str(1336 + n)], result)
                print(
                    f"nanoGPT seed {1336 + n}: val loss {result['val_loss']:.4f} (every window "
                    f"{result['val_loss_every_window']:.4f}), {result['wall_s']} s",
                    flush=True,
                )
                continue
            for variant in [v for v in args.variants.split(",") if v]:
                result = run_llmtui(args.work, side, args.steps, n, variant)
                save(args.out, args.steps, "llmtui", [side, variant, str(n)], result)
                print(
                    f"llmtui {side} {variant} seed {n}: val loss {result['val_loss']:.4f}, {result['wall_s']} s",
                    flush=True,
                )


if __name__ == "__main__":
    main()
