"""Fine-tuning: domain continuation, LoRA, frozen layers, classification and prompt-to-answer tasks, on a
tiny base model trained once for the module."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llmtui.cli.app import app
from llmtui.config import recipe_from_dict
from llmtui.events import EventRecorder, Message
from llmtui.pipeline import Pipeline, pipeline_for
from tests.helpers import WORDS, tiny_recipe_dict, write_corpus

runner = CliRunner()
FIRST_WORDS = sorted(set(WORDS[:14]) - set(WORDS[14:]))
SECOND_WORDS = sorted(set(WORDS[14:]) - set(WORDS[:14]))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder with a trained tiny base run (runs/tiny) and task files made of the corpus' words."""
    root = tmp_path_factory.mktemp("finetune")
    corpus = write_corpus(root / "corpus", seed=1)
    base = recipe_from_dict(tiny_recipe_dict(corpus, root / "runs", model={"layers": 2}, train={"steps": 40}))
    Pipeline(base, base_dir=root).execute(until="eval")
    rng = random.Random(0)
    # Classification: texts made of two disjoint sets of words.
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(160):
            label = "first" if i % 2 else "second"
            words = FIRST_WORDS if label == "first" else SECOND_WORDS
            writer.writerow([" ".join(rng.choice(words) for _ in range(4)), label])
    # Prompt to answer: the answer is the prompt's words reversed.
    with open(root / "pairs.jsonl", "w", encoding="utf-8") as handle:
        for _ in range(60):
            words = [rng.choice(WORDS) for _ in range(2)]
            handle.write(json.dumps({"input": " ".join(words), "target": " ".join(reversed(words))}) + "\n")
    write_corpus(root / "domain", files=3, lines=30, seed=7)
    return root


def finetune_recipe(root: Path, name: str, finetune: dict, **sections):
    # XLA off: compiling costs more than these few steps save (pretraining tests cover the compiled path).
    train = {"steps": 20, "eval_every": 10, "checkpoint_every": 10, "jit_compile": False, **sections.pop("train", {})}
    recipe = tiny_recipe_dict(root / "domain", root / "runs", train=train, **sections)
    recipe["run"]["name"] = name
    recipe["finetune"] = {"base": "tiny", **finetune}
    return recipe_from_dict(recipe)


def run_finetune(root: Path, recipe, until: str | None = None) -> tuple:
    recorder = EventRecorder()
    pipeline = pipeline_for(recipe, base_dir=root, sinks=[recorder])
    pipeline.execute(until=until)
    return pipeline, recorder


def test_domain_finetune_lowers_domain_perplexity_and_reports_forgetting(workspace):
    pipeline, recorder = run_finetune(workspace, finetune_recipe(workspace, "domain", {"task": "domain"}))
    report = json.loads((pipeline.run.eval_dir / "report.json").read_text())
    comparison = report["finetune"]
    assert comparison["domain_val"]["after"]["perplexity"] < comparison["domain_val"]["before"]["perplexity"]
    assert set(comparison["base_val"]) == {"before", "after"}
    assert math.isclose(report["perplexity"], math.exp(report["loss"]), rel_tol=1e-6)
    lines = [e.text for e in recorder.of_type(Message)]
    assert any("forgetting" in line for line in lines)
    assert (pipeline.run.root / "generate" / "samples.json").exists()


def test_lora_trains_only_the_adapters_and_saves_a_plain_model(workspace):
    import keras

    from llmtui.runfolder import RunFolder, load_final_model

    recipe = finetune_recipe(
        workspace, "lora", {"task": "domain", "method": "lora", "lora_rank": 2}, train={"weight_decay": 0.0}
    )
    pipeline, _ = run_finetune(workspace, recipe, until="train")
    base = load_final_model(RunFolder(workspace / "runs" / "tiny"))
    tuned = load_final_model(pipeline.run)
    # Saved merged: the same plain architecture, no adapter variables left.
    assert not any("lora" in v.path for v in tuned.weights)
    assert [v.path for v in tuned.weights] == [v.path for v in base.weights]
    changed = {v.path for v, w in zip(base.weights, tuned.weights) if not np.allclose(v.numpy(), w.numpy())}
    # Only the adapted projections (kernel + A·B merged) differ; embeddings, norms and biases do not.
    assert changed and all(
        path.endswith("kernel") and any(t in path for t in ("qkv", "out", "mlp_in", "mlp_out")) for path in changed
    ), changed
    info = json.loads((pipeline.run.model_dir / "architecture.json").read_text())
    assert (
        info["parameters"] == 2 * 2 * (32 * 96 + 96 * 2 + 32 * 2 + 32 * 128 + 128 * 2 + 32 * 2) // 2
        or info["parameters"] < info["total_parameters"] / 4
    )
    assert isinstance(keras.__version__, str)


def test_lora_rank_larger_than_the_layer_is_refused(workspace):
    from llmtui.errors import RecipeError

    recipe = finetune_recipe(workspace, "lora-big", {"task": "domain", "method": "lora", "lora_rank": 64})
    with pytest.raises(RecipeError, match="lora_rank = 64 is larger than layer"):
        run_finetune(workspace, recipe, until="model")


def test_freeze_keeps_the_lower_layers(workspace):
    from llmtui.runfolder import RunFolder, load_final_model

    recipe = finetune_recipe(workspace, "freeze", {"task": "domain", "method": "freeze", "freeze_layers": 1})
    pipeline, _ = run_finetune(workspace, recipe, until="train")
    base = {v.path: v.numpy() for v in load_final_model(RunFolder(workspace / "runs" / "tiny")).weights}
    tuned = {v.path: v.numpy() for v in load_final_model(pipeline.run).weights}
    for path, value in tuned.items():
        same = np.allclose(value, base[path])
        if path.startswith(("block_0/", "token_embedding/", "position_embedding/")):
            assert same, path
    assert not np.allclose(tuned["block_1/mlp_in/kernel"], base["block_1/mlp_in/kernel"])


def test_classification_end_to_end_then_classify_command(workspace, monkeypatch):
    from llmtui.config import recipe_to_toml

    recipe = finetune_recipe(
        workspace,
        "classes",
        {"task": "classification", "train_file": "labels.csv", "method": "full", "pooling": "mean"},
        train={"steps": 60, "lr": 3e-3},
    )
    monkeypatch.chdir(workspace)
    # Through the command line, as a person would run it (the console shows validation accuracy, no perplexity).
    result = runner.invoke(app, ["finetune", str(_write(workspace / "classes.toml", recipe_to_toml(recipe)))])
    assert result.exit_code == 0, result.output
    assert "classification: accuracy" in result.output
    report = json.loads((workspace / "runs" / "classes" / "eval" / "report.json").read_text())
    task = report["task"]
    assert task["kind"] == "classification" and task["labels"] == ["first", "second"]
    # Two disjoint word sets: learnable, though a tiny character-level model still misses a few (chance is 0.5).
    assert task["accuracy"] >= 0.75 and report["loss"] < math.log(2), report
    assert sum(map(sum, task["confusion_matrix"])) == report["examples"] == 32
    result = runner.invoke(app, ["classify", "runs/classes", " ".join(FIRST_WORDS[:4]), "--json"])
    assert result.exit_code == 0, result.output
    probabilities = json.loads(result.output)[0]["probabilities"]
    assert set(probabilities) == {"first", "second"} and math.isclose(sum(probabilities.values()), 1, rel_tol=1e-5)
    assert max(probabilities, key=probabilities.get) == "first"
    # Language-model commands on a classifier are refused clearly.
    for command in (
        ["answer", "runs/classes", "x"],
        ["generate", "runs/classes"],
        ["eval", "runs/classes"],
        ["export", "runs/classes"],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 1 and "classification model" in result.output, (command, result.output)
    assert (workspace / "runs" / "classes" / "eval" / "report.html").exists()


def test_prompt_answer_task_learns_only_from_answer_tokens(workspace, monkeypatch):
    from llmtui.finetune.tasks import encode_prompt_answer
    from llmtui.tokenizers import TextTokenizer

    recipe = finetune_recipe(
        workspace,
        "pairs",
        {"task": "qa", "train_file": "pairs.jsonl", "prompt_template": "{input} = "},
        train={"steps": 30, "lr": 3e-3},
    )
    pipeline, _ = run_finetune(workspace, recipe)
    report = json.loads((pipeline.run.eval_dir / "report.json").read_text())
    assert report["task"]["kind"] == "qa" and 0.0 <= report["task"]["f1"] <= 1.0
    assert report["answers"] and {"input", "target", "prediction"} <= set(report["answers"][0])
    # The weights mark exactly the positions that predict the answer and its end-of-text token.
    tokenizer = TextTokenizer.load(pipeline.run.tokenizer_dir)
    encoded = encode_prompt_answer(tokenizer, [{"input": "ab", "target": "cd"}], recipe.finetune, 16)
    weights = encoded.weights[0]
    prompt_length = len(tokenizer.encode("ab = "))
    assert weights[: prompt_length - 1].sum() == 0 and weights.sum() == len(tokenizer.encode("cd")) + 1
    assert encoded.targets[0][weights > 0][-1] == tokenizer.eos_id
    monkeypatch.chdir(workspace)
    result = runner.invoke(app, ["answer", "runs/pairs", "the model"])
    assert result.exit_code == 0 and result.output.startswith("the model\t"), result.output


def test_bad_task_files_get_clear_errors(workspace, monkeypatch):
    from llmtui.errors import DataError

    (workspace / "broken.jsonl").write_text('{"input": "a", "target": "b"}\n{"input": "c"}\n')
    recipe = finetune_recipe(workspace, "broken", {"task": "qa", "train_file": "broken.jsonl"})
    with pytest.raises(DataError, match=r"broken.jsonl:2: missing field 'target'"):
        run_finetune(workspace, recipe, until="data")
    (workspace / "val.csv").write_text("text,label\nthe model,first\nthe model,third\n")
    recipe = finetune_recipe(
        workspace, "unknown", {"task": "classification", "train_file": "labels.csv", "val_file": "val.csv"}
    )
    with pytest.raises(DataError, match="labels the training examples do not: 'third'"):
        run_finetune(workspace, recipe, until="data")
    monkeypatch.chdir(workspace)
    result = runner.invoke(app, ["finetune", str(_write(workspace / "nobase.toml", '[finetune]\nbase = "nope"\n'))])
    assert result.exit_code == 1 and "no run folder" in result.output


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_tuning_a_classification_finetune_on_macro_f1(workspace):
    from llmtui.tuning import Tuner

    recipe = finetune_recipe(
        workspace,
        "tuned-classes",
        {"task": "classification", "train_file": "labels.csv", "pooling": "mean", "method": "lora"},
        train={"steps": 10},
    )
    data = recipe.model_dump(mode="json")
    data["tune"] = {
        "method": "grid",
        "trials": 2,
        "objective": "macro_f1",
        "direction": "maximize",
        "pruner": "none",
        "space": {"finetune.lora_rank": {"choices": [1, 4]}},
    }
    result = Tuner(recipe_from_dict(data), workspace).run()
    values = {row["params"]["finetune.lora_rank"]: row["value"] for row in result.trials}
    assert set(values) == {1, 4}
    assert all(row["state"] == "complete" for row in result.trials), result.trials
    assert all(0.0 <= v <= 1.0 for v in values.values())
    for row in result.trials:  # each trial's objective is the macro-F1 its evaluation reported
        report = json.loads((Path(row["folder"]) / "eval" / "report.json").read_text())
        assert row["value"] == pytest.approx(report["task"]["macro_f1"])


def test_a_finetune_search_cannot_change_the_base_architecture(workspace):
    from llmtui.errors import RecipeError
    from llmtui.tuning import Tuner

    data = finetune_recipe(workspace, "tuned-arch", {"task": "domain"}).model_dump(mode="json")
    data["tune"] = {"method": "random", "trials": 1, "space": {"model.layers": {"low": 1, "high": 2}}}
    with pytest.raises(RecipeError, match="keeps its base run's architecture"):
        Tuner(recipe_from_dict(data), workspace)


def test_task_objective_needs_a_maximising_direction():
    from llmtui.errors import RecipeError

    with pytest.raises(RecipeError, match="set tune.direction = 'maximize'"):
        recipe_from_dict({"tune": {"objective": "bleu"}})


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["domain", "sentiment", "qa", "translation"])
def test_each_finetune_recipe_runs_end_to_end_on_a_tiny_base(workspace, tmp_path, name):
    """The shipped recipes (and their example files) run as written, shrunk to a few steps on the tiny base."""
    from llmtui.config import load_recipe

    overrides = [
        f"finetune.base={workspace / 'runs' / 'tiny'}",
        f"run.out_dir={tmp_path}",
        "train.steps=4",
        "train.jit_compile=false",
        "train.eval_every=2",
        "train.checkpoint_every=2",
        "train.batch_size=4",
        "train.eval_batches=1",
        "eval.max_batches=2",
        "generate.max_tokens=4",
        "finetune.max_answer_tokens=4",
        "train.warmup_steps=1",
    ]
    recipe = load_recipe(REPO / "recipes" / f"finetune-{name}.toml", overrides)
    if recipe.finetune.method == "freeze":  # the tiny base has two layers
        recipe = load_recipe(REPO / "recipes" / f"finetune-{name}.toml", overrides + ["finetune.freeze_layers=1"])
    if recipe.finetune.method == "lora":
        recipe = load_recipe(REPO / "recipes" / f"finetune-{name}.toml", overrides + ["finetune.lora_rank=4"])
    pipeline, _ = run_finetune(REPO, recipe)
    report = json.loads((pipeline.run.eval_dir / "report.json").read_text())
    assert ("finetune" in report) if name == "domain" else report["task"]["kind"] == recipe.finetune.task
    assert (pipeline.run.eval_dir / "report.html").exists() and pipeline.run.final_model_path.exists()
