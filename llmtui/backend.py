"""Choosing the Keras backend and keeping TensorFlow/XLA chatter off the screen.

The backend must be chosen before Keras is first imported, so every command that needs Keras calls
`configure_backend` first. TensorFlow, absl and XLA write to the process's stderr (file descriptor 2)
at import and compile time; `native_stderr_to` sends those lines to the run's log file instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from llmtui.errors import LlmtuiError

_BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def chosen_backend(requested: str) -> str:
    """The recipe's backend unless the KERAS_BACKEND environment variable says otherwise."""
    return os.environ.get("KERAS_BACKEND") or requested


def require_backend(requested: str) -> str:
    """The chosen backend, checked by name only (nothing imported): a run fails on a bad KERAS_BACKEND
    before its first stage, not at the model stage."""
    backend = chosen_backend(requested)
    if backend not in _BACKEND_MODULES:
        source = "the KERAS_BACKEND environment variable" if os.environ.get("KERAS_BACKEND") else "run.backend"
        raise LlmtuiError(f"unknown Keras backend {backend!r} (from {source})", hint="use tensorflow, jax or torch")
    return backend


def configure_backend(requested: str) -> str:
    """Set up Keras with the chosen backend and return its name."""
    backend = require_backend(requested)
    if "keras" in sys.modules:
        import keras

        active = keras.backend.backend()
        if active != backend:
            raise LlmtuiError(
                f"Keras already runs on {active} in this process; cannot switch to {backend}",
                hint="start a new process (e.g. a new llmtui command) for another backend",
            )
        return active
    if importlib.util.find_spec(_BACKEND_MODULES[backend]) is None:
        extra = " (pip install 'llmtui[jax]')" if backend == "jax" else ""
        raise LlmtuiError(f"the {backend} backend was asked for but {backend} is not installed{extra}")
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if backend == "tensorflow":
        from llmtui.training.distribute import split_tensorflow_cpu

        split_tensorflow_cpu()  # before TensorFlow starts its devices
    import keras  # noqa: F401  (imported here, with the environment set)
    import keras_hub  # noqa: F401

    logging.getLogger("absl").setLevel(logging.ERROR)
    return keras.backend.backend()


@contextlib.contextmanager
def native_stderr_to(log_file: Path | None) -> Iterator[None]:
    """Redirect file descriptor 2 (where native libraries write) into `log_file` for the duration.

    Python's own `sys.stderr` is left alone for Python code, but warnings are captured into the log too.
    """
    if log_file is None:
        yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    handle = open(log_file, "a", encoding="utf-8")
    os.dup2(handle.fileno(), 2)
    python_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    log_handler = logging.StreamHandler(handle)
    warnings_logger = logging.getLogger("py.warnings")
    logging.captureWarnings(True)
    warnings_logger.addHandler(log_handler)
    warnings_logger.propagate = False
    try:
        yield
    finally:
        warnings_logger.removeHandler(log_handler)
        logging.captureWarnings(False)
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)
        handle.close()


def device_kind() -> str:
    """The accelerator's name (e.g. "NVIDIA H100 80GB HBM3"), or "cpu" (Keras must be configured)."""
    import keras

    try:
        if keras.backend.backend() == "jax":
            import jax

            return jax.devices()[0].device_kind
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    except Exception:  # a missing detail only costs the MFU estimate its device name
        pass
    return "cpu"
