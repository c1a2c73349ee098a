"""Generation speed: tokens/s with and without the key/value cache (or carried recurrent state), same run,
same model, same settings.

Models (random weights; speed does not depend on what was learned):
  - GPT: 4 layers, 4 heads, 256 wide, context 512, vocabulary 2048;
  - LSTM: 2 layers, 512 wide, context 512, vocabulary 2048.
Each generates 256 new tokens (temperature 0.8, top-k 40, seed 0) from a 16-token prompt, once through the
cache and once recomputing the whole window per token. A short warm-up generation first compiles each path,
so the timings are steady state; the compile times are reported apart.

Usage:
    python bench/bench_generate.py [--backends tensorflow jax] [--tokens 256] [--archs gpt lstm]
Writes bench/results/generate.json. Each backend and model runs in its own process, one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 2048
PROMPT_TOKENS = 16
CONFIGS = {
    "gpt": {"arch": "gpt", "layers": 4, "heads": 4, "dim": 256, "context": 512},
    "lstm": {"arch": "lstm", "layers": 2, "dim": 512, "context": 512},
}


class IdTokenizer:
    """Token ids as text ("12 7 ..."), so the benchmark needs no trained tokenizer."""

    eos_id = 0

    def encode(self, text: str) -> list[int]:
        return [int(t) for t in text.split()]

    def decode(self, ids) -> str:
        return " ".join(str(i) for i in ids)


def measure(arch: str, tokens: int) -> dict:
    """One model under the backend in KERAS_BACKEND (run in a child process)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from llmtui.backend import configure_backend

    configure_backend(os.environ["KERAS_BACKEND"])
    import keras

    from llmtui.config import recipe_from_dict
    from llmtui.generation.sampler import Generator
    from llmtui.models import build_model, count_parameters

    config = recipe_from_dict({"model": CONFIGS[arch]}).model
    model = build_model(config, VOCAB, seed=0)
    generator = Generator(model, IdTokenizer(), config.context)
    prompt = " ".join(str(1 + (7 * i) % (VOCAB - 1)) for i in range(PROMPT_TOKENS))
    settings = {"temperature": 0.8, "top_k": 40, "top_p": 1.0, "seed": 0, "stop_at_eos": False}
    result = {"parameters": count_parameters(model), "config": CONFIGS[arch]}
    texts = {}
    for name, use_cache in (("cache", True), ("no_cache", False)):
        start = time.perf_counter()
        generator.generate(prompt, 4, use_cache=use_cache, **settings)  # compiles this path
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        out = generator.generate_full(prompt, tokens, use_cache=use_cache, **settings)
        seconds = time.perf_counter() - start
        texts[name] = out.tokens
        result[name] = {"new_tokens": len(out.tokens), "seconds": round(seconds, 3),
                        "tokens_per_sec": round(len(out.tokens) / seconds, 2), "warmup_and_compile_s": round(compile_s, 2)}
    result["speedup"] = round(result["cache"]["tokens_per_sec"] / result["no_cache"]["tokens_per_sec"], 2)
    result["same_tokens"] = texts["cache"] == texts["no_cache"]
    result["keras"] = keras.__version__
    return result


def versions(backend: str) -> dict:
    out = {}
    for module in ("keras", "keras_hub", backend):
        try:
            out[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - a backend that is not installed
            out[module] = None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--archs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "generate.json")
    parser.add_argument("--child", nargs=2, metavar=("BACKEND", "ARCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        os.environ["KERAS_BACKEND"] = args.child[0]
        print(json.dumps(measure(args.child[1], args.tokens)))
        return
    results = {
        "benchmark": "generation tokens/s with and without the cache",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "device": "CPU", "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"new_tokens": args.tokens, "prompt_tokens": PROMPT_TOKENS, "vocab": VOCAB,
                     "temperature": 0.8, "top_k": 40, "seed": 0},
        "results": {},
    }
    for backend in args.backends:
        results["results"][backend] = {"versions": versions(backend)}
        for arch in args.archs:
            env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
            done = subprocess.run([sys.executable, __file__, "--child", backend, arch, "--tokens", str(args.tokens)],
                                  env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                results["results"][backend][arch] = {"error": done.stderr.strip().splitlines()[-1:]}
            else:
                results["results"][backend][arch] = json.loads(done.stdout.strip().splitlines()[-1])
            print(backend, arch, json.dumps(results["results"][backend][arch]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
