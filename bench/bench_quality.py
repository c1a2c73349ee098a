"""Model quality at equal compute: llmtui's LSTM against pytorch/examples' word_language_model (issue 18).

The peer's own code (`../shared/yardsticks/word_language_model`, run as it is, never copied) and llmtui train
the same model on the same files for the same number of steps, and both are scored on the peer's test file
in bits per byte:
  - corpus: tinyshakespeare split by lines into train.txt (first 80% of the lines), valid.txt (next 10%)
    and test.txt (last 10%), the folder layout the peer reads;
  - vocabulary: whitespace words plus one end-of-line token per line, from all three files (the peer builds
    its dictionary from all three; llmtui's `word` tokenizer trained on the same text gives the same words,
    so no test word is `<unk>` on either side);
  - model: 2-layer LSTM, 200 wide, tied embeddings, dropout 0.2, batch 20 x 35 tokens; the peer's
    `--epochs E`, and for llmtui as many optimizer steps as the peer's epochs take;
  - bits per byte, both sides: mean test loss (nats per token) x tokens of test.txt / (bytes of test.txt x ln 2),
    the peer's loss read from its printed test perplexity. llmtui scores test.txt the way the peer does:
    10 contiguous lanes, 35 tokens at a time, the state carried.

"base" makes every choice the peer makes but one: it has no output bias (the peer's decoder has one).
Every other variant changes one thing alone from "base", each in its own run: "output_bias" adds the
bias (and so is the peer's recipe in full), and the rest undo one of the peer's choices: random windows
instead of the carried state, Keras' initialisation, the ±8/sqrt(dim) embedding, no embedding dropout, the
former learning-rate bound (10), no plateau division, AdamW, no end-of-line tokens. "before" is llmtui's
recipe before issue 18 (with the word vocabulary and the issue's SGD).

Usage (PyTorch is needed only for the peer: `pip install torch`):
    python bench/bench_quality.py [--data ../shared/data/tinyshakespeare.txt] [--epochs 2]
                                  [--variants matched,random_windows,...] [--skip-peer]
    python bench/bench_quality.py --lines 20000 --seeds 2222,3333 --variants ours   (more seeds of the peer and
                                                                                 llmtui's defaults)
Every process runs on one thread. Writes bench/results/quality.json (figures per seed, the median and spread
over seeds, every invocation's command, load averages before and after each run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the main checkout (a worktree sits one level deeper).
SHARED = next((p / "shared" for p in ROOT.parents if (p / "shared" / "yardsticks").is_dir()), Path("/work/shared"))
PEER = SHARED / "yardsticks" / "word_language_model"
RESULTS = ROOT / "bench" / "results" / "quality.json"
BATCH, BPTT, EVAL_LANES = 20, 35, 10  # the peer's batch_size, bptt and eval_batch_size
# Every process on one thread: results do not depend on it, and PyTorch's threads stall on shared cores
# (bench_train.py's WHY_WHOLE_PROCESSES: the peer's first run here took 2,999 s with two).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}

# Every choice the peer makes but its output bias ("base"); each variant changes one thing.
MATCHED_MODEL = {
    "arch": "lstm",
    "layers": 2,
    "dim": 200,
    "context": BPTT,
    "dropout": 0.2,
    "embedding_dropout": 0.2,
    "tie_embeddings": True,
    "recurrent_init": "uniform",
    "embedding_init": 0.1,
    "output_bias": False,
}
MATCHED_TRAIN = {
    "batch_size": BATCH,
    "stateful": True,
    "optimizer": "sgd",
    "lr": 20.0,
    "momentum": 0.0,
    "nesterov": False,
    "weight_decay": 0.0,
    "grad_clip": 0.25,
    "schedule": "plateau",
    "plateau_factor": 0.25,
    "plateau_patience": 1,
    "warmup_steps": 0,
}
VARIANTS = {
    "base": ({}, {}, {}),
    "output_bias": ({"output_bias": True}, {}, {}),
    "random_windows": ({}, {"stateful": False}, {}),
    "keras_init": ({"recurrent_init": "keras"}, {}, {}),
    "embedding_8_over_sqrt_dim": ({"embedding_init": 0.0}, {}, {}),
    "no_embedding_dropout": ({"embedding_dropout": 0.0}, {}, {}),
    "lr_10": ({}, {"lr": 10.0}, {}),
    "no_plateau": ({}, {"schedule": "constant"}, {}),
    "adamw_3e-3": (
        {},
        {
            "optimizer": "adamw",
            "lr": 3e-3,
            "weight_decay": 0.1,
            "grad_clip": 1.0,
            "schedule": "cosine",
            "warmup_steps": 100,
            "beta2": 0.95,
        },
        {},
    ),
    "no_end_of_line": ({}, {}, {"end_of_line": False}),
    # llmtui's defaults for recurrent models after issue 18: the output bias and the ±8/sqrt(dim) embedding.
    "ours": ({"output_bias": True, "embedding_init": 0.0}, {}, {}),
    # Everything llmtui did before issue 18 with the word vocabulary and the SGD (lr at its bound 10).
    "before": (
        {"recurrent_init": "keras", "embedding_init": 0.0, "embedding_dropout": 0.0},  # no output bias
        {"stateful": False, "lr": 10.0, "schedule": "cosine", "warmup_steps": 100},
        {},
    ),
}


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def prepare_corpus(source: Path, folder: Path, limit: int = 0) -> dict:
    """train/valid/test.txt from the lines of `source` (80/10/10, in order)."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    lines = lines[:limit] if limit else lines
    cut1, cut2 = int(len(lines) * 0.8), int(len(lines) * 0.9)
    folder.mkdir(parents=True, exist_ok=True)
    facts = {}
    for name, part in (("train", lines[:cut1]), ("valid", lines[cut1:cut2]), ("test", lines[cut2:])):
        text = "".join(part)
        if not text.endswith("\n"):
            text += "\n"
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
        facts[name] = {"lines": text.count("\n"), "words": len(text.split()), "bytes": len(text.encode("utf-8"))}
        facts[name]["tokens_words_and_eos"] = facts[name]["words"] + facts[name]["lines"]
    return facts


def peer_steps_per_epoch(train_tokens: int) -> int:
    """The peer's batches per epoch: range(0, len(batchified) - 1, bptt)."""
    rows = train_tokens // BATCH
    return len(range(0, rows - 1, BPTT))


def run_peer(corpus: Path, epochs: int, seed: int, work: Path) -> dict:
    command = [
        sys.executable,
        "main.py",
        "--data",
        str(corpus),
        "--epochs",
        str(epochs),
        "--tied",
        "--seed",
        str(seed),
        "--save",
        str(work / f"peer_{seed}.pt"),
        "--log-interval",
        "100",
    ]
    env = {**os.environ, "PYTHONPATH": "", **ONE_THREAD}
    before, started = load_average(), time.perf_counter()
    done = subprocess.run(command, cwd=PEER, capture_output=True, text=True, env=env, timeout=7200)
    wall = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"the peer failed:\n{done.stderr[-3000:]}")
    test_ppl = float(re.search(r"End of training \| test loss\s+[\d.]+ \| test ppl\s+([\d.]+)", done.stdout).group(1))
    valid = [float(v) for v in re.findall(r"valid ppl\s+([\d.]+)", done.stdout)]
    return {
        "command": " ".join(command),
        "cwd": str(PEER),
        "threads": 1,
        "wall_s": round(wall, 1),
        "load_average_1min": {"before": before, "after": load_average()},
        "test_loss_nats": math.log(test_ppl),
        "valid_loss_by_epoch": [math.log(v) for v in valid],
        "stdout_tail": done.stdout[-1500:],
    }


def run_llmtui(corpus: Path, variant: str, steps: int, steps_per_epoch: int, seed: int, work: Path) -> dict:
    """One variant, in this process (the caller runs each in its own subprocess)."""
    import numpy as np

    from llmtui.backend import configure_backend

    configure_backend("tensorflow")
    import keras

    from llmtui.config import recipe_from_dict
    from llmtui.evaluation.language_model import make_scorer, score_tokens
    from llmtui.models import build_model, count_parameters
    from llmtui.runfolder import RunFolder
    from llmtui.tokenizers import train_tokenizer
    from llmtui.training.trainer import TrainInputs, train

    model_over, train_over, tok_over = VARIANTS[variant]
    recipe = recipe_from_dict(
        {
            "tokenizer": {"kind": "word", "vocab_size": 1_000_000, "min_frequency": 1, **tok_over},
            "model": {**MATCHED_MODEL, **model_over},
            "train": {
                **MATCHED_TRAIN,
                "steps": steps,
                "eval_every": steps_per_epoch,
                "eval_batches": 100_000,
                "checkpoint_every": steps,
                "log_every": 50,
                **train_over,
            },
        }
    )
    texts = {name: (corpus / f"{name}.txt").read_text(encoding="utf-8") for name in ("train", "valid", "test")}
    tokenizer = train_tokenizer(recipe.tokenizer, iter(texts.values()), normalization="none")
    tokens = {name: np.asarray(tokenizer.encode(text), np.int32) for name, text in texts.items()}
    keras.utils.set_random_seed(seed)
    model = build_model(recipe.model, tokenizer.vocab_size, seed=seed)
    train_bytes = len(texts["train"].encode("utf-8"))
    inputs = TrainInputs(tokens["train"], tokens["valid"], train_bytes / len(tokens["train"]), tokenizer.vocab_size)
    log: list[dict] = []

    def emit(event):
        if type(event).__name__ == "Metrics" and event.split == "val":
            log.append({"step": event.step, "loss": event.values["loss"]})

    before, started = load_average(), time.perf_counter()
    summary = train(
        model,
        inputs,
        recipe.train,
        recipe.model,
        seed,
        RunFolder(work / f"run_{variant}_{seed}"),
        f"bench-{variant}-{seed}-{time.time()}",
        emit,
    )
    wall = time.perf_counter() - started
    scorer = make_scorer(model, True, stateful_batch=EVAL_LANES, model_config=recipe.model)
    scores = score_tokens(scorer, tokens["test"], BPTT, EVAL_LANES)
    test_loss = scores["nll_sum"] / scores["tokens"]
    test_bytes = len(texts["test"].encode("utf-8"))
    return {
        "variant": variant,
        "model": {**MATCHED_MODEL, **model_over},
        "train": recipe.train.model_dump(),
        "tokenizer": recipe.tokenizer.model_dump(),
        "vocab_size": tokenizer.vocab_size,
        "parameters": count_parameters(model),
        "train_tokens": int(len(tokens["train"])),
        "test_tokens": int(len(tokens["test"])),
        "steps": summary["steps"],
        "wall_s": round(wall, 1),
        "load_average_1min": {"before": before, "after": load_average()},
        "valid_loss_by_epoch": [entry["loss"] for entry in log],
        "test_loss_nats": test_loss,
        "test_bits_per_byte": test_loss * len(tokens["test"]) / (test_bytes * math.log(2)),
        "unknown_test_tokens": int((tokens["test"] == tokenizer.unk_id).sum()),
    }


def summarize(results: dict) -> dict:
    """Test bits per byte of the peer and of each variant (median over seeds, and the spread), and each
    variant's change from base."""

    def values(runs: dict) -> list[float]:
        return [run["test_bits_per_byte"] for run in runs.values() if "test_bits_per_byte" in run]

    def median(runs: dict) -> float | None:
        found = values(runs)
        return round(statistics.median(found), 4) if found else None

    def spread(runs: dict) -> dict:
        found = values(runs)
        return {
            "median": round(statistics.median(found), 4),
            "min": round(min(found), 4),
            "max": round(max(found), 4),
            "seeds": len(found),
        }

    everything = {"peer": results.get("peer", {}), **results.get("llmtui", {})}
    peer = median(results.get("peer", {}))
    variants = {name: median(runs) for name, runs in results.get("llmtui", {}).items()}
    base = variants.get("base")
    return {
        "test_bits_per_byte": {"peer": peer, **variants},
        "spread_over_seeds": {name: spread(runs) for name, runs in everything.items() if values(runs)},
        "change_from_base": {
            name: round(value - base, 4)
            for name, value in variants.items()
            if value is not None and base is not None and name != "base"
        },
        "minus_peer": {
            name: round(value - peer, 4) for name, value in variants.items() if value is not None and peer is not None
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "tinyshakespeare.txt")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--lines", type=int, default=0, help="use only the first this many lines (0 = all)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/llmtui-bench-quality"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", default="1111")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--steps-per-epoch", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    corpus = args.work / "corpus"
    if args.worker:  # one llmtui variant: print its result as JSON
        variant, seed = args.worker.split(":")
        print(
            "RESULT " + json.dumps(run_llmtui(corpus, variant, args.steps, args.steps_per_epoch, int(seed), args.work))
        )
        return

    facts = prepare_corpus(args.data, corpus, args.lines)
    per_epoch = peer_steps_per_epoch(facts["train"]["tokens_words_and_eos"])
    steps = per_epoch * args.epochs
    results = {}
    results.update(
        {
            "benchmark": "quality",
            "issue": 18,
            "corpus": {"source": str(args.data), **facts},
            "epochs": args.epochs,
            "steps": steps,
            "steps_per_epoch": per_epoch,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        }
    )
    results["peer"], results["llmtui"] = {}, {}

    def save() -> None:
        # Merged into what is on disk: a peer-only and a variants-only run may share the file.
        on_disk = json.loads(args.out.read_text()) if args.out.exists() else {}
        merged = {**on_disk, **{k: v for k, v in results.items() if k not in ("peer", "llmtui", "command")}}
        earlier = on_disk.get("commands") or ([on_disk["command"]] if "command" in on_disk else [])
        merged.pop("command", None)
        merged["commands"] = list(dict.fromkeys([*earlier, results["command"]]))  # every invocation, in order
        merged["peer"] = {**on_disk.get("peer", {}), **results["peer"]}
        merged["llmtui"] = dict(on_disk.get("llmtui", {}))
        for variant, by_seed in results["llmtui"].items():
            merged["llmtui"][variant] = {**merged["llmtui"].get(variant, {}), **by_seed}
        merged["summary"] = summarize(merged)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
        tmp.replace(args.out)

    for seed in args.seeds.split(","):
        if not args.skip_peer:
            print(f"peer, seed {seed}: {args.epochs} epochs ({steps} steps)", flush=True)
            results["peer"][seed] = peer = run_peer(corpus, args.epochs, int(seed), args.work)
            peer["test_bits_per_byte"] = (
                peer["test_loss_nats"] * facts["test"]["tokens_words_and_eos"] / (facts["test"]["bytes"] * math.log(2))
            )
            print(f"  test {peer['test_bits_per_byte']:.4f} bits/byte, {peer['wall_s']} s", flush=True)
            save()
        for variant in [name for name in args.variants.split(",") if name]:
            print(f"llmtui {variant}, seed {seed}: {steps} steps", flush=True)
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--work",
                str(args.work),
                "--out",
                str(args.out),
                "--worker",
                f"{variant}:{seed}",
                "--steps",
                str(steps),
                "--steps-per-epoch",
                str(per_epoch),
            ]
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=7200, env={**os.environ, **ONE_THREAD}
            )
            line = next((line for line in done.stdout.splitlines() if line.startswith("RESULT ")), None)
            if line is None:
                raise RuntimeError(f"llmtui variant {variant} failed:\n{done.stderr[-3000:]}")
            result = json.loads(line[len("RESULT ") :])
            result["command"] = " ".join(command) + "  (one thread)"
            results["llmtui"].setdefault(variant, {})[seed] = result
            print(f"  test {result['test_bits_per_byte']:.4f} bits/byte, {result['wall_s']} s", flush=True)
            save()
    save()


if __name__ == "__main__":
    main()
