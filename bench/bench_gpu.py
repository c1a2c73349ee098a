"""GPT-2 small on one GPU: our engine's training step time and model FLOPs utilisation (JAX backend, bf16).

The model is trained by the engine's own loop (`llmtui.training.trainer.train`, as `llmtui run` calls it):
GPT-2 small, 12 layers, 12 heads, 768 wide, context 1024, the GPT-2 vocabulary padded to 50304 (a multiple
of 64, as nanoGPT does), `mixed_bfloat16`, AdamW with weight decay and global-norm clipping, no dropout.
`--arch llama` trains the same size with the modern block instead (rotary positions, RMSNorm, SwiGLU, 4
key/value heads). Tokens/s is the loop's own figure per logging window (the first two, with compilation, left out; the
median of the rest). The tokens are a seeded random stream: a step's cost does not depend on their values.

MFU = FLOPs per token (`estimate_cost`: 6 x parameters in the matrix products, the tied output head
included, plus the attention scores and weighted sums) x tokens/s / the card's bf16 dense peak
(`peak_flops`: 989 TFLOP/s for an H100 or H200). Measured in the same run: one large bf16 matrix product
through JAX (the rate this card reaches on matrix work; MFU against it is reported too), and Keras' own
`train_on_batch` on the same compiled step (the loss read every step), the path the engine used before.

`--variants` runs named variants one process each (an XLA flag set changes the whole process) and writes
them into one file: the engine as it is, the loss Keras' own sparse cross-entropy computes (the engine's
before), and XLA's GEMM options (`VARIANTS` below).

Usage, on a GPU machine with JAX:
    KERAS_BACKEND=jax python bench/bench_gpu.py [--arch gpt|llama] [--batches 16,32] [--float16-batch 16] [--windows 4]
        [--out FILE] [--profile-dir DIR] [--loss engine|keras] [--no-bias]
        [--pallas-layer-norm] [--pallas-loss]     (fused kernels: bench/gpu_kernels.py)
    KERAS_BACKEND=jax python bench/bench_gpu.py --variants engine,keras-loss,no-triton-gemm [--batches 16]
    KERAS_BACKEND=jax python bench/bench_gpu.py --smoke     # a tiny model on the CPU: checks the script only
Results are written after each batch size, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's llmtui, installed or not

GPT2_SMALL = {"arch": "gpt", "layers": 12, "heads": 12, "dim": 768, "context": 1024, "vocab": 50304}
SMOKE = {"arch": "gpt", "layers": 2, "heads": 2, "dim": 64, "context": 64, "vocab": 512}

# name: (loss, XLA_FLAGS, extra arguments)
VARIANTS = {
    "engine": ("engine", "", []),
    "keras-loss": ("keras", "", []),
    "no-triton-gemm": ("engine", "--xla_gpu_enable_triton_gemm=false", []),
    "cublaslt": ("engine", "--xla_gpu_enable_cublaslt=true", []),
    "no-triton-gemm-cublaslt": ("engine", "--xla_gpu_enable_triton_gemm=false --xla_gpu_enable_cublaslt=true", []),
    "llama": ("engine", "", ["--arch", "llama"]),
    "log-every-50": ("engine", "", ["--log-every", "50", "--windows", "2"]),
    "batch-32": ("engine", "", ["--batches", "32"]),
    # GPT-2 small as nanoGPT trains it (its train.py default bias = False): no bias gradients, no LayerNorm offsets.
    "no-bias": ("engine", "", ["--no-bias"]),
    "cudnn-layer-norm": ("engine", "--xla_gpu_enable_cudnn_layer_norm=true", []),
    "no-bias-cudnn-layer-norm": ("engine", "--xla_gpu_enable_cudnn_layer_norm=true", ["--no-bias"]),
    "pallas-layer-norm": ("engine", "", ["--pallas-layer-norm"]),
    "no-bias-pallas-layer-norm": ("engine", "", ["--no-bias", "--pallas-layer-norm"]),
    "no-bias-pallas-loss": ("engine", "", ["--no-bias", "--pallas-loss"]),
    "no-bias-pallas-both": ("engine", "", ["--no-bias", "--pallas-layer-norm", "--pallas-loss"]),
}


def keras_loss_task(inputs, context: int, config):
    """The engine's next-token task with the loss it had before, Keras' sparse categorical cross-entropy (a
    float32 log-softmax of the whole logits tensor times a one-hot): the A/B of `--loss keras`."""
    import keras
    from keras import ops

    from llmtui.training.trainer import LanguageModelingTask

    class KerasSparseCrossEntropy(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return ops.sparse_categorical_crossentropy(y_true, ops.cast(y_pred, "float32"), from_logits=True)

    class KerasLossTask(LanguageModelingTask):
        def loss(self, config):
            return KerasSparseCrossEntropy()

    return KerasLossTask(inputs, context, config, 0)


def matmul_rate(n: int, repeats: int) -> float:
    """FLOP/s of an n x n x n bf16 matrix product through JAX (median of `repeats`, random inputs)."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.key(0), 6)
    # Three input pairs in turn, so no call reads what the previous one left in cache.
    pairs = [
        (jax.random.normal(keys[2 * i], (n, n), jnp.bfloat16), jax.random.normal(keys[2 * i + 1], (n, n), jnp.bfloat16))
        for i in range(3)
    ]
    product = jax.jit(lambda a, b: a @ b)
    for a, b in pairs:
        product(a, b).block_until_ready()
    times = []
    for i in range(repeats):
        a, b = pairs[i % 3]
        started = time.perf_counter()
        product(a, b).block_until_ready()
        times.append(time.perf_counter() - started)
    return 2.0 * n**3 / statistics.median(times)


def fused_attention_used(batch: int, cfg: dict) -> bool | None:
    """Whether Keras' JAX backend takes the fused (cuDNN) attention path for these shapes; None if unknown."""
    try:
        import jax.numpy as jnp
        from keras.src.backend.jax.nn import _can_use_flash_attention

        head_dim = cfg["dim"] // cfg["heads"]
        q = jnp.zeros((batch, cfg["context"], cfg["heads"], head_dim), jnp.bfloat16)
        return bool(_can_use_flash_attention(q, q, q, None))
    except Exception:  # a private helper: its absence only means we cannot tell
        return None


def device_peak_bytes() -> int | None:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def measure(
    cfg: dict,
    batch: int,
    windows: int,
    log_every: int,
    profile_dir: Path | None = None,
    precision: str = "mixed_bfloat16",
    loss: str = "engine",
) -> dict:
    """Our engine's training loop (`train`) for GPT config `cfg` at `batch` sequences, then Keras' own
    `train_on_batch` on the same compiled step: step times, tokens/s, FLOPs."""
    import tempfile

    import keras
    import numpy as np

    from llmtui.config import recipe_from_dict
    from llmtui.events import Metrics
    from llmtui.models import build_model
    from llmtui.models.cost import estimate_cost
    from llmtui.runfolder import RunFolder
    from llmtui.training.trainer import TrainInputs, train

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_dtype_policy(precision)
    steps = (windows + 2) * log_every  # the first two windows (compilation, settling) are not timed
    recipe = recipe_from_dict(
        {
            "model": {
                "arch": cfg["arch"],
                "layers": cfg["layers"],
                "heads": cfg["heads"],
                "dim": cfg["dim"],
                "kv_heads": cfg.get("kv_heads", 0),
                "bias": cfg.get("bias", True),
                "context": cfg["context"],
                "dropout": 0.0,
            },
            "train": {
                "optimizer": "adamw",
                "lr": 6e-4,
                "steps": steps,
                "warmup_steps": 10,
                "schedule": "cosine",
                "weight_decay": 0.1,
                "grad_clip": 1.0,
                "batch_size": batch,
                "precision": precision,
                "log_every": log_every,
                "eval_every": steps,
                "eval_batches": 2,
                "checkpoint_every": steps,
            },
        }
    )
    vocab = cfg["vocab"]
    model = build_model(recipe.model, vocab, seed=0)
    cost = estimate_cost(recipe.model, recipe.train, vocab)
    tokens = np.random.default_rng(0).integers(0, vocab, size=4_000_000, dtype=np.int32)
    inputs = TrainInputs(tokens[:3_800_000], tokens[3_800_000:], 1.0, vocab)
    task = inputs if loss == "engine" else keras_loss_task(inputs, cfg["context"], recipe.train)
    events = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        summary = train(
            model,
            task,
            recipe.train,
            recipe.model,
            0,
            RunFolder(folder),
            "bench",
            events.append,
            flops_per_token=cost.flops_per_token,
        )
    total = time.perf_counter() - started
    rates = [e.values["tokens_per_sec"] for e in events if isinstance(e, Metrics) and e.split == "train"][2:]
    if not rates or not math.isfinite(summary["last_loss"]):
        raise RuntimeError(f"no timed windows or a non-finite loss at batch {batch}: {summary}")
    engine_rate = statistics.median(rates)
    per_step = batch * cfg["context"]

    # Keras' `train_on_batch` on the same model and compiled step, the loss read every step.
    windows_of_tokens = tokens[: batch * (cfg["context"] + 1)].reshape(batch, -1)
    x, y = windows_of_tokens[:, :-1], windows_of_tokens[:, 1:]
    times = []
    for i in range(3 + windows * log_every // 2):
        began = time.perf_counter()
        float(model.train_on_batch(x, y, return_dict=True)["loss"])
        if i >= 3:
            times.append(time.perf_counter() - began)
    keras_rate = per_step / statistics.median(times)
    if profile_dir is not None:  # a device trace of the engine's steps, for reading where the time goes
        import jax

        from llmtui.training.step import TrainStep

        step = TrainStep(model)
        with jax.profiler.trace(str(profile_dir)):
            losses = [step(x, y) for _ in range(5)]
            float(losses[-1])
        step.sync()
    return {
        "batch": batch,
        "precision": precision,
        "loss": loss,
        "tokens_per_step": per_step,
        "parameters": cost.parameters,
        "flops_per_token": cost.flops_per_token,
        "steps": steps,
        "timed_windows": len(rates),
        "train_call_s": round(total, 1),
        "step_ms": per_step / engine_rate * 1e3,
        "tokens_per_s": engine_rate,
        "tokens_per_s_windows": rates,
        "achieved_tflops": cost.flops_per_token * engine_rate / 1e12,
        "keras_train_on_batch_step_ms": per_step / keras_rate * 1e3,
        "keras_train_on_batch_tokens_per_s": keras_rate,
        "loss_first": summary["first_loss"],
        "loss_last": summary["last_loss"],
        "val_loss": summary["val_loss"],
        "peak_device_bytes": device_peak_bytes(),
        "fused_attention": fused_attention_used(batch, cfg),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="16,32", help="sequences per step to measure, comma-separated")
    parser.add_argument(
        "--arch",
        choices=["gpt", "llama"],
        default="gpt",
        help="gpt: GPT-2 small; llama: the same size with the modern block",
    )
    parser.add_argument(
        "--float16-batch",
        type=int,
        default=0,
        help="also train this batch size in mixed_float16 (loss scaling) to check it on the GPU",
    )
    parser.add_argument(
        "--no-bias", action="store_true", help="gpt without biases or LayerNorm offsets (model.bias = false)"
    )
    parser.add_argument(
        "--pallas-layer-norm", action="store_true", help="LayerNorm through JAX's fused Pallas kernels (a measurement)"
    )
    parser.add_argument(
        "--pallas-loss", action="store_true", help="the next-token loss through fused Pallas kernels (a measurement)"
    )
    parser.add_argument("--windows", type=int, default=4, help="timed logging windows per batch size")
    parser.add_argument("--log-every", type=int, default=10, help="steps per logging window")
    parser.add_argument("--profile-dir", type=Path, help="write a JAX profiler trace of the first batch size here")
    parser.add_argument("--smoke", action="store_true", help="tiny model, small matrices: check the script on CPU")
    parser.add_argument("--out", type=Path, help="default: bench/results/gpu.json (gpt) or gpu_llama.json (llama)")
    parser.add_argument(
        "--loss", choices=["engine", "keras"], default="engine", help="keras: Keras' sparse cross-entropy (before)"
    )
    parser.add_argument(
        "--variants", help=f"run these variants, one process each, into one file: {', '.join(VARIANTS)}"
    )
    parser.add_argument("--variant-timeout", type=float, default=240, help="seconds allowed to each variant")
    args = parser.parse_args(argv)

    args.out = args.out or ROOT / "bench" / "results" / ("gpu.json" if args.arch == "gpt" else "gpu_llama.json")
    if args.variants:
        run_variants(args, argv or sys.argv[1:])
        return
    os.environ.setdefault("KERAS_BACKEND", "jax")
    if os.environ["KERAS_BACKEND"] != "jax":
        raise SystemExit("this benchmark measures the JAX backend: run it with KERAS_BACKEND=jax")
    from llmtui.backend import configure_backend

    configure_backend("jax")
    import jax
    import keras

    from llmtui.config import recipe_from_dict
    from llmtui.models.cost import peak_flops

    cfg = dict(SMOKE if args.smoke else GPT2_SMALL)
    if args.arch == "llama":  # the same size as a Llama-style decoder: RoPE, RMSNorm, SwiGLU, 4 key/value heads
        cfg.update(arch="llama", kv_heads=2 if args.smoke else 4)
    cfg["bias"] = not args.no_bias
    if args.pallas_layer_norm or args.pallas_loss:
        import gpu_kernels  # bench/, beside this file

        if args.pallas_layer_norm:
            gpu_kernels.use_pallas_layer_norm()
            cfg["layer_norm"] = "pallas"
        if args.pallas_loss:
            gpu_kernels.use_pallas_loss()
            cfg["loss_kernels"] = "pallas"
    device = jax.devices()[0]
    peak, peak_source = peak_flops(recipe_from_dict({}).train, device.device_kind)
    ceiling = matmul_rate(512 if args.smoke else 8192, 5 if args.smoke else 30)
    result = {
        "benchmark": f"{cfg['arch']} (GPT-2 small size) training step on one device",
        "config": cfg,
        "device": device.device_kind,
        "platform": device.platform,
        "jax": jax.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "peak_flops": peak,
        "peak_source": peak_source,
        "measured_bf16_matmul_flops": ceiling,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "runs": [],
    }
    print(
        f"{device.device_kind}: bf16 matmul {ceiling / 1e12:.0f} TFLOP/s measured, peak {peak / 1e12:.0f} "
        f"({peak_source})",
        flush=True,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plan = [(int(b), "mixed_bfloat16") for b in args.batches.split(",")]
    if args.float16_batch:
        plan.append((args.float16_batch, "mixed_float16"))
    for batch, precision in plan:
        try:
            run = measure(
                cfg,
                batch,
                2 if args.smoke else args.windows,
                3 if args.smoke else args.log_every,
                args.profile_dir if not result["runs"] else None,
                precision,
                args.loss,
            )
        except Exception as exc:  # e.g. out of device memory at the larger batch: keep what was measured
            run = {"batch": batch, "precision": precision, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        else:
            run["mfu"] = run["achieved_tflops"] * 1e12 / peak
            run["mfu_of_measured_matmul"] = run["achieved_tflops"] * 1e12 / ceiling
        result["runs"].append(run)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(run), flush=True)
        with contextlib.suppress(Exception):
            jax.clear_caches()

    print(
        f"\n{'precision':<15} {'batch':>5} {'step ms':>8} {'tokens/s':>10} {'TFLOP/s':>8} {'MFU':>6} "
        f"{'of matmul':>9} {'keras ms':>8} {'train() s':>9} {'peak GB':>7}"
    )
    for r in result["runs"]:
        if "error" in r:
            print(f"{r['precision']:<15} {r['batch']:>5} error: {r['error']}")
            continue
        peak_gb = (r["peak_device_bytes"] or 0) / 1e9
        print(
            f"{r['precision']:<15} {r['batch']:>5} {r['step_ms']:>8.1f} {r['tokens_per_s']:>10,.0f} "
            f"{r['achieved_tflops']:>8.1f} {r['mfu']:>6.1%} {r['mfu_of_measured_matmul']:>9.1%} "
            f"{r['keras_train_on_batch_step_ms']:>8.1f} {r['train_call_s']:>9.1f} {peak_gb:>7.1f}"
        )


def run_variants(args, argv: list[str]) -> None:
    """Each named variant in its own process (XLA reads its flags once per process), all into `args.out`."""
    import subprocess
    import tempfile

    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    passed, skip = [], False  # the parent's arguments, less its own
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--variants", "--out", "--variant-timeout", "--profile-dir"):
            skip = True
        elif not arg.startswith(("--variants=", "--out=", "--variant-timeout=", "--profile-dir=")):
            passed.append(arg)
    combined: dict = {"command": "bench/bench_gpu.py " + " ".join(argv), "variants": {}}
    for name in names:
        loss, flags, extra = VARIANTS[name]
        env = {**os.environ, "XLA_FLAGS": " ".join(f for f in (os.environ.get("XLA_FLAGS", ""), flags) if f)}
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "variant.json"
            command = [sys.executable, __file__, *passed, *extra, "--loss", loss, "--out", str(out)]
            if args.profile_dir and name == names[0]:  # its device trace and its optimised HLO, to read
                command += ["--profile-dir", str(args.profile_dir)]
                env["XLA_FLAGS"] += f" --xla_dump_to={args.profile_dir / 'hlo'} --xla_dump_hlo_as_text"
            print(f"== {name}: XLA_FLAGS={env['XLA_FLAGS']!r} {' '.join(command[2:])}", flush=True)
            try:
                subprocess.run(command, env=env, timeout=args.variant_timeout, check=False)
            except subprocess.TimeoutExpired:
                print(f"== {name}: stopped after {args.variant_timeout:.0f} s", flush=True)
            combined["variants"][name] = json.loads(out.read_text()) if out.exists() else {"error": "no result"}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(combined, indent=2) + "\n")
    print(f"\n{'variant':<26} {'batch':>5} {'step ms':>8} {'MFU':>6} {'matmul TFLOP/s':>14}")
    for name, result in combined["variants"].items():
        for r in result.get("runs", [{"batch": "-", "error": result.get("error")}]):
            if "error" in r:
                print(f"{name:<26} {r['batch']:>5} error: {str(r['error'])[:80]}")
            else:
                rate = result["measured_bf16_matmul_flops"] / 1e12
                print(f"{name:<26} {r['batch']:>5} {r['step_ms']:>8.1f} {r['mfu']:>6.1%} {rate:>14.0f}")


if __name__ == "__main__":
    main()
