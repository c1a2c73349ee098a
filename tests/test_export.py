"""`llmtui export`: each format is loaded in a fresh Python process and must give the trained model's logits.

One tiny gpt run (byte-level BPE, so keras-hub's GPT2Tokenizer applies), one tiny llama run (grouped-query
heads, untied output, a unigram vocabulary for LlamaTokenizer) and one lstm run are trained once for the
module; the mapping onto keras-hub backbones is also checked on untrained models for the variants the runs
do not cover.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llmtui.cli.app import app
from llmtui.config.recipe import ModelConfig
from tests.helpers import train_tiny_runs

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
CHECK_TEXT = "the model reads text and learns"

RUNS = {
    "gpt": {"tokenizer": {"kind": "bpe", "vocab_size": 300}, "model": {"arch": "gpt"}},
    "llama": {
        "tokenizer": {"kind": "unigram", "vocab_size": 120},
        "model": {"arch": "llama", "heads": 4, "kv_heads": 2, "tie_embeddings": False},
    },
    "lstm": {"model": {"arch": "lstm"}},
}

# Run in a fresh interpreter: load each export the way its summary says and save the logits it gives.
LOAD_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
import keras
import keras_hub
import tensorflow as tf
import llmtui.export.custom_objects  # noqa: F401
report = {"keras_backend": keras.backend.backend()}
for root in sys.argv[1:]:
    job = json.load(open(f"{root}/job.json"))
    ids, found = np.load(f"{root}/ids.npy"), {}
    model = keras.saving.load_model(f"{root}/keras/model.keras", safe_mode=True)
    np.save(f"{root}/keras.npy", keras.ops.convert_to_numpy(model(ids)))
    served = tf.saved_model.load(f"{root}/savedmodel")
    np.save(f"{root}/savedmodel.npy", served.serve(tf.constant(ids, tf.int32)).numpy())
    if job["preset"]:
        backbone = keras_hub.models.Backbone.from_preset(f"{root}/preset")
        hidden = backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)})
        np.save(f"{root}/preset.npy", keras.ops.convert_to_numpy(backbone.token_embedding(hidden, reverse=True)))
        tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(f"{root}/preset")
        found = {"backbone": type(backbone).__name__, "tokenizer": type(tokenizer).__name__,
                 "tokenizer_ids": [int(i) for i in np.asarray(tokenizer(job["text"])).reshape(-1)]}
    if job.get("export_again"):  # the SavedModel export on this process's backend (jax2tf on JAX)
        from llmtui.export import export_run
        from llmtui.runfolder import RunFolder
        export_run(RunFolder(job["export_again"]), "savedmodel", out=Path(root) / "again")
        again = tf.saved_model.load(f"{root}/again")
        np.save(f"{root}/again.npy", again.serve(tf.constant(ids, tf.int32)).numpy())
    report[root] = found
print(json.dumps(report))
"""


def _reference(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """Fixed ids (2, 12) and the run's own model's logits on them, from this process."""
    from llmtui.runfolder import RunFolder, load_final_model

    model = load_final_model(RunFolder(run))
    ids = np.random.default_rng(7).integers(0, model.output_shape[-1], size=(2, 12)).astype("int32")
    return ids, np.asarray(model(ids, training=False))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """Every run exported with `llmtui export RUN --format all`, then loaded in one fresh Python process
    (on JAX when it is installed: the exports must not depend on the backend that trained them)."""
    base = tmp_path_factory.mktemp("export")
    runs = train_tiny_runs(base, RUNS)
    outputs, references = {}, {}
    for arch, run in runs.items():
        out = base / "exports" / arch
        result = runner.invoke(app, ["export", str(run), "--format", "all", "--out", str(out)])
        assert result.exit_code == 0, result.output + result.stderr
        outputs[arch] = result.output
        ids, references[arch] = _reference(run)
        np.save(out / "ids.npy", ids)
        job = {"preset": arch != "lstm", "text": CHECK_TEXT, "export_again": str(run) if arch == "gpt" else None}
        (out / "job.json").write_text(json.dumps(job), encoding="utf-8")
    backend = "jax" if importlib.util.find_spec("jax") else "tensorflow"
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    roots = [str(base / "exports" / arch) for arch in runs]
    done = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, *roots], capture_output=True, text=True, env=env, cwd=base, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "runs": runs,
        "outputs": outputs,
        "references": references,
        "backend": backend,
        "loaded": {arch: report[root] for arch, root in zip(runs, roots)},
        "keras_backend": report["keras_backend"],
        "dirs": {arch: base / "exports" / arch for arch in runs},
    }


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_transformer_exports_load_in_a_fresh_process_with_the_same_logits(exported, arch):
    out, reference = exported["dirs"][arch], exported["references"][arch]
    for fmt in ("keras", "preset", "savedmodel"):
        assert f"{fmt}: {out / fmt}" in exported["outputs"][arch]
        np.testing.assert_allclose(np.load(out / f"{fmt}.npy"), reference, atol=1e-4, err_msg=fmt)
    assert exported["keras_backend"] == exported["backend"]  # trained on TensorFlow, loaded on JAX
    loaded = exported["loaded"][arch]
    assert loaded["backbone"] == {"gpt": "GPT2Backbone", "llama": "LlamaBackbone"}[arch]
    assert loaded["tokenizer"] == {"gpt": "GPT2Tokenizer", "llama": "LlamaTokenizer"}[arch]
    from llmtui.tokenizers import TextTokenizer

    assert loaded["tokenizer_ids"] == TextTokenizer.load(exported["runs"][arch] / "tokenizer").encode(CHECK_TEXT)
    metadata = json.loads((out / "preset" / "llmtui_export.json").read_text(encoding="utf-8"))
    assert metadata["arch"] == arch and metadata["max_logit_diff"] <= 1e-4


def test_savedmodel_export_also_works_on_the_other_backend(exported):
    """The fresh process (JAX when installed) exported the gpt run again: jax2tf with a free time axis
    bounded by the context, which learned positions need."""
    out = exported["dirs"]["gpt"]
    np.testing.assert_allclose(np.load(out / "again.npy"), exported["references"]["gpt"], atol=1e-4)
    metadata = json.loads((out / "again" / "llmtui_export.json").read_text(encoding="utf-8"))
    assert metadata["backend"] == exported["backend"]


def test_lstm_exports_keras_and_savedmodel_and_says_why_not_a_preset(exported):
    out, reference = exported["dirs"]["lstm"], exported["references"]["lstm"]
    assert "preset: skipped" in exported["outputs"]["lstm"] and "recurrent" in exported["outputs"]["lstm"]
    assert not (out / "preset").exists()
    for fmt in ("keras", "savedmodel"):
        np.testing.assert_allclose(np.load(out / f"{fmt}.npy"), reference, atol=1e-4, err_msg=fmt)
        assert (out / fmt / "tokenizer.json").exists()


def test_preset_of_a_recurrent_run_is_a_clear_error(exported):
    result = runner.invoke(app, ["export", str(exported["runs"]["lstm"]), "--format", "preset"])
    assert result.exit_code == 1
    assert "keras-hub has no recurrent" in result.stderr and "--format keras" in result.stderr
    assert "Traceback" not in result.stderr


def test_default_folder_refuses_to_overwrite_unless_forced(exported):
    run = exported["runs"]["lstm"]
    first = runner.invoke(app, ["export", str(run)])
    assert first.exit_code == 0, first.stderr
    target = run / "export" / "keras"
    assert (target / "model.keras").exists() and (target / "tokenizer.json").exists()
    (target / "stale.txt").write_text("old", encoding="utf-8")
    again = runner.invoke(app, ["export", str(run)])
    assert again.exit_code == 1 and "not empty" in again.stderr and "--force" in again.stderr
    forced = runner.invoke(app, ["export", str(run), "--force"])
    assert forced.exit_code == 0, forced.stderr
    assert (target / "model.keras").exists() and not (target / "stale.txt").exists()


def test_bad_requests_are_clear_errors(exported, tmp_path):
    runs = exported["runs"]
    unknown = runner.invoke(app, ["export", str(runs["lstm"]), "--format", "onnx"])
    assert unknown.exit_code == 1 and "unknown export format 'onnx'" in unknown.stderr
    into_run = runner.invoke(app, ["export", str(runs["lstm"]), "--out", str(runs["lstm"] / "model"), "--force"])
    assert into_run.exit_code == 1 and "which the run needs" in into_run.stderr
    assert (runs["lstm"] / "model" / "final.keras").exists()
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    (untrained / "recipe.toml").write_text((runs["lstm"] / "recipe.toml").read_text(encoding="utf-8"), encoding="utf-8")
    missing = runner.invoke(app, ["export", str(untrained)])
    assert missing.exit_code == 1 and "no trained model" in missing.stderr and "llmtui run" in missing.stderr
    nowhere = runner.invoke(app, ["export", str(tmp_path / "nope")])
    assert nowhere.exit_code == 1 and "no run folder" in nowhere.stderr


def test_preset_problems_name_the_reason():
    from llmtui.export.preset import preset_problem

    assert preset_problem(ModelConfig(arch="gpt", dim=32, heads=2)) is None
    assert preset_problem(ModelConfig(arch="llama", dim=32, heads=2, tie_embeddings=False)) is None
    assert "GPT2Backbone always ties" in preset_problem(ModelConfig(arch="gpt", dim=32, heads=2, tie_embeddings=False))
    assert "recurrent" in preset_problem(ModelConfig(arch="gru", dim=32))
    projected = ModelConfig(
        arch="llama", dim=32, heads=2, embedding="pretrained", pretrained_path="v.txt", projection=True
    )
    assert "projection" in preset_problem(projected)


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(arch="gpt", layers=2, dim=32, heads=4, context=16, embedding="onehot"),
        ModelConfig(arch="llama", layers=2, dim=32, heads=4, kv_heads=1, context=16, rope_base=500.0),
    ],
    ids=["gpt-onehot", "llama-tied-mqa"],
)
def test_backbone_mapping_matches_untrained_variants(config):
    """Variants the trained runs skip: a one-hot token encoding, tied llama with one key/value head and
    another rotary base (random weights, so every mapped matrix matters)."""
    import keras

    from llmtui.export.preset import backbone_logits, gpt2_backbone, llama_backbone
    from llmtui.models import build_model

    model = build_model(config, vocab_size=50, seed=3)
    for variable in model.weights:  # norms start at exactly 1 and 0; move them so a mix-up would show
        if variable.path.endswith(("gamma", "beta", "scale")):
            variable.assign(keras.random.normal(variable.shape, seed=1) * 0.1 + variable)
    ids = np.random.default_rng(0).integers(0, 50, size=(2, 16)).astype("int32")
    backbone = (gpt2_backbone if config.arch == "gpt" else llama_backbone)(model, config)
    np.testing.assert_allclose(backbone_logits(backbone, ids), np.asarray(model(ids)), atol=1e-5)


def test_keras_hub_tokenizer_needs_a_compatible_vocabulary():
    from llmtui.config.recipe import TokenizerConfig
    from llmtui.export.preset import keras_hub_tokenizer
    from llmtui.tokenizers import train_tokenizer

    chars = train_tokenizer(TokenizerConfig(kind="char"), ["some text to learn characters from"])
    theirs, why_not = keras_hub_tokenizer("gpt", chars)
    assert theirs is None and "byte-level BPE" in why_not and "'char'" in why_not
    theirs, why_not = keras_hub_tokenizer("llama", chars)
    assert theirs is None and "SentencePiece" in why_not


def test_safe_mode_scan_finds_lambdas():
    from llmtui.export.keras_file import scan_config

    config = {
        "class_name": "Functional",
        "config": {
            "layers": [
                {"class_name": "Lambda", "config": {"name": "shift", "function": {"class_name": "__lambda__"}}},
                {"class_name": "DecoderBlock", "registered_name": "llmtui>DecoderBlock", "config": {}},
            ]
        },
    }
    unsafe, ours = scan_config(config)
    assert "Lambda layer shift" in unsafe and any("lambda" in part for part in unsafe[1:])
    assert ours == ["llmtui>DecoderBlock"]


def test_gpt_without_biases_exports_zeros_where_gpt2_has_biases(tmp_path):
    """`model.bias = false` (nanoGPT's default): GPT-2's formats always hold biases and LayerNorm offsets,
    so the export writes zeros there, and Transformers and keras-hub compute our logits from them."""
    import json

    import keras

    from llmtui.config import recipe_from_dict
    from llmtui.export.hf import cross_framework_atol, hf_config, hf_state_dict, transformers_logits, write_safetensors
    from llmtui.export.preset import backbone_logits, gpt2_backbone
    from llmtui.models import build_model
    from llmtui.tokenizers import train_tokenizer

    tokenizer = train_tokenizer(recipe_from_dict({"tokenizer": {"kind": "char"}}).tokenizer, iter(["a bias-free gpt"]))
    config = ModelConfig(arch="gpt", layers=2, dim=32, heads=4, context=16, bias=False)
    model = build_model(config, vocab_size=tokenizer.vocab_size, seed=3)
    assert not [v.path for v in model.weights if v.path.endswith(("bias", "beta"))]
    for variable in model.weights:
        if variable.path.endswith("gamma"):
            variable.assign(keras.random.normal(variable.shape, seed=1) * 0.1 + variable)
    ids = np.random.default_rng(0).integers(0, tokenizer.vocab_size, size=(2, 16)).astype("int32")
    ours = np.asarray(model(ids))

    weights = hf_state_dict(model, config)
    offsets = [name for name in weights if name.endswith(".bias")]
    assert len(offsets) == 2 * 6 + 1 and all(not weights[name].any() for name in offsets)
    (tmp_path / "config.json").write_text(json.dumps(hf_config(model, config, tokenizer)))
    write_safetensors(weights, tmp_path / "model.safetensors")
    theirs = transformers_logits(tmp_path, ids)
    if theirs is not None:  # torch and transformers are test dependencies; None only without them
        np.testing.assert_allclose(theirs, ours, atol=cross_framework_atol(ours, 1e-5))
    np.testing.assert_allclose(backbone_logits(gpt2_backbone(model, config), ids), ours, atol=1e-5)
