"""The stages as objects: their fingerprints keep the scheme that existing run folders recorded in their
manifests, so a folder made by an earlier llmtui does not redo its stages; the fine-tuning stage lists.

The expected fingerprints are written out here as the manifest (format 2) has them, not computed through the
stage classes: a change to a stage's inputs that would make every existing run folder start over fails here.
No model is built: fingerprints only read recipe sections and file sizes and digests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llmtui.config import recipe_from_dict
from llmtui.config.loader import recipe_to_toml
from llmtui.data.sources import source_fingerprint
from llmtui.pipeline import STAGES, Pipeline, pipeline_for
from llmtui.runfolder import file_digest, fingerprint
from tests.helpers import tiny_recipe_dict

EXAMPLE_FIELDS = (
    "task",
    "train_file",
    "val_file",
    "val_fraction",
    "text_field",
    "label_field",
    "labels",
    "pooling",
    "input_field",
    "target_field",
    "prompt_template",
    "max_answer_tokens",
    "messages_field",
)


def stage_fingerprints(pipeline: Pipeline) -> dict[str, str]:
    """Each stage's fingerprint as the runner chains them (each with the one before it)."""
    found: dict[str, str] = {}
    upstream = None
    for stage in pipeline.stages:
        upstream = found[stage.name] = fingerprint(*stage.inputs(pipeline.context, upstream))
    return found


def data_fingerprint(recipe, base_dir: Path) -> str:
    evals = [
        [str(p), p.stat().st_size, p.stat().st_mtime_ns]
        for p in (base_dir / f for f in recipe.data.eval_files)
        if p.is_file()
    ]
    section = recipe.data.model_dump(mode="json", exclude={"engine", "engine_address", "engine_partition_mb"})
    return fingerprint(
        "data", section, recipe.run.seed, [source_fingerprint(s, base_dir) for s in recipe.data.sources], evals
    )


def test_training_from_scratch_keeps_its_fingerprints(tmp_path, corpus):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("2 4\nthe 0.1 0.2 0.3 0.4\nend 0.5 0.6 0.7 0.8\n", encoding="utf-8")
    (tmp_path / "held.txt").write_text("held-out text\n", encoding="utf-8")
    for model in ({}, {"embedding": "pretrained", "pretrained_path": "vectors.txt"}):
        recipe = recipe_from_dict(
            tiny_recipe_dict(corpus, tmp_path / "runs", model=model, data={"eval_files": ["held.txt", "missing.txt"]})
        )
        pipeline = Pipeline(recipe, base_dir=tmp_path)
        assert [stage.name for stage in pipeline.stages] == list(STAGES)
        expected = {"data": data_fingerprint(recipe, tmp_path)}
        for name in STAGES[1:]:
            extra = [recipe.run.seed, pipeline.backend] if name in ("model", "train") else []
            if extra and model:
                extra.append([vectors.stat().st_size, vectors.stat().st_mtime_ns])
            section = getattr(recipe, name).model_dump(mode="json")
            expected[name] = fingerprint(name, section, expected[STAGES[STAGES.index(name) - 1]], extra)
        assert stage_fingerprints(pipeline) == expected


@pytest.fixture
def base_run(tmp_path, corpus) -> Path:
    """A run folder as fine-tuning reads it before any stage: its recipe, a model file and a tokenizer file
    (fingerprints only digest the two files)."""
    base = tmp_path / "runs" / "tiny"
    (base / "model").mkdir(parents=True)
    (base / "tokenizer").mkdir()
    (base / "model" / "final.keras").write_bytes(b"model bytes")
    (base / "tokenizer" / "tokenizer.json").write_text('{"kind": "char"}', encoding="utf-8")
    base_recipe = recipe_from_dict(tiny_recipe_dict(corpus, tmp_path / "runs", model={"dim": 48, "heads": 3}))
    (base / "recipe.toml").write_text(recipe_to_toml(base_recipe), encoding="utf-8")
    return base


@pytest.mark.parametrize("task", ["domain", "classification", "qa"])
def test_fine_tuning_keeps_its_fingerprints_and_stage_list(tmp_path, corpus, base_run, task):
    examples = tmp_path / "examples.jsonl"
    examples.write_text('{"text": "good", "label": "pos"}\n', encoding="utf-8")
    finetune = {"base": "tiny", "task": task}
    if task != "domain":
        finetune["train_file"] = "examples.jsonl"
    recipe = recipe_from_dict(tiny_recipe_dict(corpus, tmp_path / "runs", finetune=finetune, run={"name": "ft"}))
    pipeline = pipeline_for(recipe, base_dir=tmp_path)
    r = pipeline.recipe
    assert r.model.dim == 48  # the base's architecture, not the recipe's
    names = [stage.name for stage in pipeline.stages]
    assert names == (list(STAGES) if task == "domain" else list(STAGES[:-1]))
    digest = fingerprint(
        file_digest(base_run / "model" / "final.keras"), file_digest(base_run / "tokenizer" / "tokenizer.json")
    )
    section = r.finetune.model_dump(mode="json")
    if task == "domain":
        expected = {"data": fingerprint(data_fingerprint(r, tmp_path), "domain")}
    else:
        stats = [[str(examples), examples.stat().st_size, examples.stat().st_mtime_ns]]
        expected = {"data": fingerprint("finetune-data", {k: section[k] for k in EXAMPLE_FIELDS}, r.run.seed, stats)}
    expected["tokenizer"] = fingerprint("finetune", "tokenizer", digest, expected["data"])
    for name in names[2:]:
        own = {} if name == "model" else getattr(r, name).model_dump(mode="json")
        extra = [r.run.seed, pipeline.backend] if name in ("model", "train") else []
        expected[name] = fingerprint(
            "finetune", name, own, section, digest, expected[names[names.index(name) - 1]], extra
        )
    assert stage_fingerprints(pipeline) == expected


def test_a_fine_tune_named_like_its_base_is_refused(tmp_path, corpus, base_run):
    from llmtui.errors import RecipeError

    recipe = recipe_from_dict(tiny_recipe_dict(corpus, tmp_path / "runs", finetune={"base": str(base_run)}))
    with pytest.raises(RecipeError, match="would overwrite its base"):
        pipeline_for(recipe, base_dir=tmp_path)


def test_the_stages_read_the_token_meta_through_the_typed_reader(tmp_path, tiny_recipe):
    """The vocabulary and token counts the stages use come from `TokenMeta`: a damaged tokenizer/tokens.json
    is one RunFolderError naming the file, not a KeyError or ValueError from inside a stage."""
    from llmtui.errors import RunFolderError
    from llmtui.runfolder import SplitTokens, TokenMeta, write_token_meta
    from llmtui.stages.pretraining import token_inputs

    context = Pipeline(tiny_recipe, base_dir=tmp_path).context
    folder = context.run.tokenizer_dir
    folder.mkdir(parents=True)
    write_token_meta(folder, TokenMeta(40, "char", SplitTokens(300, 330, "uint16"), SplitTokens(60, 90, "uint16")))
    for split, count in (("train", 300), ("val", 60)):
        (folder / f"{split}.bin").write_bytes(bytes(2 * count))
    assert context.vocab_size() == 40
    inputs = token_inputs(context)
    assert inputs.vocab_size == 40 and inputs.bytes_per_token == pytest.approx(1.5) and len(inputs.val_tokens) == 60
    context.run.token_meta_path.write_text('{"vocab_size": "many"}', encoding="utf-8")
    with pytest.raises(RunFolderError, match="damaged") as caught:
        context.vocab_size()
    assert str(context.run.token_meta_path) in caught.value.message


def test_the_control_given_at_construction_is_asked_between_steps_and_stops_training(tmp_path, corpus):
    """What the wizard's control file and the tuner's time budget use: asked after every optimizer step, told
    where to report (a pause says so), and True stops training with a checkpoint."""
    from llmtui.events import EventRecorder, Message
    from llmtui.training.trainer import TrainingInterrupted

    class StopAtThirdAsk:
        asked = 0

        def stop_requested(self, emit) -> bool:
            self.asked += 1
            emit(Message(f"asked {self.asked}"))
            return self.asked >= 3

    recipe = recipe_from_dict(tiny_recipe_dict(corpus, tmp_path / "runs", train={"jit_compile": False}))
    recorder = EventRecorder()
    with pytest.raises(TrainingInterrupted) as stopped:
        Pipeline(recipe, base_dir=tmp_path, sinks=[recorder], control=StopAtThirdAsk()).execute()
    assert stopped.value.step == 3 and stopped.value.checkpoint.name == "step_0000003"
    assert [e.text for e in recorder.of_type(Message) if e.text.startswith("asked")] == [
        "asked 1",
        "asked 2",
        "asked 3",
    ]
