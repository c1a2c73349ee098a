"""What the wizard is editing: one recipe (always valid), where it came from, and where its run lives."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtui.config.loader import load_recipe, recipe_from_dict, recipe_to_toml
from llmtui.config.recipe import Recipe
from llmtui.errors import RecipeError
from llmtui.runfolder import RunFolder, run_root

WHERE = "recipe"


def tiny_template() -> dict[str, Any]:
    """A run that trains in about a minute on a laptop CPU: characters, a 2-layer GPT, the built-in corpus."""
    return {
        "run": {"name": "tiny"},
        "data": {"sources": ["builtin:python-docs"], "val_fraction": 0.05, "max_documents": 400},
        "tokenizer": {"kind": "char"},
        "model": {"arch": "gpt", "layers": 2, "dim": 64, "heads": 2, "context": 64},
        "train": {
            "steps": 200,
            "batch_size": 16,
            "lr": 3e-3,
            "warmup_steps": 20,
            "eval_every": 50,
            "eval_batches": 5,
            "checkpoint_every": 100,
            "log_every": 10,
        },
        "eval": {"max_batches": 20},
        "generate": {"prompts": ["The "], "max_tokens": 100},
    }


def quickstart_path() -> Path | None:
    """recipes/quickstart.toml of a source checkout, or of the working folder."""
    here = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.toml"
    for candidate in (Path("recipes/quickstart.toml"), here):
        if candidate.is_file():
            return candidate
    return None


@dataclass
class WizardState:
    recipe: Recipe = field(default_factory=Recipe)
    recipe_path: Path | None = None
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def run(self) -> RunFolder:
        return RunFolder.of_recipe(self.recipe, self.base_dir)

    def shown(self, path: Path) -> str:
        """A path as the person sees it: relative to the working folder when inside it."""
        return _relative(Path(path).resolve(), self.base_dir)

    def as_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.recipe.model_dump(mode="json"))

    def toml(self) -> str:
        return recipe_to_toml(self.recipe)

    def new_recipe(self, data: dict[str, Any]) -> None:
        """Start an unsaved recipe (a template) under a run name that no folder in its out_dir has yet, so it
        never trains into another recipe's run (the quickstart template beside the README's quickstart run)."""
        recipe = recipe_from_dict(data, where=WHERE)
        stem, number, name = recipe.run.name, 1, recipe.run.name
        while run_root(self.base_dir, recipe.run.out_dir, name).exists():
            number += 1
            name = f"{stem}-{number}"
        self.recipe = recipe.model_copy(update={"run": recipe.run.model_copy(update={"name": name})})
        self.recipe_path = None

    def open_recipe(self, path: Path) -> None:
        self.recipe = load_recipe(path)
        self.recipe_path = path

    def open_run(self, folder: Path) -> None:
        run = RunFolder(folder)
        self.recipe = load_recipe(run.require(run.recipe_path, "recipe", "give the folder of a run made by llmtui"))
        # The run's own folder decides where it lives, whatever out_dir was when it ran.
        self.recipe = self.recipe.model_copy(
            update={
                "run": self.recipe.run.model_copy(
                    update={"name": folder.resolve().name, "out_dir": _relative(folder.resolve().parent, self.base_dir)}
                )
            }
        )
        self.recipe_path = None

    def try_update(self, section: str, values: dict[str, Any]) -> dict[str, str]:
        """Set `values` (key path under `section` -> raw value) if the whole recipe stays valid.

        Returns every problem by key path, as the loader keeps them (empty when the change was taken); a problem
        of the recipe as a whole (key "") is shown under the section being edited.
        """
        data = self.as_dict()
        for key, value in values.items():
            node = data
            parts = [section, *key.split(".")]
            for part in parts[:-1]:
                node = node[part]
            node[parts[-1]] = value
        try:
            self.recipe = recipe_from_dict(data, where=WHERE)
        except RecipeError as exc:
            errors = dict(exc.errors) or {section: exc.message}
            whole = errors.pop("", None)  # a rule across sections: shown with the section being edited
            if whole:
                errors[section] = f"{errors[section]}; {whole}" if section in errors else whole
            return errors
        return {}


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base.resolve()))
    except ValueError:
        return str(path)
