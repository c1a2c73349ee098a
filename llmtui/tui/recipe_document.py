"""The recipe the wizard edits, as a document: what it is, where it came from, and the ways to replace or save it.

UI-free: each method changes the recipe (or writes it), or raises `LlmtuiError` saying why not. The app says
what happened and where to go next, and the screens reload their fields when it tells them the recipe was
replaced. The recipe as the forms show it is built here from what each visited step writes of its own fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from llmtui.config.loader import load_recipe, recipe_from_dict, save_recipe
from llmtui.config.recipe import Recipe
from llmtui.errors import LlmtuiError
from llmtui.tui.state import WizardState, quickstart_path, tiny_template


class WritesFields(Protocol):
    """A step that writes the fields it shows into a recipe's data (as the loader reads it from TOML)."""

    def write_fields(self, data: dict[str, Any]) -> None: ...


class RecipeDocument:
    def __init__(self, base_dir: Path):
        self.state = WizardState(base_dir=base_dir)  # the recipe, its file and its run folder; screens read it

    # Replacing the recipe ------------------------------------------------------------------------------------
    def new_from_template(self, name: str) -> str:
        """An unsaved recipe from the `tiny` or `quickstart` template; returns a warning, or ""."""
        if name != "quickstart":
            self.state.new_recipe(tiny_template())
            return ""
        path = quickstart_path()
        # A template: saving writes a new file, and its run gets a folder of its own.
        self.state.new_recipe(
            {"run": {"name": "quickstart"}} if path is None else load_recipe(path).model_dump(mode="json")
        )
        return "" if path is not None else "recipes/quickstart.toml is not here; starting from the recipe defaults."

    def new_finetune(self, base: str = "") -> None:
        """An unsaved fine-tune recipe (of `base`, a run name or a pretrained model, when given)."""
        data = tiny_template()
        data["run"]["name"] = f"{base}-finetune" if base else "finetune"
        data["train"].update(steps=100, lr=1e-3)
        data["finetune"] = {"base": base}
        self.state.new_recipe(data)
        self.adopt_base_architecture()

    def open_recipe(self, path: Path) -> None:
        self.state.open_recipe(path)

    def open_run(self, folder: Path) -> None:
        """The recipe of a run folder (made by llmtui), to look at the run or go on with it."""
        self.state.open_run(folder)

    def adopt_base_architecture(self) -> bool:
        """Take the fine-tune base's model and tokenizer sections into the recipe (the base decides them when the
        fine-tune runs; taken now, the Model step and the costs show the base's own). False when no base reads."""
        from llmtui.finetune.pipeline import base_run_folder
        from llmtui.interop.base import HUB_PREFIXES, is_pretrained_source, read_base_spec

        name, base_dir = self.state.recipe.finetune.base, self.state.base_dir
        try:
            if is_pretrained_source(name, base_dir):
                if name.startswith(HUB_PREFIXES):  # not downloaded from the wizard: the run fetches it
                    return False
                # A pretrained base: its architecture from its config alone; its own tokenizer comes with it.
                spec = read_base_spec(name, base_dir)
                model = spec.model_config(self.state.recipe.model.context)
                self.state.try_update("model", model.model_dump(mode="json"))
                return True
            base = load_recipe(base_run_folder(self.state.recipe, base_dir).recipe_path)
        except LlmtuiError:
            return False
        for section in ("model", "tokenizer"):
            self.state.try_update(section, getattr(base, section).model_dump(mode="json"))
        return True

    def use_trial(self, row: dict) -> None:
        """Write a search trial's values (a row as `llmtui tune` lists it) into the recipe."""
        from llmtui.tuning.space import apply_values

        self.state.recipe = apply_values(self.state.recipe, row["params"], where=f"trial {row['number']}")

    # Saving --------------------------------------------------------------------------------------------------
    def default_save_path(self) -> str:
        """Where the recipe came from, else `<run name>.toml`."""
        if self.state.recipe_path is not None:
            return str(self.state.recipe_path)
        return f"{self.state.recipe.run.name}.toml"

    def save(self, path_text: str = "") -> Path:
        """Write the recipe to `path_text` (relative to the working folder; empty: the default) and remember it
        as the recipe's file. Returns the path as given."""
        path = Path(path_text or self.default_save_path())
        target = path if path.is_absolute() else self.state.base_dir / path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            save_recipe(self.state.recipe, target)
        except OSError as exc:
            raise LlmtuiError(f"cannot save {path}: {exc.strerror or exc}") from None
        self.state.recipe_path = path
        return path

    # The recipe as the forms show it ------------------------------------------------------------------------
    def recipe_from_forms(self, steps: Iterable[WritesFields]) -> Recipe:
        """The recipe built from the defaults and the fields of `steps` (the visited ones), each writing its own;
        the sources, which no form holds, come from the recipe."""
        data = Recipe().model_dump(mode="json")
        data["data"]["sources"] = [source.model_dump(mode="json") for source in self.state.recipe.data.sources]
        for step in steps:
            step.write_fields(data)
        return recipe_from_dict(data)
