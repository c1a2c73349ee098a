"""Generation speed: new tokens/s, batch 1, with and without the key/value cache (or carried recurrent state),
same run, same model, same settings; and Hugging Face transformers' `generate` on the same weights.

Models (random weights; speed does not depend on what was learned):
  - quickstart: the README quickstart's GPT (4 layers, 4 heads, 128 wide, context 128, vocabulary 2048);
    112 new tokens, so prompt and continuation fit its 128 positions (GPT-2 in transformers has no
    sliding window);
  - GPT: 4 layers, 4 heads, 256 wide, context 512, vocabulary 2048;
  - LSTM: 2 layers, 512 wide, context 512, vocabulary 2048.
Each generates new tokens (temperature 0.8, top-k 40, seed 0) from a 16-token prompt, through the cache (the
whole sampling loop compiled, `llmtui.generation.loop`) and recomputing the whole window per token. A short
warm-up generation first compiles each path, so the timings are steady state; compile times are reported apart.

transformers: for the quickstart model, the same weights are put into a `GPT2LMHeadModel` built here (tied
embeddings, tanh GELU, LayerNorm epsilon 1e-5; q/k/v in one projection in the same order, Conv1D weights
laid out (in, out) like Keras kernels), checked to give the same logits, and timed with `generate(do_sample=True,
temperature=0.8, top_k=40, use_cache=True)`, best of 3, in a Python that has torch and transformers
(`--hf-python`, default TORCH_PYTHON or ~/.cache/llmtui-race/torch/bin/python); skipped, and said so, without one.

Usage:
    python bench/bench_generate.py [--backends tensorflow jax] [--tokens 256] [--archs quickstart gpt lstm]
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
    "quickstart": {"arch": "gpt", "layers": 4, "heads": 4, "dim": 128, "context": 128},
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
    if arch == "quickstart":
        tokens = min(tokens, config.context - PROMPT_TOKENS)
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
        result[name] = {
            "new_tokens": len(out.tokens),
            "seconds": round(seconds, 3),
            "tokens_per_sec": round(len(out.tokens) / seconds, 2),
            "warmup_and_compile_s": round(compile_s, 2),
        }
    if arch == "quickstart":
        result["transformers"] = hf_generate(model, config, prompt, tokens)
    result["speedup"] = round(result["cache"]["tokens_per_sec"] / result["no_cache"]["tokens_per_sec"], 2)
    result["same_tokens"] = texts["cache"] == texts["no_cache"]
    result["keras"] = keras.__version__
    return result


def hf_python() -> str | None:
    path = (
        os.environ.get("HF_PYTHON")
        or os.environ.get("TORCH_PYTHON")
        or str(Path.home() / ".cache/llmtui-race/torch/bin/python")
    )
    ok = (
        Path(path).exists()
        and subprocess.run([path, "-c", "import torch, transformers"], capture_output=True).returncode == 0
    )
    return path if ok else None


def hf_generate(model, config, prompt: str, tokens: int) -> dict:
    """transformers' GPT-2 `generate` on `model`'s weights, in a Python with torch and transformers."""
    import tempfile

    import numpy as np

    python = hf_python()
    if python is None:
        return {"skipped": "no Python with torch and transformers (set HF_PYTHON)"}
    weights = {v.path: np.asarray(v) for v in model.weights}
    ids = np.array([[int(t) for t in prompt.split()]], dtype="int32")
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "w.npz", **{k.replace("/", "|"): v for k, v in weights.items()})
        np.save(Path(tmp) / "logits.npy", np.asarray(model(ids))[0, -1])
        spec = {
            "dir": tmp,
            "layers": config.layers,
            "heads": config.heads,
            "dim": config.dim,
            "context": config.context,
            "vocab": VOCAB,
            "prompt": ids[0].tolist(),
            "tokens": tokens,
        }
        done = subprocess.run(
            [python, __file__, "--hf-child", json.dumps(spec)],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(os.cpu_count())},
        )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-3:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def hf_child(spec: dict) -> None:
    """(In the torch Python.) Build GPT2LMHeadModel with the saved weights, check its logits, time generate."""
    import numpy as np
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    w = {k.replace("|", "/"): v for k, v in np.load(Path(spec["dir"]) / "w.npz").items()}

    def get(suffix: str) -> torch.Tensor:
        matches = [k for k in w if k.endswith(suffix)]
        assert len(matches) == 1, (suffix, matches)
        return torch.from_numpy(np.array(w[matches[0]]))

    hf = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=spec["vocab"],
            n_positions=spec["context"],
            n_embd=spec["dim"],
            n_layer=spec["layers"],
            n_head=spec["heads"],
            activation_function="gelu_new",
            layer_norm_epsilon=1e-5,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            tie_word_embeddings=True,
        )
    )
    state = {
        "transformer.wte.weight": get("token_embedding/embeddings"),
        "transformer.wpe.weight": get("position_embedding/embeddings"),
        "transformer.ln_f.weight": get("final_norm/gamma"),
        "transformer.ln_f.bias": get("final_norm/beta"),
    }
    for i in range(spec["layers"]):
        b, h = f"block_{i}/", f"transformer.h.{i}."
        for ours, theirs in (
            ("attention_norm/gamma", "ln_1.weight"),
            ("attention_norm/beta", "ln_1.bias"),
            ("mlp_norm/gamma", "ln_2.weight"),
            ("mlp_norm/beta", "ln_2.bias"),
            ("attention/qkv/kernel", "attn.c_attn.weight"),
            ("attention/qkv/bias", "attn.c_attn.bias"),
            ("attention/out/kernel", "attn.c_proj.weight"),
            ("attention/out/bias", "attn.c_proj.bias"),
            ("mlp_in/kernel", "mlp.c_fc.weight"),
            ("mlp_in/bias", "mlp.c_fc.bias"),
            ("mlp_out/kernel", "mlp.c_proj.weight"),
            ("mlp_out/bias", "mlp.c_proj.bias"),
        ):
            state[h + theirs] = get(b + ours)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all(k == "lm_head.weight" or ".attn.bias" in k or "masked_bias" in k for k in missing), (
        missing
    )
    hf.tie_weights()
    hf.eval()
    prompt = torch.tensor([spec["prompt"]])
    with torch.no_grad():
        difference = float(np.abs(hf(prompt).logits[0, -1].numpy() - np.load(Path(spec["dir"]) / "logits.npy")).max())
        settings = {
            "do_sample": True,
            "temperature": 0.8,
            "top_k": 40,
            "use_cache": True,
            "pad_token_id": 0,
            "eos_token_id": None,
        }
        hf.generate(prompt, max_new_tokens=4, min_new_tokens=4, **settings)  # warm-up
        times = []
        for seed in range(3):
            torch.manual_seed(seed)
            start = time.perf_counter()
            out = hf.generate(prompt, max_new_tokens=spec["tokens"], min_new_tokens=spec["tokens"], **settings)
            times.append(time.perf_counter() - start)
    new = out.shape[1] - prompt.shape[1]
    print(
        json.dumps(
            {
                "new_tokens": int(new),
                "seconds_best_of_3": round(min(times), 3),
                "tokens_per_sec": round(new / min(times), 2),
                "max_logit_difference": difference,
                "torch": torch.__version__,
                "transformers": __import__("transformers").__version__,
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


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
    parser.add_argument("--hf-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hf_child:
        hf_child(json.loads(args.hf_child))
        return
    if args.child:
        os.environ["KERAS_BACKEND"] = args.child[0]
        print(json.dumps(measure(args.child[1], args.tokens)))
        return
    results = {
        "benchmark": "generation tokens/s with and without the cache",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "device": "CPU",
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            "new_tokens": args.tokens,
            "prompt_tokens": PROMPT_TOKENS,
            "vocab": VOCAB,
            "temperature": 0.8,
            "top_k": 40,
            "seed": 0,
        },
        "results": {},
    }
    if args.out.exists():  # a run of some backends or models updates only their entries
        previous = json.loads(args.out.read_text(encoding="utf-8"))
        results["results"] = previous.get("results", {})
        results["earlier_runs"] = previous.get("earlier_runs", []) + [
            {k: previous.get(k) for k in ("command", "when", "machine")}
        ]
    for backend in args.backends:
        results["results"].setdefault(backend, {})["versions"] = versions(backend)
        for arch in args.archs:
            env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
            done = subprocess.run(
                [sys.executable, __file__, "--child", backend, arch, "--tokens", str(args.tokens)],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                results["results"][backend][arch] = {"error": done.stderr.strip().splitlines()[-1:]}
            else:
                results["results"][backend][arch] = json.loads(done.stdout.strip().splitlines()[-1])
            results["results"][backend][arch].update(
                when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), load_average_after=round(os.getloadavg()[0], 2)
            )
            print(backend, arch, json.dumps(results["results"][backend][arch]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
