"""The run folder: the unit of work.

`runs/<name>/` holds the resolved recipe, `manifest.json` (versions, input fingerprints, per-stage timings),
the data splits, tokenizer, checkpoints, TensorBoard logs, the final model and the evaluation report.
While a run uses the folder it holds an OS-level lock (released even if the process is killed).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from llmtui.errors import RunFolderError

MANIFEST = "manifest.json"
RECIPE = "recipe.toml"
LOCK = ".lock"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so a killed process never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts (stage settings, upstream fingerprints)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()[:16]


class RunFolder:
    """Paths and bookkeeping of one run folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock_handle = None

    # Layout -------------------------------------------------------------------------------------
    @property
    def recipe_path(self) -> Path:
        return self.root / RECIPE

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def stage_dir(self, stage: str) -> Path:
        path = self.root / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def final_model_path(self) -> Path:
        return self.model_dir / "final.keras"

    @property
    def log_file(self) -> Path:
        return self.root / "run.log"

    # Locking ------------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the folder's lock or fail with a clear error if another run holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / LOCK, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunFolderError(f"run folder {self.root} is in use by {holder}",
                                 hint="wait for that run to finish, or give this run another name (--set run.name=...)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {platform.node()}")
        handle.flush()
        self._lock_handle = handle

    def unlock(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle.fileno(), fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def __enter__(self) -> "RunFolder":
        self.lock()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.unlock()

    # Manifest -----------------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"stages": {}}
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {"stages": {}}  # a damaged manifest only costs redoing stages
        manifest.setdefault("stages", {})
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        manifest["versions"] = software_versions()
        write_json_atomic(self.manifest_path, manifest)

    def clear(self) -> None:
        """Remove everything the run folder holds (under its lock), for a fresh start."""
        import shutil

        if not self.root.exists():
            return
        with self:
            for child in self.root.iterdir():
                if child.name == LOCK:
                    continue
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()

    def require(self, path: Path, what: str, how: str) -> Path:
        if not path.exists():
            raise RunFolderError(f"{self.root} has no {what} ({path} is missing)", hint=how)
        return path


def software_versions() -> dict[str, str]:
    """Versions of the libraries that shape results (only those already imported: no heavy imports here)."""
    import llmtui

    versions = {"python": platform.python_version(), "llmtui": llmtui.__version__}
    for name in ("keras", "keras_hub", "tensorflow", "jax", "tokenizers", "numpy"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    return versions


def resolve_run_dir(run: str | Path, out_dir: str | Path = "runs") -> Path:
    """A run given on the command line: a folder path, or a run name under `out_dir`."""
    path = Path(run)
    if path.is_dir():
        return path
    candidate = Path(out_dir) / str(run)
    if candidate.is_dir():
        return candidate
    raise RunFolderError(f"no run folder at {path} or {candidate}",
                         hint="give the folder of a run (e.g. runs/quickstart) or its name")
