"""Training speed: llmtui's engine (Keras 3, XLA) against a plain PyTorch eager baseline, in the same run.

Two models on the character vocabulary of tinyshakespeare:
  - "baby GPT": 4 layers, 4 heads, 128 wide, context 64, batch 12, AdamW, no dropout;
  - LSTM: 2 layers, 256 wide, context 64, batch 12, AdamW.
Tokens/s: the baseline and ours each run as a long-lived worker, warmed up first, then timed in alternating
windows of steps (the order flips every round), so both are measured over the same minutes: a shared
2-core machine's speed drifts between minutes by more than the gap being measured. The speedup is the median
of the rounds' ratios. Then each side alone, one after the other: the wall time (start-up and compilation
included) until validation loss <= the target (1.88). Both sides draw the same batches from the same seeded
sampler and use the same learning-rate schedule. Ours runs the way the trainer runs it: batches drawn ahead
by `BatchFeed`, freed scratch memory reused (`reuse_freed_memory`).

Timed in the same turns ("floor"): one training step's matrix products alone, each with whichever of PyTorch
and XLA ran that shape faster. A real step does all of them and more, so for the GPT
`speedup_ceiling_at_matmul_floor` bounds what any implementation could gain over the baseline on this machine.
For the LSTM it is no bound: 256 of its products per step are small (12 rows) and each timed call carries its
own dispatch cost, which PyTorch's fused LSTM kernel does not pay.

Usage (torch is a benchmark-only dependency: `pip install torch==2.13.0`):
    python bench/bench_train.py [--data ../shared/data/tinyshakespeare.txt] [--models gpt,lstm] [--quick]
Writes bench/results/train.json (--quick: tokens/s only, to train_quick.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "gpt": {"arch": "gpt", "layers": 4, "heads": 4, "dim": 128, "context": 64, "batch": 12, "lr": 1e-3,
            "target": 1.88, "max_steps": 6000},
    "lstm": {"arch": "lstm", "layers": 2, "heads": 1, "dim": 256, "context": 64, "batch": 12, "lr": 2e-3,
             "target": 1.88, "max_steps": 6000},
}
EVAL_EVERY = 250
FRAMEWORKS = ["torch", "llmtui", "floor"]
WARMUP_STEPS = 50  # steps before any timing: compilation and caches settle
EVAL_BATCHES = 40
WARMUP = 100


def load_corpus(path: Path):
    import numpy as np

    text = path.read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text], dtype=np.int32)
    split = int(len(ids) * 0.9)
    return ids[:split], ids[split:], len(chars)


def lr_at(step: int, peak: float, total: int) -> float:
    if step < WARMUP:
        return peak * (step + 1) / WARMUP
    progress = min(1.0, (step - WARMUP) / max(1, total - WARMUP))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class Batches:
    def __init__(self, ids, context, batch, seed):
        import numpy as np

        self.ids, self.context, self.batch = ids, context, batch
        self.rng = np.random.default_rng(seed)
        self.offsets = np.arange(context + 1)

    def next_batch(self):
        starts = self.rng.integers(0, len(self.ids) - self.context - 1, size=self.batch)
        w = self.ids[starts[:, None] + self.offsets]
        return w[:, :-1], w[:, 1:]

    def state(self):
        return self.rng.bit_generator.state

    def set_state(self, state):
        self.rng.bit_generator.state = state


def val_batches(ids, context, batch, count):
    import numpy as np

    rng = np.random.default_rng(1234)
    offsets = np.arange(context + 1)
    out = []
    for _ in range(count):
        starts = rng.integers(0, len(ids) - context - 1, size=batch)
        w = ids[starts[:, None] + offsets]
        out.append((w[:, :-1], w[:, 1:]))
    return out


# ---------------------------------------------------------------------------------------------------------
def setup_llmtui(cfg: dict, data: Path, resources: contextlib.ExitStack):
    """Our engine's training step, evaluation and batches for `cfg`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from llmtui.backend import configure_backend

    configure_backend(os.environ.get("KERAS_BACKEND", "tensorflow"))
    import keras
    import numpy as np

    from llmtui.config import recipe_from_dict
    from llmtui.evaluation.language_model import make_scorer
    from llmtui.models import build_model
    from llmtui.training.trainer import compile_model

    train_ids, val_ids, vocab = load_corpus(data)
    recipe = recipe_from_dict({
        "model": {"arch": cfg["arch"], "layers": cfg["layers"], "heads": cfg["heads"], "dim": cfg["dim"],
                  "context": cfg["context"], "dropout": 0.0},
        "train": {"optimizer": "adamw", "lr": cfg["lr"], "steps": cfg["max_steps"], "warmup_steps": WARMUP,
                  "schedule": "cosine", "weight_decay": 0.1, "grad_clip": 1.0, "batch_size": cfg["batch"]}})
    keras.utils.set_random_seed(0)
    model = build_model(recipe.model, vocab, seed=0)
    compile_model(model, recipe.train)
    scorer = make_scorer(model)
    batches = Batches(train_ids, cfg["context"], cfg["batch"], 0)
    val = val_batches(val_ids, cfg["context"], cfg["batch"], EVAL_BATCHES)

    from llmtui.training.step import TrainStep

    step = TrainStep(model)  # the trainer's step: `train_on_batch` on TensorFlow, state held on JAX

    def evaluate():
        step.sync()
        scores = [np.asarray(scorer.predict_on_batch([x, y]))[..., 0].mean() for x, y in val]
        return float(np.mean(scores))

    # The engine's own arrangements around the step: batches drawn ahead on a thread, freed scratch reused.
    from llmtui.training.feed import BatchFeed
    from llmtui.training.host_memory import reuse_freed_memory

    resources.enter_context(reuse_freed_memory())
    feed = resources.enter_context(BatchFeed(batches))
    return lambda x, y: float(step(x, y)), evaluate, feed


# ---------------------------------------------------------------------------------------------------------
def setup_torch(cfg: dict, data: Path, resources: contextlib.ExitStack):
    """The PyTorch eager baseline's training step, evaluation and batches for `cfg`."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    train_ids, val_ids, vocab = load_corpus(data)
    d, heads, context = cfg["dim"], cfg["heads"], cfg["context"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
            q, k, v = (z.view(b, t, heads, d // heads).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
            return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(context, d)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg["layers"]))
            self.ln = nn.LayerNorm(d)
            self.apply(lambda m: nn.init.normal_(m.weight, std=0.02) if isinstance(m, (nn.Linear, nn.Embedding)) else None)

        def forward(self, idx):
            x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
            for block in self.blocks:
                x = block(x)
            return self.ln(x) @ self.tok.weight.T  # tied output embedding

    class LSTMModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.lstm = nn.LSTM(d, d, num_layers=cfg["layers"], batch_first=True)

        def forward(self, idx):
            h, _ = self.lstm(self.tok(idx))
            return h @ self.tok.weight.T

    model = GPT() if cfg["arch"] == "gpt" else LSTMModel()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "tok" not in n and "pos" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "tok" not in n and "pos" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg["lr"], betas=(0.9, 0.95))
    batches = Batches(train_ids, context, cfg["batch"], 0)
    val = [(torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64)))
           for x, y in val_batches(val_ids, context, cfg["batch"], EVAL_BATCHES)]
    step_counter = {"n": 0}

    def train_step(x, y):
        for group in opt.param_groups:
            group["lr"] = lr_at(step_counter["n"], cfg["lr"], cfg["max_steps"])
        step_counter["n"] += 1
        logits = model(torch.from_numpy(x.astype(np.int64)))
        loss = F.cross_entropy(logits.reshape(-1, vocab), torch.from_numpy(y.astype(np.int64)).reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss)

    def evaluate():
        model.eval()
        with torch.no_grad():
            losses = [float(F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))) for x, y in val]
        model.train()
        return float(np.mean(losses))

    return train_step, evaluate, batches


def run(framework: str, cfg: dict, data: Path, mode: str) -> dict:
    t0 = time.perf_counter()
    with contextlib.ExitStack() as resources:
        step_fn, evaluate, batches = SETUPS[framework](cfg, data, resources)
        return _loop(step_fn, evaluate, batches, cfg, mode, t0)


def serve(framework: str, cfg: dict, data: Path) -> None:
    """Warm up, say "ready", then for each line N on stdin train N steps and answer the seconds they took.

    The parent drives two of these (baseline and ours) in turns, so both are timed over the same minutes of
    this machine's life: a shared 2-core machine's speed drifts by more than the gap being measured."""
    with contextlib.ExitStack() as resources:
        step_fn, _, batches = SETUPS[framework](cfg, data, resources)
        for _ in range(WARMUP_STEPS):
            step_fn(*batches.next_batch())
        print("ready", flush=True)
        for line in sys.stdin:
            start = time.perf_counter()
            for _ in range(int(line)):
                step_fn(*batches.next_batch())
            print(time.perf_counter() - start, flush=True)


def interleaved_throughput(name: str, cfg: dict, data: Path, rounds: int, window: int) -> dict:
    """Tokens/s of the baseline, ours and the matmul floor, timed in turns in windows of `window` steps (the
    order rotates every round); medians over the rounds, and the median of each round's ratio to the
    baseline."""
    workers = {}
    for framework in FRAMEWORKS:  # started and warmed up one at a time: compilation stays untimed
        workers[framework] = subprocess.Popen(
            [sys.executable, __file__, "--data", str(data), "--worker", framework, name, "serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        if workers[framework].stdout.readline().strip() != "ready":
            sys.exit(f"{framework} {name} worker failed to start")
    tokens = window * cfg["batch"] * cfg["context"]
    rates = {framework: [] for framework in workers}
    try:
        for r in range(rounds):
            for framework in FRAMEWORKS[r % 3:] + FRAMEWORKS[:r % 3]:
                time.sleep(0.3)  # the other sides' threads stop spinning before this window starts
                workers[framework].stdin.write(f"{window}\n")
                workers[framework].stdin.flush()
                rates[framework].append(tokens / float(workers[framework].stdout.readline()))
    finally:
        for worker in workers.values():
            worker.stdin.close()
            worker.wait()

    def ratio_to_baseline(framework: str) -> float:
        return statistics.median(ours / base for ours, base in zip(rates[framework], rates["torch"]))

    return {"rounds": rounds, "window_steps": window,
            **{f"{framework}_tokens_per_sec": statistics.median(rates[framework]) for framework in FRAMEWORKS},
            "speedup_median_of_rounds": ratio_to_baseline("llmtui"),
            # The most any implementation could gain over the baseline at this machine's matmul speed.
            "ceiling_median_of_rounds": ratio_to_baseline("floor"),
            **{f"{framework}_windows": rates[framework] for framework in FRAMEWORKS}}


# ---------------------------------------------------------------------------------------------------------
def matmul_shapes(cfg: dict) -> list[tuple]:
    """The (left, right) operand shapes of every matrix product in one training step of `cfg`'s model: the
    forward product of every layer and the two products of its backward."""
    b, t, d, layers, vocab = cfg["batch"], cfg["context"], cfg["dim"], cfg["layers"], 65
    rows = b * t
    if cfg["arch"] == "gpt":
        linears = [(rows, d, 3 * d), (rows, d, d), (rows, d, 4 * d), (rows, 4 * d, d)] * layers
        heads, hd = cfg["heads"], d // cfg["heads"]
        batched = [(b * heads, t, hd, t), (b * heads, t, t, hd)] * layers  # q k^T and p v
    else:
        linears = [(rows, d, 4 * d)] * layers  # the input projections, all time steps at once
        batched = []
    linears.append((rows, d, vocab))  # the tied output projection
    shapes = []
    for m, k, n in linears:  # forward x@W, backward dY@W^T and X^T@dY
        shapes += [((m, k), (k, n)), ((m, n), (n, k)), ((k, m), (m, n))]
    if cfg["arch"] != "gpt":
        # The recurrent product: forward h@U and backward dZ@U^T at every time step (each needs the step
        # before), and the weight gradient H^T@dZ once for the whole sequence.
        shapes += [((b, d), (d, 4 * d)), ((b, 4 * d), (4 * d, d))] * (t * layers)
        shapes += [((d, rows), (rows, 4 * d))] * layers
    for g, m, k, n in batched:
        shapes += [((g, m, k), (g, k, n)), ((g, m, n), (g, n, k)), ((g, k, m), (g, m, n))]
    return shapes


def setup_floor(cfg: dict, data: Path, resources: contextlib.ExitStack):
    """The matrix products of one training step alone, as a "step" the interleaved timing can run, each with
    whichever of PyTorch and XLA (jax.jit) ran that shape faster in isolation. A training step of the same
    model does all of them plus everything else (norms, softmax, activations, the optimizer), so no
    implementation steps faster than this on this machine."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    shapes = matmul_shapes(cfg)

    def timed(run, repeats: int = 50) -> float:
        run()
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        return (time.perf_counter() - start) / repeats

    fastest = {}
    matmul = jax.jit(jnp.matmul)
    for a, w in set(shapes):
        x, y = torch.randn(*a), torch.randn(*w)
        jx, jy = jnp.asarray(np.asarray(x)), jnp.asarray(np.asarray(y))
        options = [lambda x=x, y=y: torch.matmul(x, y), lambda jx=jx, jy=jy: matmul(jx, jy).block_until_ready()]
        fastest[a, w] = min(options, key=timed)
    products = [fastest[shape] for shape in shapes]

    def step(*_):
        for product in products:
            product()

    class NoBatches:
        def next_batch(self):
            return ()

    return step, None, NoBatches()


SETUPS = {"llmtui": setup_llmtui, "torch": setup_torch, "floor": setup_floor}


# ---------------------------------------------------------------------------------------------------------
def _loop(step_fn, evaluate, batches, cfg, mode, t0) -> dict:
    """Throughput over steps 50..250 (after compilation), then (mode "target") train until val <= target."""
    result = {"steps": 0}
    for step in range(250):
        if step == 50:
            start = time.perf_counter()
        step_fn(*batches.next_batch())
    tokens = 200 * cfg["batch"] * cfg["context"]
    result["tokens_per_sec"] = tokens / (time.perf_counter() - start)
    result["steps"] = 250
    if mode != "target":
        return result
    val_loss = evaluate()
    step = 250
    while val_loss > cfg["target"] and step < cfg["max_steps"]:
        for _ in range(EVAL_EVERY):
            step_fn(*batches.next_batch())
        step += EVAL_EVERY
        val_loss = evaluate()
    result.update(steps=step, val_loss=val_loss, reached=val_loss <= cfg["target"],
                  seconds_to_target=time.perf_counter() - t0)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "tinyshakespeare.txt")
    parser.add_argument("--quick", action="store_true", help="throughput only (no training to the target)")
    parser.add_argument("--models", default="gpt,lstm")
    parser.add_argument("--rounds", type=int, default=10, help="alternating throughput windows per framework")
    parser.add_argument("--window", type=int, default=40, help="training steps per throughput window")
    parser.add_argument("--worker", nargs=3, metavar=("FRAMEWORK", "MODEL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        framework, name, mode = args.worker
        if mode == "serve":
            serve(framework, CONFIGS[name], args.data)
        else:
            print(json.dumps(run(framework, CONFIGS[name], args.data, mode)))
        return
    if not args.data.exists():
        sys.exit(f"no corpus at {args.data}: pass --data PATH (tinyshakespeare.txt)")
    mode = "throughput" if args.quick else "target"
    results = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
               "mode": mode, "models": {}}

    def worker(framework: str, name: str, worker_mode: str) -> dict:
        out = subprocess.run([sys.executable, __file__, "--data", str(args.data), "--worker", framework, name,
                              worker_mode], check=False, capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            sys.exit(f"{framework} {name} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    for name in args.models.split(","):
        entry = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "config": CONFIGS[name]}
        tokens_per_step = CONFIGS[name]["batch"] * CONFIGS[name]["context"]
        gflop = sum(2 * math.prod(a) * w[-1] for a, w in matmul_shapes(CONFIGS[name])) / 1e9
        entry["interleaved"] = interleaved_throughput(name, CONFIGS[name], args.data, args.rounds, args.window)
        print(name, "interleaved", {k: v for k, v in entry["interleaved"].items() if not k.endswith("windows")},
              flush=True)
        floor_seconds = tokens_per_step / entry["interleaved"]["floor_tokens_per_sec"]
        entry["floor"] = {"matmul_seconds_per_step": floor_seconds, "gflop_per_step": gflop,
                          "matmul_gflops": gflop / floor_seconds}
        entry["speedup_tokens_per_sec"] = entry["interleaved"]["speedup_median_of_rounds"]
        entry["speedup_ceiling_at_matmul_floor"] = entry["interleaved"]["ceiling_median_of_rounds"]
        if mode == "target":  # then each side alone, the baseline first: the wall time to the target
            for framework in ("torch", "llmtui"):
                entry[framework] = worker(framework, name, mode)
                print(name, framework, entry[framework], flush=True)
            entry["speedup_time_to_target"] = entry["torch"]["seconds_to_target"] / entry["llmtui"]["seconds_to_target"]
        results["models"][name] = entry
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    out_file = out_dir / f"train{'_quick' if args.quick else ''}.json"
    if out_file.exists():  # a run of some models replaces their entries and keeps the others'
        earlier = json.loads(out_file.read_text())
        results["models"] = {**{k: v for k, v in earlier.get("models", {}).items() if k not in results["models"]},
                             **results["models"]}
    out_file.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: {m: v for m, v in e.items() if m.startswith("speedup")} for k, e in results["models"].items()}))


if __name__ == "__main__":
    main()
