"""Trains a tiny model a few steps on fixed batches under the backend in KERAS_BACKEND; prints the losses.

Used by test_training.py to compare backends: the first run saves its initial weights, the other loads
them, so both start from the same point and see the same data.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from llmtui.backend import configure_backend  # noqa: E402

configure_backend(os.environ.get("KERAS_BACKEND", "tensorflow"))

from llmtui.config import recipe_from_dict  # noqa: E402
from llmtui.models import build_model  # noqa: E402
from llmtui.training.trainer import compile_model  # noqa: E402

arch, weights_path = sys.argv[1], sys.argv[2]
recipe = recipe_from_dict(
    {
        "model": {
            "arch": arch,
            "layers": 2,
            "dim": 32,
            "heads": 4,
            "kv_heads": 2 if arch == "llama" else 0,
            "context": 16,
        },
        "train": {"optimizer": "adamw", "lr": 1e-2, "warmup_steps": 0, "schedule": "constant", "jit_compile": True},
    }
)
model = build_model(recipe.model, 40, seed=0)
compile_model(model, recipe.train)
if os.path.exists(weights_path):
    with np.load(weights_path) as saved:
        for i, variable in enumerate(model.trainable_variables):
            variable.assign(saved[f"v{i}"])
else:
    np.savez(weights_path, **{f"v{i}": np.asarray(v) for i, v in enumerate(model.trainable_variables)})
rng = np.random.default_rng(0)
losses = []
for _ in range(6):
    x = ((rng.integers(0, 40, size=(4, 1)) + np.arange(17)) % 40).astype("int32")  # learnable: next = previous + 1
    losses.append(float(model.train_on_batch(x[:, :-1], x[:, 1:], return_dict=True)["loss"]))
print(json.dumps(losses))
