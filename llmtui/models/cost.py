"""What a model choice costs before anything is built: parameters, FLOPs per token, training memory.

Pure arithmetic on the recipe (no Keras import), so the CLI, the TUI and the pre-flight check can call it
freely. Parameter counts match the built models exactly (a test holds them to it); FLOPs follow the usual
6·N + attention accounting; memory is an estimate (weights, gradients, optimizer state, activations).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

from llmtui.config.recipe import ModelConfig, Recipe, TrainConfig

# Optimizer state per parameter, in float32 values.
_OPTIMIZER_SLOTS = {"adamw": 2, "adam": 2, "lion": 1, "muon": 2, "sgd": 1, "adagrad": 1, "rmsprop": 2}


@dataclass
class ModelCost:
    parameters: int
    embedding_parameters: int
    flops_per_token: float  # training (forward + backward)
    memory_bytes: float  # estimated peak training memory
    weights_bytes: float
    optimizer_bytes: float
    activation_bytes: float
    tokens_per_step: int

    def as_dict(self) -> dict:
        return asdict(self)


def _swiglu_width(dim: int, mlp_ratio: float) -> int:
    from llmtui.models.llama import swiglu_width

    return swiglu_width(dim, mlp_ratio)


def count_model_parameters(config: ModelConfig, vocab_size: int) -> tuple[int, int]:
    """(all trainable parameters, of which embedding parameters) of the model `build_model` makes."""
    d, layers = config.dim, config.layers
    embedding = vocab_size * d
    head = 0 if config.tie_embeddings else vocab_size * d
    if config.arch == "gpt":
        mlp = int(d * config.mlp_ratio)
        bias = 1 if config.bias else 0
        attention = d * 3 * d + d * d + bias * 4 * d
        block = attention + d * mlp + mlp * d + bias * (mlp + d) + (2 + 2 * bias) * d  # two LayerNorms
        positions = config.context * d
        body = layers * block + (1 + bias) * d  # final LayerNorm
        return embedding + positions + body + head, embedding + positions
    if config.arch == "llama":
        head_dim = d // config.heads
        kv = config.kv_heads or config.heads
        mlp = _swiglu_width(d, config.mlp_ratio)
        attention = d * (config.heads + 2 * kv) * head_dim + config.heads * head_dim * d
        block = attention + d * 2 * mlp + mlp * d + 2 * d  # two RMSNorm scales
        return embedding + layers * block + d + head, embedding
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[config.arch]
    per_layer = gates * (d * d + d * d + d)
    if config.arch == "gru":
        per_layer += gates * d  # Keras GRU (reset_after) has a second bias
    if config.output_bias:
        head += vocab_size
    return embedding + layers * per_layer + head, embedding


def weight_shapes(config: ModelConfig, vocab_size: int) -> dict[str, tuple[int, ...]]:
    """Every weight of a gpt or llama model by its Keras path, as `build_model` makes it (a test holds them to
    it): what model parallelism splits, known before anything is built."""
    d, mlp_ratio = config.dim, config.mlp_ratio
    shapes: dict[str, tuple[int, ...]] = {"token_embedding/embeddings": (vocab_size, d)}
    if not config.tie_embeddings:
        shapes["token_embedding/reverse_embeddings"] = (d, vocab_size)
    if config.arch == "gpt":
        shapes["position_embedding/embeddings"] = (config.context, d)
        mlp = int(d * mlp_ratio)
        for i in range(config.layers):
            b = f"block_{i}/"
            shapes.update(
                {
                    b + "attention_norm/gamma": (d,),
                    b + "attention/qkv/kernel": (d, 3 * d),
                    b + "attention/out/kernel": (d, d),
                    b + "mlp_norm/gamma": (d,),
                    b + "mlp_in/kernel": (d, mlp),
                    b + "mlp_out/kernel": (mlp, d),
                }
            )
            if config.bias:
                shapes.update(
                    {
                        b + "attention_norm/beta": (d,),
                        b + "attention/qkv/bias": (3 * d,),
                        b + "attention/out/bias": (d,),
                        b + "mlp_norm/beta": (d,),
                        b + "mlp_in/bias": (mlp,),
                        b + "mlp_out/bias": (d,),
                    }
                )
        shapes["final_norm/gamma"] = (d,)
        if config.bias:
            shapes["final_norm/beta"] = (d,)
    elif config.arch == "llama":
        head_dim, kv = d // config.heads, config.kv_heads or config.heads
        mlp = _swiglu_width(d, mlp_ratio)
        for i in range(config.layers):
            b = f"block_{i}/"
            shapes.update(
                {
                    b + "attention_norm/scale": (d,),
                    b + "attention/qkv/kernel": (d, (config.heads + 2 * kv) * head_dim),
                    b + "attention/out/kernel": (config.heads * head_dim, d),
                    b + "mlp_norm/scale": (d,),
                    b + "mlp_in/kernel": (d, 2 * mlp),
                    b + "mlp_out/kernel": (mlp, d),
                }
            )
        shapes["final_norm/scale"] = (d,)
    else:
        raise ValueError(f"no weight layout for model.arch = {config.arch}")
    return shapes


@dataclass
class DeviceShare:
    """What one device holds under model parallelism on a (data, model) mesh."""

    data: int
    model: int
    parameters: int  # parameter values on one device
    weights_bytes: float
    optimizer_bytes: float  # gradients + optimizer slots
    activation_bytes: float
    memory_bytes: float


def per_device(model: ModelConfig, train: TrainConfig, vocab_size: int, data: int, shards: int) -> DeviceShare:
    """Memory per device when the weights named in MODEL_PARALLEL_RULES are split `shards` ways and each batch
    `data` ways. Gradients and optimizer slots follow their weights' layouts; activations are taken as split by
    the batch only (the attention and MLP activations split by the model axis too make this an upper bound)."""
    from llmtui.training.distribute import sharded_axis

    cost = estimate_cost(model, train, vocab_size)
    values = sum(
        math.prod(shape) // (shards if sharded_axis(path) is not None else 1)
        for path, shape in weight_shapes(model, vocab_size).items()
    )
    weights = 4.0 * values
    optimizer = 4.0 * values * (1 + _OPTIMIZER_SLOTS.get(train.optimizer, 2))
    activations = cost.activation_bytes / data
    return DeviceShare(data, shards, values, weights, optimizer, activations, weights + optimizer + activations)


def estimate_cost(model: ModelConfig, train: TrainConfig, vocab_size: int) -> ModelCost:
    params, embed = count_model_parameters(model, vocab_size)
    d, layers, context = model.dim, model.layers, model.context
    non_embedding = params - embed
    output_head = vocab_size * d  # the logits matmul, tied or not
    flops = 6.0 * (non_embedding + output_head)
    if model.arch in ("gpt", "llama"):
        flops += 12.0 * layers * d * context  # attention scores and weighted sums, forward + backward
    tokens = train.batch_size * context
    value_bytes = 2 if train.precision.startswith("mixed") else 4
    weights = 4.0 * params
    grads = 4.0 * params
    optimizer = 4.0 * params * _OPTIMIZER_SLOTS.get(train.optimizer, 2)
    if model.arch in ("gpt", "llama"):
        # Per layer and token: ~34·d values kept for the backward pass, plus the (heads × T) attention matrix.
        per_layer = tokens * (34 * d + 5 * model.heads * context) * value_bytes / 2
    else:
        per_layer = tokens * 12 * d * value_bytes
    logits = tokens * vocab_size * 4 * 3  # logits, softmax and its gradient in float32
    activations = layers * per_layer + logits
    total = weights + grads + optimizer + activations
    return ModelCost(params, embed, flops, total, weights, optimizer, activations, tokens)


def finetune_cost(model: ModelConfig, train: TrainConfig, vocab_size: int, method: str) -> ModelCost:
    """`estimate_cost` for fine-tuning with `method`: LoRA keeps gradients and optimizer state for its small
    adapters only (counted as none here), so only the weights and activations remain."""
    import dataclasses

    cost = estimate_cost(model, train, vocab_size)
    if method != "lora":
        return cost
    return dataclasses.replace(cost, optimizer_bytes=0.0, memory_bytes=cost.weights_bytes + cost.activation_bytes)


def available_memory_bytes() -> float:
    """Memory this process may use: MemAvailable on Linux, else physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        return float("inf")


def preflight_problem(cost: ModelCost, train: TrainConfig, available: float | None = None) -> str | None:
    """A message when the estimated memory exceeds what is available, with a way out; else None."""
    limit = train.max_memory_gb * 1e9 if train.max_memory_gb else (available or available_memory_bytes())
    if cost.memory_bytes <= limit:
        return None
    fixed = cost.memory_bytes - cost.activation_bytes
    if fixed > limit:
        return (
            f"the model needs about {fixed / 1e9:.1f} GB for weights, gradients and optimizer state alone, "
            f"more than the {limit / 1e9:.1f} GB available: choose a smaller model (model.dim, model.layers)"
        )
    fits = max(1, int((limit - fixed) / cost.activation_bytes * train.batch_size))
    share = max(d for d in range(1, min(fits, train.batch_size) + 1) if train.batch_size % d == 0)
    accum = train.batch_size // share
    return (
        f"training needs about {cost.memory_bytes / 1e9:.1f} GB, more than the {limit / 1e9:.1f} GB available; "
        f"try train.batch_size={share} with train.grad_accum_steps={accum * train.grad_accum_steps} "
        f"(the same effective batch)"
    )


def peak_flops(train: TrainConfig, device_kind: str = "") -> tuple[float, str]:
    """Peak FLOP/s for the MFU estimate, and where the figure comes from."""
    if train.peak_tflops:
        return train.peak_tflops * 1e12, "train.peak_tflops"
    dense = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "V100": 125e12}
    for name, value in dense.items():  # bf16 dense tensor-core peaks
        if name in device_kind:
            return value, f"{name} bf16 dense peak"
    cores = os.cpu_count() or 1
    ghz = _cpu_ghz()
    per_cycle, unit = cpu_flops_per_cycle(cpu_flags(), train.precision == "mixed_bfloat16")
    return (
        cores * ghz * 1e9 * per_cycle,
        f"CPU estimate: {cores} cores x {ghz:.1f} GHz x {per_cycle} FLOP/cycle ({unit})",
    )


def cpu_flops_per_cycle(flags: set[str], bfloat16: bool) -> tuple[int, str]:
    """Peak FLOPs per cycle and core from the CPU's instruction sets (two vector FMA units per core)."""
    if bfloat16 and "amx_bf16" in flags:
        return 1024, "AMX-BF16 tiles"  # one 16x32 by 32x16 bf16 tile product (16,384 FLOPs) per 16 cycles
    if bfloat16 and "avx512_bf16" in flags:
        return 128, "AVX-512 BF16"  # 2 x 16 lanes x a pair of bf16 products summed (4 FLOPs)
    if "avx512f" in flags:
        return 64, "AVX-512 float32"  # 2 FMAs x 16 lanes x 2 FLOPs
    if "avx2" in flags or "fma" in flags:
        return 32, "AVX2 float32"  # 2 FMAs x 8 lanes x 2 FLOPs
    return 8, "SSE float32"


def cpu_flags() -> set[str]:
    """The instruction-set flags of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_ghz() -> float:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("cpu MHz"):
                    return float(line.split(":")[1]) / 1000
    except (OSError, ValueError):
        pass
    return 2.5


def vocab_size_for(recipe: Recipe, base_dir: str | os.PathLike) -> tuple[int, str]:
    """The vocabulary size to cost a recipe's model with, and where it comes from: the run's trained
    tokenizer when its tokenizer stage has run, else what the recipe implies."""
    from llmtui.runfolder import RunFolder

    run = RunFolder.of_recipe(recipe, base_dir)
    if run.token_meta_path.exists():
        return run.token_meta().vocab_size, f"trained ({run.token_meta_path})"
    kind = recipe.tokenizer.kind
    if kind == "byte":
        return 260, "byte: 256 bytes + 4 special tokens"
    if kind == "char":
        return 256, "char: estimated (the corpus decides; train the tokenizer for the exact figure)"
    return recipe.tokenizer.vocab_size, f"{kind}: tokenizer.vocab_size"
