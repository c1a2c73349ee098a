"""The recipe: typed sections, TOML loading with clear errors, overrides and JSON Schema."""

from llmtui.config.loader import load_recipe, recipe_from_dict, recipe_schema, recipe_to_toml, save_recipe
from llmtui.config.recipe import (
    DataConfig,
    EvalConfig,
    GenerateConfig,
    ModelConfig,
    Recipe,
    RunConfig,
    SourceConfig,
    TokenizerConfig,
    TrainConfig,
)

__all__ = [
    "load_recipe",
    "recipe_from_dict",
    "recipe_schema",
    "recipe_to_toml",
    "save_recipe",
    "Recipe",
    "RunConfig",
    "DataConfig",
    "SourceConfig",
    "TokenizerConfig",
    "ModelConfig",
    "TrainConfig",
    "EvalConfig",
    "GenerateConfig",
]
