"""The `.keras` export: the model alone (no optimizer or training state), loadable with `safe_mode=True`."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from llmtui.export.common import LOGITS_ATOL, ExportError, ExportResult, max_difference

MODEL_FILE = "model.keras"

LOAD_CODE = """\
import keras
import llmtui.export.custom_objects  # registers llmtui's layers (pip install llmtui)
model = keras.saving.load_model("{path}", safe_mode=True)
logits = model(token_ids)  # (batch, time) int32 -> (batch, time, vocab) float32"""


def scan_config(config: dict) -> tuple[list[str], list[str]]:
    """(what `safe_mode=True` would refuse: Lambda layers and serialized lambdas, llmtui's registered classes)
    in a saved model's config."""
    unsafe, ours = [], set()

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                unsafe.append(f"Lambda layer {node.get('config', {}).get('name', '?')}")
            if "__lambda__" in (node.get("class_name"), node.get("registered_name")):
                unsafe.append(f"a Python lambda in {where}")
            if str(node.get("registered_name", "")).startswith("llmtui>"):
                ours.add(node["registered_name"])
            for key, value in node.items():
                walk(value, key)
        elif isinstance(node, list):
            for value in node:
                walk(value, where)

    walk(config, "the model")
    return unsafe, sorted(ours)


def export_keras(
    model, out: Path, tokenizer_json: Path, sample_ids, reference_logits, atol: float = LOGITS_ATOL
) -> ExportResult:
    """Write `out/model.keras` and `out/tokenizer.json`, then load the file back with `safe_mode=True`."""
    import keras

    path = out / MODEL_FILE
    # The run's final.keras also carries the optimizer and loss; a model loaded with compile=False has
    # neither, so saving it keeps only what inference needs (and no llmtui training classes).
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        unsafe, ours = scan_config(json.loads(archive.read("config.json")))
    if unsafe:
        path.unlink()
        raise ExportError(
            f"the model holds {', '.join(unsafe)}, which keras.saving.load_model(safe_mode=True) refuses",
            hint="use --format savedmodel, which stores the computation, not Python code",
        )
    shutil.copy2(tokenizer_json, out / "tokenizer.json")
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    diff = max_difference(
        reference_logits,
        keras.ops.convert_to_numpy(loaded(sample_ids, training=False)),
        "the .keras file loaded back",
        atol,
    )
    return ExportResult(
        format="keras",
        path=out,
        files=[path, out / "tokenizer.json"],
        load_code=LOAD_CODE.format(path=path),
        notes=[
            "safe_mode: no Lambda layers or Python lambdas in the model"
            + (
                f"; loading needs llmtui installed for {', '.join(ours)}"
                if ours
                else "; only Keras and keras-hub layers, though importing llmtui.export.custom_objects does no harm"
            ),
            "tokenizer.json is a Hugging Face tokenizers file: tokenizers.Tokenizer.from_file(...)",
        ],
        max_logit_diff=diff,
    )
