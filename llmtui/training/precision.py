"""How a training step runs: its precision and its compiler, chosen per backend, device and model size.

`train.precision = "auto"` picks the faster of float32 and bfloat16 for the device and the model:
  - GPUs with bfloat16 tensor cores (Ampere and later): `mixed_bfloat16`;
  - CPUs: `mixed_bfloat16` only on TensorFlow, on a CPU with bfloat16 matrix instructions (AMX-BF16, or
    AVX-512 BF16), and only for transformers whose matrix products are big enough to outweigh the casts the
    mixed policy adds; small models are overhead-bound and stay float32;
  - otherwise float32.

The compiler: XLA (`jit_compile=True`) everywhere, except bfloat16 on a TensorFlow CPU, which runs as a
TensorFlow graph whose matrix products are oneDNN's: XLA's CPU backend does not use AMX or AVX-512 BF16.
`train.jit_compile = false` turns XLA off everywhere. The figures behind these choices: bench/README.md,
"Precision and compiler on the CPU".
"""

from __future__ import annotations

from dataclasses import dataclass

from llmtui.config.recipe import ModelConfig, TrainConfig
from llmtui.models.cost import cpu_flags

# GPUs whose tensor cores do bfloat16 (compute capability 8.0 and later), matched in the device's name.
_BF16_GPUS = (
    "H200",
    "H100",
    "H800",
    "GH200",
    "B200",
    "B100",
    "GB200",
    "A100",
    "A800",
    "A40",
    "A30",
    "A10",
    "A6000",
    "A5000",
    "A4000",
    "L40",
    "L4",
    "RTX 30",
    "RTX 40",
    "RTX 50",
)

# A model pays for bfloat16 on a CPU when its widest products are at least this wide: the mixed policy's casts
# and the oneDNN graph's per-op dispatch are paid per op, the savings per multiply-add.
_CPU_BF16_MIN_DIM = 384


@dataclass(frozen=True)
class ExecutionPlan:
    precision: str  # a Keras dtype policy: float32, mixed_bfloat16 or mixed_float16
    jit_compile: bool
    reason: str  # why this precision, for the log

    @property
    def compiler(self) -> str:
        """The log line's name of how the step runs."""
        return "compiled with XLA" if self.jit_compile else "TensorFlow graph, oneDNN kernels (no XLA)"

    def train_config(self, config: TrainConfig) -> TrainConfig:
        return config.model_copy(update={"precision": self.precision, "jit_compile": self.jit_compile})


def cpu_bf16_kind(flags: set[str] | None = None) -> str | None:
    """ "AMX-BF16" or "AVX-512 BF16" when the CPU has bfloat16 matrix instructions, else None."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "AMX-BF16"
    if "avx512_bf16" in flags:
        return "AVX-512 BF16"
    return None


def plan_execution(
    train: TrainConfig, model: ModelConfig, backend: str, device_kind: str, flags: set[str] | None = None
) -> ExecutionPlan:
    """The precision and compiler a training run uses (see the module's docstring)."""
    on_cpu = device_kind == "cpu"
    precision: str = train.precision
    reason = "train.precision"
    if precision == "auto":
        precision, reason = _auto_precision(model, backend, device_kind, flags)
    jit = train.jit_compile
    if jit and on_cpu and backend == "tensorflow" and precision == "mixed_bfloat16" and cpu_bf16_kind(flags):
        jit = False  # oneDNN's bf16 kernels; XLA's CPU backend computes bf16 no faster than float32
    return ExecutionPlan(precision, jit, reason)


def _auto_precision(model: ModelConfig, backend: str, device_kind: str, flags: set[str] | None) -> tuple[str, str]:
    if device_kind != "cpu":
        if any(name in device_kind for name in _BF16_GPUS):
            return "mixed_bfloat16", f"auto: {device_kind} has bfloat16 tensor cores"
        return "float32", f"auto: no bfloat16 tensor cores known for {device_kind}"
    kind = cpu_bf16_kind(flags)
    if kind is None:
        return "float32", "auto: this CPU has no bfloat16 matrix instructions"
    if backend != "tensorflow":
        return "float32", f"auto: the CPU has {kind}, but only TensorFlow's oneDNN kernels use it (backend {backend})"
    if model.arch not in ("gpt", "llama") or model.dim < _CPU_BF16_MIN_DIM:
        return "float32", (
            f"auto: {kind} CPU, but a {model.dim}-wide {model.arch} is too small for bfloat16 to pay "
            f"(from {_CPU_BF16_MIN_DIM} wide, transformers)"
        )
    return "mixed_bfloat16", f"auto: {kind} CPU and a {model.dim}-wide {model.arch}"
