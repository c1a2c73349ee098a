"""Recipe loading: the good case, each kind of bad input, overrides, and a property test of the loader."""

from __future__ import annotations

import json
import re

import pytest
import tomllib
from hypothesis import given, settings
from hypothesis import strategies as st

from llmtui.config import Recipe, load_recipe, recipe_from_dict, recipe_schema, recipe_to_toml
from llmtui.config.loader import parse_override
from llmtui.errors import RecipeError


def write(tmp_path, text: str, name: str = "r.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_good_recipe_loads_with_defaults(tmp_path):
    recipe = load_recipe(write(tmp_path, '[run]\nname = "x"\n[train]\nsteps = 10\nlr = 1e-3\n'))
    assert recipe.run.name == "x"
    assert recipe.train.steps == 10 and recipe.train.lr == pytest.approx(1e-3)
    assert recipe.model.arch == "gpt"  # default
    assert recipe.data.sources[0].path == "builtin:python-docs"


def test_quickstart_recipe_is_valid():
    from pathlib import Path

    recipe = load_recipe(Path(__file__).parents[1] / "recipes" / "quickstart.toml")
    assert recipe.data.sources[0].path == "builtin:python-docs"


def test_every_field_has_a_description():
    def check(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                check(annotation)

    check(Recipe)


def test_malformed_toml_names_line_and_column(tmp_path):
    path = write(tmp_path, "[train]\nsteps = 10\nlr = = 3\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert "malformed TOML" in str(err.value) and "line 3" in str(err.value) and "column" in str(err.value)
    assert err.value.exit_code == 2


def test_unknown_key_suggests_the_close_one(tmp_path):
    with pytest.raises(RecipeError, match=r"train\.stesp: unknown key; did you mean 'steps'\?"):
        load_recipe(write(tmp_path, "[train]\nstesp = 10\n"))
    with pytest.raises(RecipeError, match=r"trian: unknown key; did you mean 'train'\?"):
        load_recipe(write(tmp_path, "[trian]\nsteps = 10\n"))


def test_wrong_type_names_key_value_and_expectation(tmp_path):
    with pytest.raises(RecipeError, match=r"train\.steps: expected a whole number, got 'many'"):
        load_recipe(write(tmp_path, '[train]\nsteps = "many"\n'))


def test_out_of_range_and_choices(tmp_path):
    with pytest.raises(RecipeError, match=r"data\.val_fraction: 0\.9 is out of range; it must be < 0\.5"):
        load_recipe(write(tmp_path, "[data]\nval_fraction = 0.9\n"))
    with pytest.raises(RecipeError, match=r"model\.arch: 'transformer' is not allowed; choose one of 'gpt'"):
        load_recipe(write(tmp_path, '[model]\narch = "transformer"\n'))


def test_cross_field_check():
    with pytest.raises(RecipeError, match=r"multiple of model\.heads"):
        recipe_from_dict({"model": {"dim": 100, "heads": 3}})


# Nine problems in nine places: more than a terminal message lists (SHOWN_PROBLEMS), all kept by key path.
NINE_PROBLEMS = {
    "run": {"seed": "zero"},
    "data": {"val_fraction": 0.9, "lowercase": "maybe"},
    "tokenizer": {"kind": "words"},
    "model": {"arch": "transformer", "layers": 0, "dropout": 2.0},
    "train": {"stesp": 3, "lr": "fast"},
}
NINE_KEYS = {
    "run.seed",
    "data.val_fraction",
    "data.lowercase",
    "tokenizer.kind",
    "model.arch",
    "model.layers",
    "model.dropout",
    "train.stesp",
    "train.lr",
}


def test_every_problem_is_kept_by_key_path_and_the_message_counts_the_rest():
    from llmtui.config.loader import SHOWN_PROBLEMS

    with pytest.raises(RecipeError) as err:
        recipe_from_dict(NINE_PROBLEMS, where="r.toml")
    errors = err.value.errors
    assert set(errors) == NINE_KEYS
    assert errors["model.layers"] == "0 is out of range; it must be >= 1"
    assert errors["train.stesp"].startswith("unknown key; did you mean 'steps'?")
    assert errors["tokenizer.kind"].startswith("'words' is not allowed; choose one of")
    lines = err.value.message.splitlines()
    assert len(lines) == SHOWN_PROBLEMS + 1 and lines[-1] == f"... and {9 - SHOWN_PROBLEMS} more problems"
    assert all(line.startswith("r.toml: ") for line in lines[:-1])


def test_a_rule_across_fields_is_kept_under_its_section():
    with pytest.raises(RecipeError) as err:
        recipe_from_dict({"model": {"dim": 100, "heads": 3}})
    assert list(err.value.errors) == ["model"] and "multiple of model.heads" in err.value.errors["model"]


def test_the_wizard_gets_every_problem_under_its_field(tmp_path):
    """The wizard's state hands its forms the loader's errors as they are, by key path: none lost, none parsed."""
    from llmtui.tui.state import WizardState

    state = WizardState(base_dir=tmp_path)
    before = state.recipe
    errors = state.try_update("model", {"arch": "transformer", "layers": 0, "dropout": 2.0, "dim": "wide"})
    assert set(errors) == {"model.arch", "model.layers", "model.dropout", "model.dim"}
    assert errors["model.dim"] == "expected a whole number, got 'wide'"
    assert state.recipe is before  # an invalid change is not taken
    assert state.try_update("model", {"dim": 30, "heads": 4}) == {
        "model": "model.dim (30) must be a multiple of model.heads (4)"
    }
    assert state.try_update("model", {"dim": 64, "heads": 4}) == {} and state.recipe.model.dim == 64


def test_check_field_names_the_field():
    from llmtui.config.loader import check_field
    from llmtui.config.recipe import GenerateConfig

    with pytest.raises(RecipeError) as err:
        check_field(GenerateConfig, "top_p", 0.0)
    assert list(err.value.errors) == ["top_p"] and "out of range" in err.value.errors["top_p"]


@pytest.mark.parametrize(
    "text, value",
    [
        ("3", 3),
        (" 1e-3 ", 1e-3),
        ("true", True),
        ('["a", "b"]', ["a", "b"]),
        ('"quoted"', "quoted"),
        ("adamw", "adamw"),
        ("runs/x", "runs/x"),
        ("[1, 2", "[1, 2"),
    ],
)
def test_one_toml_value_parser_for_overrides_and_forms(text, value):
    from llmtui.config.loader import parse_toml_value

    assert parse_toml_value(text) == value


def test_missing_binary_and_folder_recipe(tmp_path):
    with pytest.raises(RecipeError, match="recipe not found"):
        load_recipe(tmp_path / "nope.toml")
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(RecipeError, match="not a UTF-8 text file"):
        load_recipe(binary)
    with pytest.raises(RecipeError, match="is a folder"):
        load_recipe(tmp_path)


def test_overrides_win_over_file_and_are_typed(tmp_path):
    path = write(tmp_path, '[train]\nsteps = 10\noptimizer = "adam"\n')
    recipe = load_recipe(
        path,
        [
            "train.steps=99",
            "train.optimizer=sgd",
            "model.dropout=0.25",
            'generate.prompts=["a", "b"]',
            "data.lowercase=true",
        ],
    )
    assert recipe.train.steps == 99
    assert recipe.train.optimizer == "sgd"
    assert recipe.model.dropout == 0.25
    assert recipe.generate.prompts == ["a", "b"]
    assert recipe.data.lowercase is True


@pytest.mark.parametrize("override", ["train.steps", "=3", "steps=3", "train..steps=3"])
def test_malformed_override(override):
    with pytest.raises(RecipeError, match="expected section.key=value"):
        load_recipe(None, [override])


def test_override_into_a_value_is_an_error():
    with pytest.raises(RecipeError, match="is a value, not a section"):
        load_recipe(None, ["train.steps=3", "train.steps.x=1"])


def test_bad_override_value_is_checked_like_the_file_and_named_as_the_source():
    with pytest.raises(RecipeError, match=r"^--set train\.lr=fast: train\.lr: expected a number, got 'fast'"):
        load_recipe(None, ["train.lr=fast"])


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.grad_clip=inf", "expected a finite number, got inf"),
        ("train.lr=nan", "expected a finite number, got nan"),
        ("train.steps=true", "expected a number, got True (a boolean)"),
        ("data.val_fraction=false", "expected a number, got False (a boolean)"),
    ],
)
def test_non_finite_floats_and_booleans_are_not_numbers(override, expected):
    with pytest.raises(RecipeError, match=re.escape(expected)):
        load_recipe(None, [override])


def test_parse_override_keeps_bare_words_as_strings():
    assert parse_override("run.out_dir=runs/x") == (["run", "out_dir"], "runs/x")
    assert parse_override("train.lr=1e-3") == (["train", "lr"], 1e-3)


def test_toml_round_trip():
    recipe = recipe_from_dict(
        {"data": {"sources": ["a.txt", {"path": "docs", "include": ["*.md"]}]}, "train": {"steps": 5}}
    )
    again = recipe_from_dict(tomllib.loads(recipe_to_toml(recipe)))
    assert again == recipe


def test_schema_is_json_with_descriptions():
    schema = json.loads(json.dumps(recipe_schema()))
    assert schema["title"] == "llmtui recipe"
    train = schema["$defs"]["TrainConfig"]["properties"]
    assert train["steps"]["description"]
    assert schema["$defs"]["TrainConfig"]["additionalProperties"] is False


# Property tests: whatever the input, the loader returns a Recipe or raises its own RecipeError.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=True), st.text(max_size=12)
)
keys = st.sampled_from(
    [
        "run",
        "data",
        "tokenizer",
        "model",
        "train",
        "eval",
        "generate",
        "steps",
        "lr",
        "arch",
        "sources",
        "name",
        "dim",
        "heads",
        "kind",
        "prompts",
        "path",
        "x",
    ]
) | st.text(max_size=6)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3), max_leaves=10
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=5))
def test_loader_never_raises_anything_but_recipe_error(data):
    try:
        assert isinstance(recipe_from_dict(data), Recipe)
    except RecipeError as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_file_text_gives_recipe_or_recipe_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("r") / "r.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_recipe(path)
    except RecipeError as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_override_gives_recipe_or_recipe_error(override):
    try:
        load_recipe(None, [override])
    except RecipeError as exc:
        assert str(exc)
