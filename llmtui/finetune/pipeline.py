"""Fine-tuning: which base a recipe starts from, and the recipe and stages of its run.

The base is a trained run (`[finetune] base` names its folder or run name) or a pretrained checkpoint (a
Hugging Face folder, a keras-hub preset or a hub handle), imported once into a run folder of its own. The
fine-tune runs through the same runner as training from scratch (`llmtui.pipeline.Pipeline`), with the
stages of `llmtui.finetune.stages`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from llmtui.config.loader import load_recipe
from llmtui.config.recipe import Recipe
from llmtui.errors import RecipeError, RunFolderError
from llmtui.runfolder import RunFolder, file_digest, fingerprint, resolve_run_dir

if TYPE_CHECKING:
    from llmtui.stages.base import Stage

TASK_STAGES = ("data", "tokenizer", "model", "train", "eval")  # a task fine-tune's (a domain one has all six)


def base_run_folder(recipe: Recipe, base_dir: Path) -> RunFolder:
    """The trained run that `[finetune] base` names (a folder, or a run name under run.out_dir)."""
    name = recipe.finetune.base
    if not name:
        raise RecipeError(
            "[finetune] base is empty: fine-tuning starts from a trained run",
            hint='set finetune.base to a run folder or run name, e.g. base = "quickstart"',
        )
    given = Path(name).expanduser()
    candidates = [given if given.is_absolute() else base_dir / given, base_dir / recipe.run.out_dir / name]
    folder = next((c for c in candidates if c.is_dir()), None)
    if folder is None:
        raise RunFolderError(
            f"finetune.base = {name!r}: no run folder at {candidates[0]} or {candidates[1]}",
            hint="train the base first (llmtui run RECIPE) or fix finetune.base",
        )
    run = RunFolder(resolve_run_dir(folder))
    run.require(run.final_model_path, "trained model", "finish training the base run first: llmtui run RECIPE")
    run.require(run.recipe_path, "recipe", "is finetune.base a run folder?")
    return run


def base_folder(recipe: Recipe, base_dir: Path) -> RunFolder:
    """The run folder a fine-tune starts from: the trained run `[finetune] base` names, or the pretrained base
    it names, imported on first use."""
    from llmtui.interop.base import is_pretrained_source

    if recipe.finetune.base and is_pretrained_source(recipe.finetune.base, base_dir):
        return pretrained_base_folder(recipe, base_dir)
    return base_run_folder(recipe, base_dir)


def pretrained_base_folder(recipe: Recipe, base_dir: Path) -> RunFolder:
    """The run folder holding the pretrained base `[finetune] base` names (a Hugging Face folder, a keras-hub
    preset or a hub handle), imported on first use into RUNS/imported/<name>-<digest> and reused after.

    The pre-flight memory check runs on the base's config before any weight is read; the training window is
    the recipe's model.context, at most the base's own length.
    """

    from llmtui.interop.base import import_base, read_base_spec
    from llmtui.models.cost import finetune_cost, preflight_problem

    source = recipe.finetune.base
    spec = read_base_spec(source, base_dir)
    config = spec.model_config(recipe.model.context)
    cost = finetune_cost(config, recipe.train, spec.vocab_size, recipe.finetune.method)
    problem = preflight_problem(cost, recipe.train)
    if problem:
        raise RecipeError(
            f"pre-flight check for the pretrained base {source}: {problem}",
            hint="fine-tune with finetune.method = 'lora' (no optimizer state for the base's weights), "
            "train.precision = 'mixed_bfloat16', a smaller train.batch_size with "
            "train.grad_accum_steps, or a shorter model.context; see llmtui model summary RECIPE",
        )
    assert spec.path is not None  # read_base_spec resolved the source to a local folder (downloading a hub handle)
    config_digest = file_digest(spec.path / "config.json")
    digest = fingerprint(str(spec.path.resolve()), config_digest, config.context, spec.norm_epsilon)[:10]
    root = base_dir / recipe.run.out_dir / "imported" / f"{spec.path.name}-{digest}"
    run = RunFolder(root)
    if not (run.final_model_path.is_file() and (run.model_dir / "import.json").is_file()):
        from llmtui.backend import configure_backend, native_stderr_to

        root.mkdir(parents=True, exist_ok=True)
        with native_stderr_to(run.log_file):  # TensorFlow's start-up lines go to the log, not the screen
            configure_backend(recipe.run.backend)
            import_base(source, root, config.context, base_dir, spec=spec)
    return run


def finetune_plan(recipe: Recipe, base_dir: Path) -> tuple[Recipe, list[Stage]]:
    """The recipe a fine-tune runs (the base's vocabulary and architecture in place of its own sections, which
    would not fit the base's weights) and its stages."""
    from llmtui.finetune.stages import finetune_stages

    base = base_folder(recipe, base_dir)
    base_recipe = load_recipe(base.recipe_path)
    if base_recipe.finetune.task == "classification" and base_recipe.finetune.base:
        raise RecipeError(
            f"finetune.base = {recipe.finetune.base!r} is a classification model, not a language model",
            hint="start from a pretrained (or domain fine-tuned) run",
        )
    recipe = recipe.model_copy(update={"tokenizer": base_recipe.tokenizer, "model": base_recipe.model})
    if RunFolder.of_recipe(recipe, base_dir).root.resolve() == base.root.resolve():
        raise RecipeError(
            f"the fine-tuned run would overwrite its base {base.root}", hint="give the fine-tune its own run.name"
        )
    return recipe, finetune_stages(recipe.finetune.task, base)
