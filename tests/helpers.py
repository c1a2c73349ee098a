"""Test code shared by the test files: small corpora and recipes the tests write themselves (no downloads, no
../shared), and `llmtui` run as a user runs it, in its own process."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parents[1]  # the checkout under test: first on the path of every `llmtui` process

WORDS = (
    "the model reads text and learns to predict the next character of each line "
    "a small network trained on a small corpus still learns which letters follow which"
).split()


def write_corpus(folder: Path, files: int = 6, lines: int = 40, seed: int = 0) -> Path:
    """A folder of small English-like text files made from a fixed word list."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        body = "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))) for _ in range(lines))
        (folder / f"doc{i}.txt").write_text(body + "\n", encoding="utf-8")
    return folder


def tiny_recipe_dict(corpus: Path, out_dir: Path, **sections) -> dict:
    """The tiny run most tests train (characters, a 1-layer 32-wide GPT, 40 steps); `sections` update it."""
    recipe = {
        "run": {"name": "tiny", "out_dir": str(out_dir), "seed": 0},
        "data": {"sources": [str(corpus)], "val_fraction": 0.2, "chunk_chars": 400},
        "tokenizer": {"kind": "char"},
        "model": {"arch": "gpt", "layers": 1, "dim": 32, "heads": 2, "context": 16},
        "train": {
            "steps": 40,
            "batch_size": 8,
            "lr": 3e-3,
            "warmup_steps": 5,
            "eval_every": 20,
            "eval_batches": 2,
            "checkpoint_every": 20,
            "log_every": 5,
        },
        "eval": {"max_batches": 4},
        "generate": {"prompts": ["the "], "max_tokens": 12},
    }
    for name, values in sections.items():
        recipe.setdefault(name, {}).update(values)
    return recipe


def write_recipe(path: Path, recipe: dict) -> Path:
    """`recipe` written as a TOML file at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(recipe), encoding="utf-8")
    return path


def llmtui_env(**changes: str | None) -> dict[str, str]:
    """The environment of an `llmtui` process: this checkout first on the path, TensorFlow quiet, lines wide
    enough that messages do not wrap; then `changes` (a value of None removes that variable)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"}
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_llmtui(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 600, input: str | None = None
) -> subprocess.CompletedProcess:
    """`llmtui ARGS` in a fresh interpreter, as a user runs it, with its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "llmtui", *args],
        cwd=cwd,
        env=env or llmtui_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def model_config(arch: str, **extra):
    """A tiny `[model]` section of `arch` (2 layers, 32 wide, context 16), `extra` fields changed."""
    from llmtui.config import recipe_from_dict

    return recipe_from_dict(
        {
            "model": {
                "arch": arch,
                "layers": 2,
                "dim": 32,
                "heads": 4,
                "kv_heads": 2 if arch == "llama" else 0,
                "context": 16,
                **extra,
            }
        }
    ).model


def fixed_batches(n: int, vocab: int = 40, batch: int = 8, context: int = 16, seed: int = 0) -> list:
    """`n` (inputs, targets) batches of a learnable pattern: each token is the previous one plus one (mod vocab)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    starts = rng.integers(0, vocab, size=(n, batch, 1))
    seq = (starts + np.arange(context + 1)) % vocab
    return [(s[:, :-1].astype("int32"), s[:, 1:].astype("int32")) for s in seq]


def assert_trains_alike(ours, stock, x, y) -> None:
    """Given Keras' layer the same weights, our model's outputs, and its weights after 3 Adam steps, equal it."""
    import numpy as np

    stock.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours.predict_on_batch(x), stock.predict_on_batch(x), rtol=1e-5, atol=1e-6)
    for _ in range(3):
        ours.train_on_batch(x, y)
        stock.train_on_batch(x, y)
    for a, b in zip(ours.get_weights(), stock.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def train_tiny_runs(base: Path, runs: dict[str, dict]) -> dict[str, Path]:
    """One tiny run per entry of `runs` (name -> recipe sections over the tiny recipe), each trained 20 steps
    (no XLA, no evaluation) on a small corpus under `base`; their run folders by name."""
    from llmtui.config import recipe_from_dict
    from llmtui.pipeline import Pipeline

    corpus = write_corpus(base / "corpus", files=3, lines=30)
    folders = {}
    for name, sections in runs.items():
        recipe = tiny_recipe_dict(corpus, base / "runs", **sections)
        recipe["run"]["name"] = name
        recipe["train"].update(steps=20, eval_every=1000, checkpoint_every=1000, jit_compile=False)
        Pipeline(recipe_from_dict(recipe), base_dir=base).execute(until="train")
        folders[name] = base / "runs" / name
    return folders
