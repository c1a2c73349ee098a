"""The run folder: the unit of work.

`runs/<name>/` holds the resolved recipe, `manifest.json` (versions, input fingerprints, per-stage timings),
the data splits, tokenizer, checkpoints, TensorBoard logs, the final model and the evaluation report.
While a run uses the folder it holds an OS-level lock (released even if the process is killed).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import IO, Any

from llmtui.errors import RunFolderError

STAGES = ("data", "tokenizer", "model", "train", "eval", "generate")
# The folders each stage writes through a staging copy (StageTransaction); training writes checkpoints and
# logs in place, and its final model into model/ beside the model stage's architecture files.
STAGE_FOLDERS = {"data": ("data",), "tokenizer": ("tokenizer",), "model": ("model",), "train": ("model",),
                 "eval": ("eval",), "generate": ("generate",)}
MANIFEST = "manifest.json"
RECIPE = "recipe.toml"
LOCK = ".lock"
STAGING = ".staging"  # a running stage's outputs, renamed into place when the stage commits
MANIFEST_FORMAT = 2  # 2: outputs relative to the run folder, a size and blake2b digest per output
# Files a run folder holds before its manifest exists: `--fresh` may clear a folder of only these.
RUN_FILES = {LOCK, RECIPE, "run.log", STAGING, MANIFEST, MANIFEST + ".tmp"}

# Output digests: a file up to WHOLE_LIMIT is hashed whole; a larger one by its size and SAMPLE_BLOCKS blocks
# of SAMPLE_BYTES spread evenly from its first to its last byte (a truncated, extended or rewritten file
# changes its size or some block; verifying a multi-GB model then reads ~16 MB, not all of it).
WHOLE_LIMIT = 64 << 20
SAMPLE_BYTES = 1 << 20
SAMPLE_BLOCKS = 16


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so a killed process never leaves half a file."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write text through a temporary file and a rename; on failure (a full disk) the temporary file goes and
    the error names `path`."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts (stage settings, upstream fingerprints)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a whole file (16 hex digits): identities of models and tokenizers, and manifests before format 2."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()[:16]


def output_digest(path: Path) -> dict[str, Any]:
    """Size and blake2b digest of an output file (whole up to WHOLE_LIMIT, sampled blocks above)."""
    size = path.stat().st_size
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as handle:
        if size <= WHOLE_LIMIT:
            while block := handle.read(SAMPLE_BYTES):
                digest.update(block)
            scheme = "whole"
        else:
            step = (size - SAMPLE_BYTES) / (SAMPLE_BLOCKS - 1)
            for index in range(SAMPLE_BLOCKS):
                handle.seek(int(index * step))
                digest.update(handle.read(SAMPLE_BYTES))
            scheme = "sampled"
    return {"size": size, "blake2b": digest.hexdigest(), "scheme": scheme}


def _migrate_entry(entry: dict[str, Any], root: Path) -> None:
    """A stage entry of a manifest before format 2 (absolute output paths, sha256 per file name) → relative."""
    outputs = []
    for name in entry.get("outputs", []):
        path = Path(name)
        if path.is_absolute():
            try:
                path = path.relative_to(root.resolve())
            except ValueError:  # the folder was moved or copied: every output lies in <stage folder>/<file>
                path = Path(*path.parts[-2:])
        outputs.append(path.as_posix())
    old = entry.get("digests", {})
    by_name = {Path(o).name: o for o in outputs}
    entry["outputs"] = outputs
    entry["digests"] = {by_name[name]: {"sha256": value} for name, value in old.items()
                        if name in by_name and isinstance(value, str)}


class RunFolder:
    """Paths and bookkeeping of one run folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock_handle: IO[str] | None = None
        self._staged: dict[str, Path] = {}  # folder name → where the running stage writes it (StageTransaction)

    def folder(self, name: str) -> Path:
        """A stage folder of the run (`data`, `tokenizer`, ...), or its staging copy while its stage runs."""
        return self._staged.get(name, self.root / name)

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
        return self.folder("data")

    @property
    def tokenizer_dir(self) -> Path:
        return self.folder("tokenizer")

    @property
    def model_dir(self) -> Path:
        return self.folder("model")

    @property
    def generate_dir(self) -> Path:
        return self.folder("generate")

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def eval_dir(self) -> Path:
        return self.folder("eval")

    @property
    def final_model_path(self) -> Path:
        return self.model_dir / "final.keras"

    @property
    def log_file(self) -> Path:
        return self.root / "run.log"

    # Locking ------------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the folder's lock or fail with a clear error if another run holds it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / LOCK, "a+")
        except (FileExistsError, NotADirectoryError):
            blocker = next((p for p in [self.root, *self.root.parents] if p.exists() and not p.is_dir()), self.root)
            raise RunFolderError(f"cannot make the run folder {self.root}: {blocker} is a file, not a folder",
                                 hint="choose another run.out_dir or run.name") from None
        except PermissionError:
            raise RunFolderError(f"cannot make or write the run folder {self.root}: permission denied",
                                 hint="choose a run.out_dir you can write to") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunFolderError(f"run folder {self.root} is in use by {holder}",
                                 hint="wait for that run to finish, or give this run another name (--set run.name=...)") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {platform.node()}")
            handle.flush()
        except OSError as exc:  # e.g. a full disk: say which file
            handle.close()
            raise OSError(exc.errno, exc.strerror, str(self.root / LOCK)) from None
        self._lock_handle = handle

    def unlock(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle.fileno(), fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def __enter__(self) -> RunFolder:
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
        if not isinstance(manifest, dict) or not isinstance(manifest.get("stages", {}), dict):
            return {"stages": {}}
        manifest.setdefault("stages", {})
        if manifest.get("format", 1) < MANIFEST_FORMAT:
            for entry in manifest["stages"].values():
                _migrate_entry(entry, self.root)
            manifest["format"] = MANIFEST_FORMAT
        return manifest

    def check_outputs(self, entry: dict[str, Any]) -> str | None:
        """Why a finished stage's outputs can no longer be trusted (None when they all exist and match)."""
        digests = entry.get("digests", {})
        outputs = entry.get("outputs", [])
        if not outputs:
            return "it recorded no outputs"
        for name in outputs:
            path = self.root / name
            if not path.exists():
                return f"{name} is missing"
            expected = digests.get(name)
            if expected is None or not path.is_file():
                continue  # an output later stages redraw (report pages): only its presence is checked
            try:
                if "sha256" in expected:
                    same = file_digest(path) == expected["sha256"]
                else:
                    same = path.stat().st_size == expected.get("size") and output_digest(path) == expected
            except OSError as exc:
                return f"{name} cannot be read ({exc.strerror or exc})"
            if not same:
                return f"{name} changed since it was written"
        return None

    def record_output(self, path: Path) -> None:
        """After a command rewrote a finished stage's output on purpose (`llmtui eval` adds to
        eval/report.json), record its new digest, so the next run does not take it for damage.
        A path no stage lists (or one in staging) is left alone. Call under the run's lock."""
        try:
            name = Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return
        manifest = self.read_manifest()
        entries = [e for e in manifest["stages"].values() if name in e.get("digests", {})]
        if entries:
            for entry in entries:
                entry["digests"][name] = output_digest(self.root / name)
            self.write_manifest(manifest)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        manifest["format"] = MANIFEST_FORMAT
        manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        manifest["versions"] = software_versions()
        write_json_atomic(self.manifest_path, manifest)

    def clear(self) -> None:
        """Remove everything the run folder holds (under its lock), for a fresh start.

        Only a run folder is cleared (one with our manifest, or only the files a run makes first): pointed
        at any other folder by mistake (run.out_dir = ".", a name that is a project folder), it refuses."""
        import shutil

        if not self.root.exists():
            return
        if not self.root.is_dir():
            raise RunFolderError(f"{self.root} is a file, not a run folder", hint="give the run another run.name")
        with self:
            foreign = sorted(c.name for c in self.root.iterdir() if c.name not in RUN_FILES)
            if foreign and not self.manifest_path.is_file():
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise RunFolderError(
                    f"--fresh would delete {self.root}, which is not a run folder (no {MANIFEST}; it holds {shown})",
                    hint="check run.out_dir and run.name; --fresh only clears folders that llmtui runs made")
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


class StageTransaction:
    """One stage's work in a run folder as a transaction: its outputs appear, with their manifest entry, only
    when the stage has finished.

    On entry the stage's manifest entry and those of the stages after it are removed on disk (an interruption
    then never leaves a "finished" entry that could describe new or partial files) and the stage's folders are
    redirected to `.staging/<stage>/`. `commit` renames the staged files into place, removes outputs the
    stage's previous run made and this one did not, and writes the entry: paths relative to the run folder
    (a moved or copied run works) and a digest of each output (`output_digest`). Leaving without a commit
    drops the staging copy. Training's checkpoints and logs are written in place (resume after a kill needs
    them) and carry their own fingerprint.
    """

    def __init__(self, run: RunFolder, manifest: dict[str, Any], stage: str, later: tuple[str, ...] | list[str],
                 folders: tuple[str, ...] | list[str]):
        self.run, self.manifest, self.stage = run, manifest, stage
        self.later, self.folders = list(later), list(folders)
        self.staging = run.root / STAGING / stage
        self.previous: dict[str, Any] = {}

    def __enter__(self) -> StageTransaction:
        import shutil

        stages = self.manifest["stages"]
        self.previous = stages.get(self.stage) or {}
        for name in [self.stage, *self.later]:
            stages.pop(name, None)
        self.run.write_manifest(self.manifest)
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        self.run._staged.update({name: self.staging / name for name in self.folders})
        return self

    def __exit__(self, *exc: Any) -> None:
        import shutil

        for name in self.folders:
            self.run._staged.pop(name, None)
        shutil.rmtree(self.staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.staging.parent.rmdir()  # .staging itself, once no stage is staged

    def relative(self, path: Path) -> str:
        """An output's path in the run folder (a staged path names where it will be after the commit)."""
        for base in (self.staging, self.run.root):
            try:
                return Path(path).relative_to(base).as_posix()
            except ValueError:
                continue
        raise ValueError(f"{path} is outside the run folder {self.run.root}")

    def commit(self, outputs: list[Path], redrawn: list[Path], entry: dict[str, Any]) -> dict[str, Any]:
        """Move the staged files into place and record the stage as finished; returns its manifest entry.

        `redrawn` outputs are ones later stages or commands rewrite (report pages): only their presence is checked.
        """
        names = [self.relative(p) for p in outputs]
        loose = [self.relative(p) for p in redrawn]
        for source in sorted(p for p in self.staging.rglob("*") if p.is_file() or p.is_symlink()):
            target = self.run.root / source.relative_to(self.staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir() and not target.is_symlink():
                import shutil

                shutil.rmtree(target)
            os.replace(source, target)
        for stale in set(self.previous.get("outputs", [])) - set(names) - set(loose):
            path = self.run.root / stale
            if path.is_file() and not Path(stale).is_absolute() and ".." not in Path(stale).parts:
                path.unlink()
        entry = {**entry, "outputs": names + loose,
                 "digests": {n: output_digest(self.run.root / n) for n in names if (self.run.root / n).is_file()}}
        self.manifest["stages"][self.stage] = entry
        self.run.write_manifest(self.manifest)
        return entry


def clear_staging(run: RunFolder) -> None:
    """Remove what killed stages left in `.staging/` (call under the run's lock)."""
    import shutil

    shutil.rmtree(run.root / STAGING, ignore_errors=True)


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
