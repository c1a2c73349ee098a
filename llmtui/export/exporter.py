"""`export_run`: a run's final model in one or all export formats, each loaded back and checked."""

from __future__ import annotations

import shutil
from pathlib import Path

from llmtui.export.common import (FORMATS, ExportError, ExportResult, check_output_dir, fresh_output_dir,
                                  logits_tolerance, sample_ids, write_metadata)
from llmtui.runfolder import RunFolder


def plan_exports(run: RunFolder, fmt: str, out: Path | None, model_config) -> tuple[dict[str, Path], dict[str, str]]:
    """({format: output folder}, {skipped format: why}) for `--format fmt --out out`."""
    from llmtui.export.preset import preset_problem

    if fmt not in (*FORMATS, "all"):
        raise ExportError(f"unknown export format {fmt!r}", hint=f"use one of {', '.join(FORMATS)} or all")
    skipped = {}
    if fmt == "all":
        formats = list(FORMATS)
        if problem := preset_problem(model_config):
            formats.remove("preset")
            skipped["preset"] = problem
        base = out if out is not None else run.root / "export"
        return {name: base / name for name in formats}, skipped
    if fmt == "preset" and (problem := preset_problem(model_config)):
        raise ExportError(f"cannot export a keras-hub preset: {problem}",
                          hint="use --format keras or --format savedmodel, which take any llmtui model")
    return {fmt: out if out is not None else run.root / "export" / fmt}, skipped


def export_run(run: RunFolder, fmt: str = "keras", out: Path | None = None, force: bool = False
               ) -> tuple[list[ExportResult], dict[str, str]]:
    """Export `run`'s final model; returns what each format wrote and the formats `all` skipped (with why).

    Every output folder is checked before anything is written: an existing, non-empty one is an error
    unless `force` (then it is replaced). Keras must not be configured yet, or already on the run's backend.
    """
    from llmtui.backend import configure_backend
    from llmtui.config import load_recipe

    recipe = load_recipe(run.require(run.recipe_path, "recipe", "is this a run folder?"))
    run.require(run.final_model_path, "trained model", "train it first: llmtui run RECIPE")
    from llmtui.finetune.use import task_of

    task = task_of(run)
    if task is not None and task["kind"] == "classification":
        raise ExportError(f"{run.root} holds a classification model (token ids and lengths -> label logits); "
                          "export writes language models",
                          hint=f"its model/final.keras loads with keras.saving.load_model after import "
                               f"llmtui.export.custom_objects; use it with llmtui classify {run.root}")
    tokenizer_json = run.require(run.tokenizer_dir / "tokenizer.json", "tokenizer",
                                 "run the recipe's tokenizer stage first: llmtui run RECIPE")
    targets, skipped = plan_exports(run, fmt, out, recipe.model)
    protected = [run.recipe_path, run.manifest_path, run.final_model_path, run.tokenizer_dir, run.data_dir,
                 run.checkpoint_dir, run.logs_dir, run.eval_dir]
    for target in targets.values():
        check_output_dir(target, protected, force)

    backend = configure_backend(recipe.run.backend)
    import keras

    from llmtui.pipeline import load_final_model
    from llmtui.tokenizers import TextTokenizer

    model = load_final_model(run)
    tokenizer = TextTokenizer.load(run.tokenizer_dir)
    vocab_size = int(model.output_shape[-1])
    ids = sample_ids(vocab_size, recipe.model.context)  # (2, T) int32
    reference = keras.ops.convert_to_numpy(model(ids, training=False))  # (2, T, V)
    atol = logits_tolerance(model, reference)
    info = {"arch": recipe.model.arch, "backend": backend, "vocab_size": vocab_size,
            "context": recipe.model.context, "tokenizer_kind": tokenizer.kind,
            "special_tokens": {"pad": tokenizer.pad_id, "unk": tokenizer.unk_id, "bos": tokenizer.bos_id,
                               "eos": tokenizer.eos_id}}
    results = []
    for name, target in targets.items():
        fresh_output_dir(target)
        try:
            result = _export_one(name, model, recipe.model, tokenizer, tokenizer_json, target, ids, reference,
                                 atol)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # no half-written export left behind
            raise
        result.files.append(write_metadata(target, name, run.root, info, result))
        results.append(result)
    return results, skipped


def _export_one(name, model, model_config, tokenizer, tokenizer_json, out, ids, reference, atol) -> ExportResult:
    if name == "keras":
        from llmtui.export.keras_file import export_keras

        return export_keras(model, out, tokenizer_json, ids, reference, atol)
    if name == "preset":
        from llmtui.export.preset import export_preset

        return export_preset(model, model_config, tokenizer, tokenizer_json, out, ids, reference, atol)
    from llmtui.export.saved_model import export_saved_model

    return export_saved_model(model, out, tokenizer_json, model_config.context, ids, reference, atol)
