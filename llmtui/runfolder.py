"""The run folder: the unit of work, and the one module that knows its layout.

`runs/<name>/` holds the resolved recipe, `manifest.json` (versions, input fingerprints, per-stage timings),
the data splits, tokenizer, checkpoints, TensorBoard logs, the final model and the evaluation report.
While a run uses the folder it holds an OS-level lock (released even if the process is killed).

Every other module asks `RunFolder` for a path and reads or writes the folder's JSON through the typed
readers and writers here (manifest, token meta, data report, evaluation report), so a layout change or a
damaged file is handled in one place: a required file that is missing or unreadable is one
`RunFolderError` naming it. `load_final_model` loads the trained model with llmtui's Keras classes
registered (`register_custom_objects`, the single list of them).
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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any, TypedDict, cast

from llmtui.errors import LlmtuiError, RunFolderError

STAGES = ("data", "tokenizer", "model", "train", "eval", "generate")
# The folders each stage writes through a staging copy (StageTransaction); training writes checkpoints and
# logs in place, and its final model into model/ beside the model stage's architecture files.
STAGE_FOLDERS = {
    "data": ("data",),
    "tokenizer": ("tokenizer",),
    "model": ("model",),
    "train": ("model",),
    "eval": ("eval",),
    "generate": ("generate",),
}
MANIFEST = "manifest.json"
RECIPE = "recipe.toml"
LOCK = ".lock"
STAGING = ".staging"  # a running stage's outputs, renamed into place when the stage commits
MANIFEST_FORMAT = 2  # 2: outputs relative to the run folder, a size and blake2b digest per output
# Files inside the stage folders (reach them through RunFolder's properties, not by name).
DATA_REPORT = "report.json"  # data/: what the data stage read, kept and dropped (DataReport)
TASK = "task.json"  # data/ of a task fine-tune: what the examples are (kind, labels, prompt template)
TOKEN_META = "tokens.json"  # tokenizer/: vocabulary size, kind, and per split its tokens, bytes, dtype (TokenMeta)
VOCABULARY_REPORT = "report.json"  # tokenizer/: coverage and lengths on the validation split
ARCHITECTURE = "architecture.json"  # model/: arch, parameters, vocabulary size, cost, config
EMBEDDING_REPORT = "embedding_report.json"  # model/: coverage of the pretrained vectors
FINAL_MODEL = "final.keras"  # model/: the trained model
EVAL_REPORT = "report.json"  # eval/: metrics (EvalReport)
SAMPLES = "samples.json"  # generate/: {"samples": [{"prompt", "text"}, ...]}
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


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object the run folder needs; one RunFolderError naming `what` and the file when it is missing,
    unreadable, not JSON, or not an object."""
    redo = "the file is damaged: run the recipe again (llmtui run RECIPE) to redo the stage that writes it"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunFolderError(
            f"the {what} {path} is missing", hint="run the stage that writes it: llmtui run RECIPE"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RunFolderError(f"cannot read the {what} {path}: {reason}", hint=redo) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFolderError(
            f"the {what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", hint=redo
        ) from None
    if not isinstance(data, dict):
        raise RunFolderError(f"the {what} {path} holds a JSON {type(data).__name__}, not an object", hint=redo)
    return data


def read_json_or_none(path: Path) -> dict[str, Any] | None:
    """A JSON object whose absence or damage only costs a fact shown to the user (None then)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


# Typed records of the folder's JSON files ---------------------------------------------------------
class StageEntry(TypedDict, total=False):
    """A finished stage in the manifest."""

    fingerprint: str
    seconds: float
    summary: dict[str, Any]
    finished: str
    outputs: list[str]  # relative to the run folder
    digests: dict[str, dict[str, Any]]  # output → output_digest (or {"sha256": ...} before format 2)
    shared_from: str  # a tuning trial's stages copied from the study's run


class Manifest(TypedDict, total=False):
    format: int
    recipe: dict[str, Any]  # the resolved recipe, as JSON
    stages: dict[str, StageEntry]
    updated: str
    versions: dict[str, str]
    imported: dict[str, Any]  # a run folder `llmtui import` made: where the model came from (interop.base)


class EvalReport(TypedDict, total=False):
    """eval/report.json: validation metrics at the top level; sections other commands add below."""

    loss: float
    perplexity: float
    bits_per_byte: float | None
    accuracy: float
    top5_accuracy: float
    loss_by_position: list[float]
    tokens: int
    vocab_size: int
    uniform_loss: float
    split: str
    train_steps: int | None
    train_tokens_per_sec: float | None
    parameters: int | None
    model_digest: str | None  # the final model the metrics belong to
    files: dict[str, dict[str, Any]]  # llmtui eval RUN --data FILE, by path
    task: dict[str, Any]  # a fine-tuned task's metrics
    harness: dict[str, Any]  # llmtui eval RUN --harness
    # A fine-tune's evaluation (llmtui.finetune.stages) adds what the base and the examples were:
    finetune: dict[str, Any]  # a domain fine-tune: perplexity before and after, on the domain and the base's text
    answers: list[dict[str, str]]  # a QA or translation task: {"input", "target", "prediction"} of the first 50
    task_kind: str
    examples: int
    base: str
    method: str


@dataclass(frozen=True)
class SplitTokens:
    """One encoded split: tokens (with an end-of-text token per document), UTF-8 bytes, dtype of <split>.bin."""

    tokens: int
    bytes: int
    dtype: str


@dataclass(frozen=True)
class TokenMeta:
    """tokenizer/tokens.json. A run fine-tuned for a task (examples, not a token stream) or an imported
    model has no splits."""

    vocab_size: int
    kind: str
    train: SplitTokens | None = None
    val: SplitTokens | None = None

    def split(self, name: str) -> SplitTokens:
        found = getattr(self, name, None) if name in ("train", "val") else None
        if not isinstance(found, SplitTokens):
            raise RunFolderError(
                f"the tokenizer folder has no encoded {name!r} split",
                hint="run the tokenizer stage: llmtui run RECIPE --until tokenizer",
            )
        return found

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes per token of the validation split (what bits per byte divide by)."""
        val = self.split("val")
        return val.bytes / max(val.tokens, 1)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"vocab_size": self.vocab_size, "kind": self.kind}
        for name in ("train", "val"):
            split = getattr(self, name)
            if split is not None:
                data[name] = asdict(split)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path) -> TokenMeta:
        try:
            splits = {
                name: SplitTokens(int(data[name]["tokens"]), int(data[name]["bytes"]), str(data[name]["dtype"]))
                for name in ("train", "val")
                if name in data
            }
            return cls(vocab_size=int(data["vocab_size"]), kind=str(data.get("kind", "")), **splits)
        except (KeyError, TypeError, ValueError) as exc:
            raise RunFolderError(
                f"the token meta {path} is damaged ({type(exc).__name__}: {exc})",
                hint="redo the tokenizer stage: llmtui run RECIPE --until tokenizer",
            ) from None


def read_token_meta(tokenizer_dir: Path) -> TokenMeta:
    """<tokenizer folder>/tokens.json; RunFolderError naming the file when it is missing or damaged."""
    path = tokenizer_dir / TOKEN_META
    return TokenMeta.from_json(read_json(path, "token meta"), path)


def token_file(tokenizer_dir: Path, split: str) -> Path:
    """A split encoded as token ids: <tokenizer folder>/<split>.bin (its dtype is in the token meta)."""
    return tokenizer_dir / f"{split}.bin"


def write_token_meta(tokenizer_dir: Path, meta: TokenMeta) -> None:
    write_json_atomic(tokenizer_dir / TOKEN_META, meta.to_json())


@dataclass(frozen=True)
class SplitCounts:
    documents: int = 0
    chunks: int = 0
    characters: int = 0


@dataclass(frozen=True)
class DataReport:
    """data/report.json, as the data stage writes it (`llmtui data inspect` prints it). Counts are documents
    unless named otherwise. Keys the record does not know (a fine-tuned task's example counts, a later
    version's additions) are kept in `extra` and written back."""

    documents_read: int = 0
    documents_kept: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    dropped_by_filter: dict[str, int] = field(default_factory=dict)  # filter → documents it dropped
    lines_removed: dict[str, int] = field(default_factory=dict)  # line filter → lines it removed
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"source", "path", "reason"}
    ignored: dict[str, Any] = field(default_factory=dict)  # {"files": n, "by_type": {pattern: n}}
    repaired_encoding: int = 0
    pii_scrubbed: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0
    characters_kept: int = 0
    splits: dict[str, SplitCounts] = field(default_factory=dict)
    per_source: dict[str, dict[str, int]] = field(default_factory=dict)
    document_length_histogram: dict[str, int] = field(default_factory=dict)  # "10-99" → documents
    contamination: dict[str, Any] | None = None  # {"ngram": n, <held-out name>: {examples, contaminated, share}}
    web: dict[str, Any] | None = None
    timings: dict[str, Any] = field(default_factory=dict)  # seconds per phase ("read_s", ...), workers
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        """What the manifest keeps of the data stage."""
        return {
            "documents_read": self.documents_read,
            "documents_kept": self.documents_kept,
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates,
            "characters_kept": self.characters_kept,
        }

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data["splits"] = {name: asdict(counts) for name, counts in self.splits.items()}
        return {**data, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path) -> DataReport:
        known = {f.name for f in fields(cls)} - {"extra"}
        try:
            values = {k: v for k, v in data.items() if k in known}
            values["splits"] = {
                name: SplitCounts(
                    **{k: int(v) for k, v in counts.items() if k in ("documents", "chunks", "characters")}
                )
                for name, counts in (data.get("splits") or {}).items()
            }
            return cls(**values, extra={k: v for k, v in data.items() if k not in known})
        except (AttributeError, TypeError, ValueError) as exc:
            raise RunFolderError(
                f"the data report {path} is damaged ({type(exc).__name__}: {exc})",
                hint="redo the data stage: llmtui run RECIPE --until data",
            ) from None


def write_data_report(data_dir: Path, report: DataReport) -> None:
    write_json_atomic(data_dir / DATA_REPORT, report.to_json())


# The trained model --------------------------------------------------------------------------------
def register_custom_objects() -> None:
    """Register llmtui's own Keras classes (layers, the scorer, the learning-rate schedule) by their names,
    so `keras.models.load_model` finds them. Their modules register them when imported; this is the one
    list of them (`llmtui.export.custom_objects` calls it for exported models)."""
    import llmtui.evaluation.language_model  # noqa: F401  (the scoring model)
    import llmtui.finetune.classifier  # noqa: F401  (SequencePooling, for classification runs)
    import llmtui.models.recurrent_layers  # noqa: F401  (LSTM, GRU, SimpleRNN)
    import llmtui.models.token_encoding  # noqa: F401  (TokenEncoding)
    import llmtui.models.transformer  # noqa: F401  (DecoderBlock)
    import llmtui.training.keras_schedule  # noqa: F401  (the learning-rate schedule)


def load_final_model(run: RunFolder):
    """The trained model of a run folder (Keras must already be configured)."""
    path = run.require(run.final_model_path, "trained model", "train it first: llmtui run RECIPE")
    import keras

    register_custom_objects()
    try:
        return keras.models.load_model(path, compile=False)
    except OSError:
        raise
    except Exception as exc:  # a truncated or overwritten file: zipfile, h5py and Keras each raise their own
        raise LlmtuiError(
            f"{path} cannot be read as a Keras model ({type(exc).__name__}: {exc})",
            hint="the file is damaged: run the recipe again (llmtui run RECIPE) to redo training "
            "from its last checkpoint",
        ) from None


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
    entry["digests"] = {
        by_name[name]: {"sha256": value} for name, value in old.items() if name in by_name and isinstance(value, str)
    }


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
        return self.model_dir / FINAL_MODEL

    @property
    def log_file(self) -> Path:
        return self.root / "run.log"

    def split_path(self, split: str) -> Path:
        """A split of the data stage: data/<split>.jsonl (train, val, test)."""
        return self.data_dir / f"{split}.jsonl"

    @property
    def data_report_path(self) -> Path:
        return self.data_dir / DATA_REPORT

    @property
    def task_path(self) -> Path:
        return self.data_dir / TASK

    @property
    def token_meta_path(self) -> Path:
        return self.tokenizer_dir / TOKEN_META

    @property
    def vocabulary_report_path(self) -> Path:
        return self.tokenizer_dir / VOCABULARY_REPORT

    @property
    def architecture_path(self) -> Path:
        return self.model_dir / ARCHITECTURE

    @property
    def embedding_report_path(self) -> Path:
        return self.model_dir / EMBEDDING_REPORT

    @property
    def eval_report_path(self) -> Path:
        return self.eval_dir / EVAL_REPORT

    @property
    def samples_path(self) -> Path:
        return self.generate_dir / SAMPLES

    def token_path(self, split: str) -> Path:
        """A split encoded as token ids: tokenizer/<split>.bin (its dtype is in the token meta)."""
        return token_file(self.tokenizer_dir, split)

    @property
    def export_dir(self) -> Path:
        """Where `llmtui export` writes by default (one folder per format)."""
        return self.root / "export"

    def scalar_log_dir(self, name: str) -> Path:
        """TensorBoard event files of one writer (`train`, `val`, ...)."""
        return self.logs_dir / name

    @classmethod
    def of_recipe(cls, recipe: Any, base_dir: str | os.PathLike[str] = ".") -> RunFolder:
        """The run folder a recipe's run writes: <base_dir>/<run.out_dir>/<run.name>."""
        return cls(run_root(base_dir, recipe.run.out_dir, recipe.run.name))

    # Typed files --------------------------------------------------------------------------------
    def token_meta(self) -> TokenMeta:
        """tokenizer/tokens.json; RunFolderError when it is missing or damaged."""
        return read_token_meta(self.tokenizer_dir)

    def data_report(self) -> DataReport:
        """data/report.json; RunFolderError when it is missing or damaged."""
        return DataReport.from_json(read_json(self.data_report_path, "data report"), self.data_report_path)

    def eval_report(self) -> EvalReport | None:
        """eval/report.json, or None when it is missing or damaged (a new evaluation rewrites it)."""
        return cast("EvalReport | None", read_json_or_none(self.eval_report_path))

    def require_eval_report(self) -> EvalReport:
        """eval/report.json; RunFolderError (saying how to make it) when it is missing or damaged."""
        if not self.eval_report_path.is_file():
            raise RunFolderError(
                f"{self.root} has no evaluation report (eval/report.json)",
                hint=f"evaluate it: llmtui eval {self.root} (or finish the run: llmtui run RECIPE)",
            )
        return cast(EvalReport, read_json(self.eval_report_path, "evaluation report"))

    def write_eval_report(self, report: Mapping[str, Any]) -> None:
        """Write eval/report.json and record its new digest (it is rewritten after its stage finished)."""
        self.eval_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.eval_report_path, report)
        self.record_output(self.eval_report_path)

    def vocabulary_report(self) -> dict[str, Any] | None:
        """tokenizer/report.json (llmtui.tokenizers.report), or None when it is missing or damaged."""
        return read_json_or_none(self.vocabulary_report_path)

    def require_vocabulary_report(self) -> dict[str, Any]:
        """tokenizer/report.json; RunFolderError naming it when it is missing or damaged."""
        return read_json(self.vocabulary_report_path, "vocabulary report")

    def architecture(self) -> dict[str, Any]:
        """model/architecture.json ({} when it is missing or damaged: its facts are shown, never required)."""
        return read_json_or_none(self.architecture_path) or {}

    def samples(self) -> list[dict[str, str]]:
        """The generate stage's samples ([] when there are none)."""
        return (read_json_or_none(self.samples_path) or {}).get("samples") or []

    def task(self) -> dict[str, Any] | None:
        """data/task.json of a fine-tuned run (None when the run has none); RunFolderError when damaged."""
        return read_json(self.task_path, "task description") if self.task_path.is_file() else None

    def stage_summary(self, stage: str) -> dict[str, Any]:
        """The summary the manifest recorded for a finished stage ({} when it has none)."""
        entry = self.read_manifest()["stages"].get(stage)
        summary = entry.get("summary") if isinstance(entry, dict) else None
        return summary if isinstance(summary, dict) else {}

    # Locking ------------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the folder's lock or fail with a clear error if another run holds it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / LOCK, "a+")
        except (FileExistsError, NotADirectoryError):
            blocker = next((p for p in [self.root, *self.root.parents] if p.exists() and not p.is_dir()), self.root)
            raise RunFolderError(
                f"cannot make the run folder {self.root}: {blocker} is a file, not a folder",
                hint="choose another run.out_dir or run.name",
            ) from None
        except PermissionError:
            raise RunFolderError(
                f"cannot make or write the run folder {self.root}: permission denied",
                hint="choose a run.out_dir you can write to",
            ) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunFolderError(
                f"run folder {self.root} is in use by {holder}",
                hint="wait for that run to finish, or give this run another name (--set run.name=...)",
            ) from None
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
    def read_manifest(self) -> Manifest:
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
        return cast(Manifest, manifest)  # JSON from disk: its shape was checked above

    def check_outputs(self, entry: StageEntry) -> str | None:
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

    def write_manifest(self, manifest: Manifest) -> None:
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
                    hint="check run.out_dir and run.name; --fresh only clears folders that llmtui runs made",
                )
            for child in self.root.iterdir():
                if child.name == LOCK:
                    continue
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()

    def final_path(self, path: Path) -> Path:
        """Where `path` will be once the running stage commits: a staged file's place in the run folder (what
        a message should name, since the staging copy is gone by the time anyone reads it)."""
        try:
            rest = Path(path).relative_to(self.root / STAGING)
        except ValueError:
            return Path(path)
        return self.root.joinpath(*rest.parts[1:])  # without .staging/<stage>/

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

    def __init__(
        self,
        run: RunFolder,
        manifest: Manifest,
        stage: str,
        later: tuple[str, ...] | list[str],
        folders: tuple[str, ...] | list[str],
    ):
        self.run, self.manifest, self.stage = run, manifest, stage
        self.later, self.folders = list(later), list(folders)
        self.staging = run.root / STAGING / stage
        self.previous: StageEntry = {}

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

    def commit(self, outputs: list[Path], redrawn: list[Path], entry: dict[str, Any]) -> StageEntry:
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
        done = cast(
            StageEntry,
            {
                **entry,
                "outputs": names + loose,
                "digests": {n: output_digest(self.run.root / n) for n in names if (self.run.root / n).is_file()},
            },
        )
        self.manifest["stages"][self.stage] = done
        self.run.write_manifest(self.manifest)
        return done


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
    raise RunFolderError(
        f"no run folder at {path} or {candidate}", hint="give the folder of a run (e.g. runs/quickstart) or its name"
    )


def run_root(base_dir: str | os.PathLike[str], out_dir: str | Path, name: str) -> Path:
    """Where a run named `name` lives: <base_dir>/<out_dir>/<name> (the recipe's run.out_dir and run.name)."""
    return Path(base_dir) / out_dir / name
