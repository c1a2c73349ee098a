"""`export_run`: a run's final model in one or all export formats, each loaded back and checked."""

from __future__ import annotations

import shutil
from pathlib import Path

from llmtui.export.common import (
    FORMAT_NAMES,
    FORMATS,
    GGUF_TYPES,
    ExportError,
    ExportResult,
    check_output_dir,
    fresh_output_dir,
    logits_tolerance,
    sample_ids,
    write_metadata,
)
from llmtui.runfolder import RunFolder


def format_problem(fmt: str, model_config, tokenizer_kind: str) -> str | None:
    """Why format `fmt` cannot carry a run with this `[model]` section and tokenizer kind, or None when it can."""
    from llmtui.export.gguf import gguf_problem
    from llmtui.export.hf import hf_problem
    from llmtui.export.preset import preset_problem

    if fmt == "preset":
        return preset_problem(model_config)
    if fmt == "hf":
        return hf_problem(model_config)
    if fmt == "gguf":
        return hf_problem(model_config) or gguf_problem(tokenizer_kind)
    return None  # keras and savedmodel take any llmtui model


def plan_exports(
    run: RunFolder, fmt: str, out: Path | None, model_config, tokenizer_kind: str = "bpe"
) -> tuple[dict[str, Path], dict[str, str]]:
    """({format: output folder}, {skipped format: why}) for `--format fmt --out out`."""
    if fmt not in (*FORMATS, "all"):
        raise ExportError(f"unknown export format {fmt!r}", hint=f"use one of {', '.join(FORMATS)} or all")
    skipped = {}
    if fmt == "all":
        formats = []
        for name in FORMATS:
            if problem := format_problem(name, model_config, tokenizer_kind):
                skipped[name] = problem
            else:
                formats.append(name)
        base = out if out is not None else run.export_dir
        return {name: base / name for name in formats}, skipped
    if problem := format_problem(fmt, model_config, tokenizer_kind):
        raise ExportError(
            f"cannot export {FORMAT_NAMES[fmt]}: {problem}",
            hint="use --format keras or --format savedmodel, which take any llmtui model",
        )
    return {fmt: out if out is not None else run.export_dir / fmt}, skipped


def export_run(
    run: RunFolder, fmt: str = "keras", out: Path | None = None, force: bool = False, quantize: str = "f16"
) -> tuple[list[ExportResult], dict[str, str]]:
    """Export `run`'s final model; returns what each format wrote and the formats `all` skipped (with why).

    `quantize` is the GGUF export's tensor type (f32, f16 or q8_0). Every output folder is checked before
    anything is written: an existing, non-empty one is an error unless `force` (then it is replaced). Keras
    must not be configured yet, or already on the run's backend.
    """
    from llmtui.backend import configure_backend
    from llmtui.config import load_recipe

    recipe = load_recipe(run.require(run.recipe_path, "recipe", "is this a run folder?"))
    run.require(run.final_model_path, "trained model", "train it first: llmtui run RECIPE")
    from llmtui.finetune.use import task_of

    task = task_of(run)
    if task is not None and task["kind"] == "classification":
        raise ExportError(
            f"{run.root} holds a classification model (token ids and lengths -> label logits); "
            "export writes language models",
            hint=f"its model/final.keras loads with keras.saving.load_model after import "
            f"llmtui.export.custom_objects; use it with llmtui classify {run.root}",
        )
    tokenizer_json = run.require(
        run.tokenizer_dir / "tokenizer.json", "tokenizer", "run the recipe's tokenizer stage first: llmtui run RECIPE"
    )
    if quantize not in GGUF_TYPES:
        raise ExportError(f"unknown GGUF tensor type {quantize!r}", hint=f"use one of {', '.join(GGUF_TYPES)}")
    from llmtui.tokenizers import TextTokenizer

    tokenizer = TextTokenizer.load(run.tokenizer_dir)
    targets, skipped = plan_exports(run, fmt, out, recipe.model, tokenizer.kind)
    protected = [
        run.recipe_path,
        run.manifest_path,
        run.final_model_path,
        run.tokenizer_dir,
        run.data_dir,
        run.checkpoint_dir,
        run.logs_dir,
        run.eval_dir,
    ]
    for target in targets.values():
        check_output_dir(target, protected, force)

    backend = configure_backend(recipe.run.backend)
    import keras

    from llmtui.runfolder import load_final_model
    from llmtui.tokenizers.chat import chat_template

    model = load_final_model(run)
    vocab_size = int(model.output_shape[-1])
    ids = sample_ids(vocab_size, recipe.model.context)  # (2, T) int32
    reference = keras.ops.convert_to_numpy(model(ids, training=False))  # (2, T, V)
    atol = logits_tolerance(model, reference)
    info = {
        "arch": recipe.model.arch,
        "backend": backend,
        "vocab_size": vocab_size,
        "context": recipe.model.context,
        "tokenizer_kind": tokenizer.kind,
        "special_tokens": {
            "pad": tokenizer.pad_id,
            "unk": tokenizer.unk_id,
            "bos": tokenizer.bos_id,
            "eos": tokenizer.eos_id,
        },
    }
    results = []
    for name, target in targets.items():
        fresh_output_dir(target)
        try:
            result = _export_one(
                name,
                model,
                recipe,
                tokenizer,
                tokenizer_json,
                chat_template(run.tokenizer_dir),
                quantize,
                target,
                ids,
                reference,
                atol,
            )
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # no half-written export left behind
            raise
        result.files.append(write_metadata(target, name, run.root, info, result))
        results.append(result)
    return results, skipped


def _export_one(
    name, model, recipe, tokenizer, tokenizer_json, template, quantize, out, ids, reference, atol
) -> ExportResult:
    model_config = recipe.model
    if name == "keras":
        from llmtui.export.keras_file import export_keras

        return export_keras(model, out, tokenizer_json, ids, reference, atol)
    if name == "preset":
        from llmtui.export.preset import export_preset

        return export_preset(model, model_config, tokenizer, tokenizer_json, out, ids, reference, atol)
    if name == "hf":
        from llmtui.export.hf import export_hf

        return export_hf(
            model, model_config, tokenizer, tokenizer_json, template, recipe.generate, out, ids, reference, atol
        )
    if name == "gguf":
        from llmtui.export.gguf import export_gguf

        return export_gguf(
            model, model_config, tokenizer, template, recipe.generate, quantize, out, ids, reference, atol
        )
    from llmtui.export.saved_model import export_saved_model

    return export_saved_model(model, out, tokenizer_json, model_config.context, ids, reference, atol)
