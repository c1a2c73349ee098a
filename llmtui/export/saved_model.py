"""The TensorFlow SavedModel export for serving: `model.export(..., format="tf_saved_model")`.

Its `serve` endpoint (and the `serving_default` signature TensorFlow Serving calls) maps token ids
(batch, time) int32 to logits (batch, time, vocab) float32; time is free up to the model's context.
On the JAX backend Keras converts the model with jax2tf, which needs TensorFlow installed as well.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

from llmtui.export.common import LOGITS_ATOL, ExportError, ExportResult, max_difference

LOAD_CODE = """\
import tensorflow as tf
model = tf.saved_model.load("{path}")
logits = model.serve(tf.constant(token_ids, tf.int32))  # (batch, time) -> (batch, time, vocab)"""


def export_saved_model(
    model, out: Path, tokenizer_json: Path, context: int, sample_ids, reference_logits, atol: float = LOGITS_ATOL
) -> ExportResult:
    """Write a SavedModel into `out` (with `tokenizer.json` beside `saved_model.pb`) and load it back.

    `context` bounds the time axis: on JAX, jax2tf must be told so that learned positions can be sliced.
    """
    import keras

    if importlib.util.find_spec("tensorflow") is None:
        raise ExportError(
            f"a TensorFlow SavedModel needs TensorFlow, which is not installed (the model runs on "
            f"{keras.backend.backend()})",
            hint="pip install tensorflow, then export again",
        )
    import tensorflow as tf

    # Importing TensorFlow here (JAX backend) resets absl's level; its warning about custom gradients on
    # loading is about training the loaded graph, which serving never does.
    logging.getLogger("absl").setLevel(logging.ERROR)
    signature = [keras.InputSpec(shape=(None, None), dtype="int32", name="token_ids")]
    options = {}
    if keras.backend.backend() == "jax":
        # Keras names the free time axis "a" (batch is "batch"); bounding it lets jax2tf slice learned
        # positions. Serving needs no gradients, and tracing them fails under such constraints.
        options["jax2tf_kwargs"] = {"polymorphic_constraints": (f"a <= {context}",), "with_gradient": False}
    try:
        model.export(str(out), format="tf_saved_model", verbose=False, input_signature=signature, **options)
    except Exception as exc:  # backend conversion limits (e.g. jax2tf, torch) surface here
        raise ExportError(
            f"Keras could not export this model as a SavedModel on the {keras.backend.backend()} "
            f"backend: {type(exc).__name__}: {exc}",
            hint="export on TensorFlow: KERAS_BACKEND=tensorflow llmtui export RUN --format savedmodel",
        ) from None
    shutil.copy2(tokenizer_json, out / "tokenizer.json")
    loaded = tf.saved_model.load(str(out))
    diff = max_difference(
        reference_logits, loaded.serve(tf.constant(sample_ids, tf.int32)).numpy(), "the SavedModel loaded back", atol
    )
    files = sorted(p for p in out.rglob("*") if p.is_file())
    return ExportResult(
        format="savedmodel",
        path=out,
        files=files,
        load_code=LOAD_CODE.format(path=out),
        notes=[
            "serving signature: token_ids (batch, time) int32 → logits (batch, time, vocab) float32 "
            "(endpoint `serve`, signature `serving_default`)",
            "tokenizer.json beside saved_model.pb is the run's Hugging Face tokenizer",
        ],
        max_logit_diff=diff,
    )
