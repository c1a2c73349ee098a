"""The key facts of a run folder, read from its files alone (no Keras): what was trained, how, how fast.

Shared by the evaluation report and `llmtui compare`.
"""

from __future__ import annotations

from pathlib import Path

from llmtui.errors import RunFolderError
from llmtui.runfolder import EvalReport, RunFolder, resolve_run_dir


def open_run(run: str | Path) -> RunFolder:
    """A run folder given on the command line; RunFolderError when the folder is not a run."""
    folder = RunFolder(resolve_run_dir(run))
    if not folder.recipe_path.is_file() and not folder.manifest_path.is_file():
        raise RunFolderError(
            f"{folder.root} is not a run folder (it has no recipe.toml or manifest.json)",
            hint="give the folder a recipe's run wrote, e.g. runs/quickstart (llmtui run RECIPE makes one)",
        )
    return folder


def require_eval_report(run: RunFolder) -> EvalReport:
    return run.require_eval_report()


def run_recipe(run: RunFolder) -> dict:
    """The resolved recipe as a dict: from the manifest, else from recipe.toml (empty if neither reads)."""
    recipe = run.read_manifest().get("recipe")
    if recipe:
        return recipe
    if run.recipe_path.is_file():
        from llmtui.config import load_recipe
        from llmtui.errors import LlmtuiError

        try:
            return load_recipe(run.recipe_path).model_dump(mode="json")
        except LlmtuiError:
            return {}
    return {}


def run_facts(run: RunFolder) -> dict:
    """Name, architecture, size, vocabulary and training facts of a run (None where unknown)."""
    recipe = run_recipe(run)
    model, train, tokenizer = recipe.get("model", {}), recipe.get("train", {}), recipe.get("tokenizer", {})
    stages = run.read_manifest()["stages"]
    train_summary = stages.get("train", {}).get("summary", {})
    architecture = run.architecture()
    try:
        tokens = run.token_meta()
    except RunFolderError:  # facts to show: a missing or damaged file only hides them
        tokens = None
    steps = train_summary.get("steps")
    per_step = None
    if train.get("batch_size") and model.get("context"):
        per_step = train["batch_size"] * model["context"] * train.get("grad_accum_steps", 1)
    return {
        "name": run.root.name,
        "run_dir": str(run.root),
        "arch": model.get("arch") or architecture.get("arch"),
        "layers": model.get("layers"),
        "dim": model.get("dim"),
        "heads": model.get("heads") if model.get("arch") not in ("rnn", "lstm", "gru") else None,
        "context": model.get("context"),
        "embedding": model.get("embedding"),
        "dropout": model.get("dropout"),
        "parameters": architecture.get("parameters") or stages.get("model", {}).get("summary", {}).get("parameters"),
        "tokenizer": (tokens.kind if tokens else None) or tokenizer.get("kind"),
        "vocab_size": (tokens.vocab_size if tokens else None) or architecture.get("vocab_size"),
        "train_tokens": tokens.train.tokens if tokens and tokens.train else None,
        "val_tokens": tokens.val.tokens if tokens and tokens.val else None,
        "optimizer": train.get("optimizer"),
        "lr": train.get("lr"),
        "schedule": train.get("schedule"),
        "batch_size": train.get("batch_size"),
        "weight_decay": train.get("weight_decay"),
        "steps": steps,
        "planned_steps": train.get("steps"),
        "tokens_seen": steps * per_step if steps is not None and per_step else None,
        "train_seconds": train_summary.get("train_seconds"),
        "train_stage_seconds": stages.get("train", {}).get("seconds"),
        "tokens_per_sec": train_summary.get("tokens_per_sec"),
        "best_val_loss": train_summary.get("best_val_loss"),
        "stopped_early": train_summary.get("stopped_early"),
        "backend": architecture.get("backend") or recipe.get("run", {}).get("backend"),
        "precision": train.get("precision"),
    }
