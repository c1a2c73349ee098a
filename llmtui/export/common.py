"""What every export format shares: the result record, the output folder rules, the logits check and the
metadata file written beside each export."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmtui.errors import LlmtuiError

FORMATS = ("keras", "preset", "savedmodel", "hf", "gguf")
FORMAT_NAMES = {
    "keras": "a .keras file",
    "preset": "a keras-hub preset",
    "savedmodel": "a TensorFlow SavedModel",
    "hf": "a Hugging Face Transformers model",
    "gguf": "a GGUF file",
}
# The GGUF export's tensor types: full float32, half float16, or llama.cpp's 8-bit blocks (Q8_0).
GGUF_TYPES = ("f32", "f16", "q8_0")
METADATA_FILE = "llmtui_export.json"
# Largest |logit difference| accepted between an export and the run's model (float32 on both sides).
LOGITS_ATOL = 1e-4
# Under a mixed-precision policy (16-bit compute), the share of the largest |logit| accepted instead.
MIXED_PRECISION_RTOL = 0.05


class ExportError(LlmtuiError):
    """A run cannot be exported in the asked format, or the export did not reproduce the model."""


@dataclass
class ExportResult:
    """What one export wrote and how to load it."""

    format: str
    path: Path
    files: list[Path]
    load_code: str  # a short Python snippet that loads the export
    notes: list[str] = field(default_factory=list)
    max_logit_diff: float | None = None  # against the run's model on sample ids, after loading the export back


def weight_or_zeros(layer, name: str, size: int):
    """A layer's bias (Dense) or offset (LayerNorm `beta`) as a NumPy array, or float32 zeros when the model
    has none (`model.bias = false`): GPT-2's formats always hold them, and zeros compute the same."""
    import keras
    import numpy as np

    value = getattr(layer, name)
    return np.zeros(size, "float32") if value is None else keras.ops.convert_to_numpy(value)


def check_output_dir(out: Path, protected: list[Path], force: bool) -> None:
    """Refuse an output folder that holds something (unless `force`), or that is or holds a `protected` path
    (the run folder's own files: replacing the folder would delete them)."""
    out = out.resolve()
    for path in protected:
        path = path.resolve()
        if out == path or out in path.parents:
            raise ExportError(
                f"{out} holds {path}, which the run needs; exporting there could overwrite it",
                hint="pick another --out folder (the default is RUN/export/<format>)",
            )
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder", hint="pick another --out folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(
            f"{out} already exists and is not empty", hint="add --force to replace it, or give another --out folder"
        )


def fresh_output_dir(out: Path) -> Path:
    """An empty `out` (what was there is removed: `check_output_dir` allowed it)."""
    if out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


def sample_ids(vocab_size: int, context: int, batch: int = 2, seed: int = 0):
    """Fixed token ids (batch, min(context, 16)) int32 on which an export is compared with the model."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab_size, size=(batch, min(context, 16)), dtype=np.int64).astype("int32")


def logits_tolerance(model, reference) -> float:
    """The atol for comparing an export with `model`: tight in float32, loose where it computes in 16 bits
    (the same weights give logits that differ in the last bits of bfloat16 when ops run in another order)."""
    import numpy as np

    if model.compute_dtype == "float32":
        return LOGITS_ATOL
    return MIXED_PRECISION_RTOL * max(1.0, float(np.max(np.abs(reference))))


def max_difference(expected, got, what: str, atol: float = LOGITS_ATOL) -> float:
    """The largest |expected - got|; an `ExportError` when it exceeds `atol` (the export would be wrong)."""
    import numpy as np

    expected, got = np.asarray(expected, dtype="float32"), np.asarray(got, dtype="float32")
    if expected.shape != got.shape:
        raise ExportError(
            f"{what} gives logits of shape {got.shape}, the run's model {expected.shape}",
            hint="this is a bug in llmtui's export; the .keras format keeps the model as trained",
        )
    diff = float(np.max(np.abs(expected - got))) if expected.size else 0.0
    if not diff <= atol:
        raise ExportError(
            f"{what} gives logits up to {diff:.3g} away from the run's model (allowed {atol:g})",
            hint="this is a bug in llmtui's export; the .keras format keeps the model as trained",
        )
    return diff


def write_metadata(out: Path, fmt: str, run_root: Path, model_info: dict, result: ExportResult) -> Path:
    """`llmtui_export.json`: where the export came from and what it needs, so it explains itself later."""
    import llmtui

    path = out / METADATA_FILE
    data = {
        "format": fmt,
        "run": str(run_root.resolve()),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "llmtui": llmtui.__version__,
        **model_info,
        "files": [str(f.relative_to(out)) for f in result.files],
        "max_logit_diff": result.max_logit_diff,
        "load": result.load_code,
        "notes": result.notes,
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
