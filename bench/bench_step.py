"""What llmtui's training step costs over a plain Keras 3 loop: in-process A/B, interleaved windows.

Three steps of the baby GPT (4 layers, 4 heads, 128 wide, context 64, batch 12, characters of tinyshakespeare)
live in one process and are timed in turns, windows of W steps, the order reversed every round, so all see
the same minutes of the machine:
  - plain: a 40-line Keras 3 GPT (Embedding, LayerNormalization, Dense, `ops.dot_product_attention`), AdamW,
    `SparseCategoricalCrossentropy`, `jit_compile=True`, `train_on_batch`;
  - ours_plainopt: llmtui's model (`build_model`) with that same plain optimizer and loss;
  - ours: llmtui's model, optimizer and loss as `llmtui run` compiles them (`compile_model`: clip, gradient
    norm, schedule, weight-decay exclusions), stepped by `TrainStep`;
  - ours_no_bias: the same without biases and LayerNorm offsets (`model.bias = false`, nanoGPT's default);
  - ours_keras_loss: ours with Keras' sparse cross-entropy instead of the engine's `next_token_nll`.
Figures: each variant's median ms/step and the median over rounds of its ratio to the first.
`--threads 1 --cpu-time` runs TensorFlow on one thread and counts process CPU time instead of wall time: a
figure that other processes on the machine barely move (wall-clock ratios on a loaded 2-core machine do).

Usage: python bench/bench_step.py [--variants plain,ours_plainopt,ours,ours_no_bias] [--rounds 6] [--window 40]
       [--threads 1 --cpu-time]      Writes bench/results/step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
B, T, D, L, H = 12, 64, 128, 4, 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="plain,ours_plainopt,ours")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--window", type=int, default=40)
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0 = its default)")
    parser.add_argument("--cpu-time", action="store_true", help="count process CPU time, not wall time")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    import numpy as np
    from keras import ops

    from llmtui.config import recipe_from_dict
    from llmtui.models import build_model
    from llmtui.training.step import TrainStep
    from llmtui.training.trainer import compile_model

    text = (ROOT / "assets" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text], np.int32)
    vocab = len(chars)
    rng = np.random.default_rng(0)

    def batch():
        starts = rng.integers(0, len(ids) - T - 1, B)
        window = ids[starts[:, None] + np.arange(T + 1)]
        return window[:, :-1], window[:, 1:]

    def plain_model():
        tokens = keras.Input((T,), dtype="int32")
        embedding = keras.layers.Embedding(vocab, D)
        x = embedding(tokens) + keras.layers.Embedding(T, D)(ops.arange(T)[None])
        for _ in range(L):
            h = keras.layers.LayerNormalization(epsilon=1e-5)(x)
            q, k, v = [ops.reshape(t, (-1, T, H, D // H)) for t in ops.split(keras.layers.Dense(3 * D)(h), 3, axis=-1)]
            x = x + keras.layers.Dense(D)(ops.reshape(ops.dot_product_attention(q, k, v, is_causal=True), (-1, T, D)))
            h = keras.layers.LayerNormalization(epsilon=1e-5)(x)
            x = x + keras.layers.Dense(D)(ops.gelu(keras.layers.Dense(4 * D)(h), approximate=True))
        x = keras.layers.LayerNormalization(epsilon=1e-5)(x)
        return keras.Model(tokens, ops.matmul(x, ops.transpose(embedding.embeddings)))

    def plain_compile(model):
        model.compile(
            optimizer=keras.optimizers.AdamW(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=True,
        )

    recipe = recipe_from_dict(
        {
            "model": {"arch": "gpt", "layers": L, "heads": H, "dim": D, "context": T},
            "train": {"batch_size": B, "lr": 1e-3, "steps": 5000},
        }
    )
    steps = {}
    for name in args.variants.split(","):
        if name == "plain":
            model = plain_model()
            plain_compile(model)
            steps[name] = model.train_on_batch
        elif name == "ours_plainopt":
            model = build_model(recipe.model, vocab, seed=1)
            plain_compile(model)
            steps[name] = model.train_on_batch
        elif name in ("ours", "ours_no_bias", "ours_keras_loss"):
            config = recipe.model.model_copy(update={"bias": name != "ours_no_bias"})
            model = build_model(config, vocab, seed=1)
            keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            compile_model(model, recipe.train, keras_loss if name == "ours_keras_loss" else None)
            steps[name] = TrainStep(model)
        else:
            raise SystemExit(f"unknown variant {name}")
        for _ in range(15):  # compile and warm up
            steps[name](*batch())

    clock = time.process_time if args.cpu_time else time.perf_counter
    times = {name: [] for name in steps}
    for r in range(args.rounds):
        for name in list(steps) if r % 2 == 0 else list(reversed(steps)):
            batches = [batch() for _ in range(args.window)]
            start = clock()
            for x, y in batches:
                loss = steps[name](x, y)
            float(np.asarray(loss))
            times[name].append((clock() - start) * 1000 / args.window)
    first = list(steps)[0]
    result = {
        "command": "python bench/bench_step.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" if not isinstance(v, bool) else f"--{k.replace('_', '-')}"
            for k, v in vars(args).items()
            if v
        ),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_before_and_after": [None, round(os.getloadavg()[0], 2)],
        "clock": "process CPU time" if args.cpu_time else "wall",
        "threads": args.threads or "default",
        "variants": {
            name: {
                "median_ms_per_step": round(statistics.median(v), 2),
                f"median_ratio_to_{first}": round(statistics.median(a / b for a, b in zip(v, times[first])), 4),
                "windows_ms_per_step": [round(a, 2) for a in v],
            }
            for name, v in times.items()
        },
    }
    result["load_average_before_and_after"][0] = LOAD_BEFORE
    print(json.dumps(result, indent=2))
    (ROOT / "bench" / "results" / "step.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


LOAD_BEFORE = round(os.getloadavg()[0], 2)

if __name__ == "__main__":
    main()
