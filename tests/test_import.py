"""Pretrained bases in: Hugging Face folders and keras-hub presets built in the test (random weights, a tiny
vocabulary trained here), imported with `llmtui import` or as `[finetune] base`, must give the original's
logits (within 1e-4) and token ids; families our blocks cannot express are refused with the reason.

Nothing is downloaded: an hf:// handle is tried with the hub offline and must fail with a clear error.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llmtui.cli.app import app
from llmtui.config import recipe_from_dict
from tests.helpers import llmtui_env, run_llmtui, tiny_recipe_dict, write_corpus

runner = CliRunner()
TEXT = "the model reads text and learns to predict"
ATOL = 1e-4
needs_torch = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("torch", "transformers")),
    reason="needs the test extra: torch (CPU) and transformers",
)

# Run in a fresh interpreter: save small random Transformers models the way their users do, with a byte-level
# BPE tokenizer and a chat template, and the logits and token ids the originals give.
BUILD_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM)
from transformers.utils import logging
logging.set_verbosity_error()
logging.disable_progress_bar()
out, text = Path(sys.argv[1]), sys.argv[2]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator([text, "a small network trained on a small corpus"] * 20, trainers.BpeTrainer(
    vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False))
vocab = tok.get_vocab_size()
common = dict(vocab_size=vocab, bos_token_id=0, eos_token_id=0, initializer_range=0.3)
torch.manual_seed(0)
built = {
    "gpt2": GPT2LMHeadModel(GPT2Config(n_positions=64, n_embd=32, n_layer=2, n_head=4, **common)),
    "llama": LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
        rope_theta=500000.0, tie_word_embeddings=False, **common)),
    "mistral": MistralForCausalLM(MistralConfig(hidden_size=32, intermediate_size=96, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64, sliding_window=None,
        tie_word_embeddings=True, **common)),
    "qwen2": Qwen2ForCausalLM(Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, **common)),
}
ids = np.random.default_rng(3).integers(0, vocab, size=(2, 10))
for name, model in built.items():
    with torch.no_grad():  # visible norm scales and biases, so a swapped or missing one shows in the logits
        for param_name, param in model.named_parameters():
            if param.ndim == 1:
                param.copy_(1 + 0.3 * torch.randn_like(param) if "norm" in param_name or "ln_" in param_name
                            else 0.3 * torch.randn_like(param))
    folder = out / name
    model.save_pretrained(folder)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    fast.chat_template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|endoftext|>{% endfor %}"
    fast.save_pretrained(folder)
    with torch.no_grad():
        np.save(folder / "reference_logits.npy", model.eval()(torch.as_tensor(ids)).logits.numpy())
    np.save(folder / "reference_ids.npy", ids)
    (folder / "reference_text_ids.json").write_text(json.dumps(fast(text, add_special_tokens=False).input_ids))
print("built")
"""


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory) -> Path:
    if any(importlib.util.find_spec(name) is None for name in ("torch", "transformers")):
        pytest.skip("needs the test extra: torch (CPU) and transformers")
    base = tmp_path_factory.mktemp("hf_bases")
    done = subprocess.run(
        [sys.executable, "-c", BUILD_SCRIPT, str(base), TEXT],
        capture_output=True,
        text=True,
        env=llmtui_env(),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return base


def _our_logits(run: Path, ids) -> np.ndarray:
    from llmtui.runfolder import RunFolder, load_final_model

    return np.asarray(load_final_model(RunFolder(run))(ids.astype("int32"), training=False))


@needs_torch
@pytest.mark.parametrize("family,arch", [("gpt2", "gpt"), ("llama", "llama"), ("mistral", "llama")])
def test_hf_folder_imports_with_the_originals_logits_and_tokenizer(hf_folders, tmp_path, family, arch):
    from llmtui.config import load_recipe
    from llmtui.tokenizers import TextTokenizer

    folder = hf_folders / family
    result = runner.invoke(app, ["import", str(folder), "--out-dir", str(tmp_path / "runs"), "--name", family])
    assert result.exit_code == 0, result.output
    assert "checked: logits within" in result.output
    run = tmp_path / "runs" / family
    assert load_recipe(run / "recipe.toml").model.arch == arch
    np.testing.assert_allclose(
        _our_logits(run, np.load(folder / "reference_ids.npy")),
        np.load(folder / "reference_logits.npy"),
        atol=ATOL,
        rtol=0,
    )
    tokenizer = TextTokenizer.load(run / "tokenizer")
    assert tokenizer.encode(TEXT) == json.loads((folder / "reference_text_ids.json").read_text())
    assert tokenizer.eos_id == 0 and tokenizer.special_names["eos"] == "<|endoftext|>"
    assert "<|{{ m['role'] }}|>" in (run / "tokenizer" / "chat_template.jinja").read_text()
    assert not any(p.name.endswith(".importing") for p in (tmp_path / "runs").iterdir())


@needs_torch
def test_a_family_our_blocks_cannot_express_is_refused_and_leaves_no_run(hf_folders, tmp_path):
    done = run_llmtui("import", str(hf_folders / "qwen2"), "--out-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "qwen2" in done.stderr and "biases" in done.stderr
    assert not (tmp_path / "runs" / "qwen2").exists()


def test_a_hub_handle_offline_is_a_clear_error(tmp_path):
    done = run_llmtui(
        "import",
        "hf://nobody/no-such-model",
        "--out-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
        env=llmtui_env(HF_HUB_OFFLINE="1"),
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "could not download hf://nobody/no-such-model" in done.stderr and "local path" in done.stderr


def test_a_folder_without_a_model_config_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    done = run_llmtui("import", str(tmp_path / "empty"), cwd=tmp_path)
    assert done.returncode != 0 and "has no config.json" in done.stderr


def _randomize(backbone, seed: int) -> None:
    """Every weight random (norm scales around 1), so a mapping mistake shows in the logits."""
    rng = np.random.default_rng(seed)
    for weight in backbone.weights:
        shape = tuple(weight.shape)
        value = rng.normal(0, 0.3, shape)
        if any(key in weight.path for key in ("norm", "gamma", "scale")):
            value = 1 + value
        weight.assign(value.astype("float32"))


def _backbone_logits(backbone, ids):
    import keras

    hidden = backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)}, training=False)
    return keras.ops.convert_to_numpy(backbone.token_embedding(hidden, reverse=True))


@pytest.fixture(scope="module")
def presets(tmp_path_factory) -> dict:
    """A random GPT2Backbone with a GPT2Tokenizer, and a LlamaBackbone (grouped-query, untied, eps 1e-5) with a
    SentencePiece unigram LlamaTokenizer, saved as keras-hub presets; their logits and ids on fixed input."""
    import io

    import keras_hub
    import sentencepiece as spm
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    base = tmp_path_factory.mktemp("presets")
    texts = [TEXT, "a small network trained on a small corpus"] * 20
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    merges = [" ".join(m) if not isinstance(m, str) else m for m in json.loads(bpe.to_str())["model"]["merges"]]
    gpt_tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=bpe.get_vocab(), merges=merges)
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=proto,
        model_type="unigram",
        vocab_size=40,
        pad_id=-1,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        minloglevel=2,
        hard_vocab_limit=False,
    )
    llama_tokenizer = keras_hub.models.LlamaTokenizer(proto=proto.getvalue())
    proto = io.BytesIO()  # Llama 2's kind of vocabulary: SentencePiece BPE with bytes for unknown characters
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts + ["café 東京 12"]),
        model_writer=proto,
        model_type="bpe",
        vocab_size=300,
        pad_id=-1,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        minloglevel=2,
        hard_vocab_limit=False,
        byte_fallback=True,
    )
    llama_bpe_tokenizer = keras_hub.models.LlamaTokenizer(proto=proto.getvalue())
    built = {
        "gpt2": (
            keras_hub.models.GPT2Backbone(
                vocabulary_size=bpe.get_vocab_size(),
                num_layers=2,
                num_heads=4,
                hidden_dim=32,
                intermediate_dim=64,
                dropout=0.0,
                max_sequence_length=32,
            ),
            gpt_tokenizer,
        ),
        "llama": (
            keras_hub.models.LlamaBackbone(
                vocabulary_size=llama_tokenizer.vocabulary_size(),
                num_layers=2,
                num_query_heads=4,
                num_key_value_heads=2,
                hidden_dim=32,
                intermediate_dim=64,
                rope_max_wavelength=1000.0,
                layer_norm_epsilon=1e-5,
                tie_word_embeddings=False,
            ),
            llama_tokenizer,
        ),
        "llama_bpe": (
            keras_hub.models.LlamaBackbone(
                vocabulary_size=llama_bpe_tokenizer.vocabulary_size(),
                num_layers=1,
                num_query_heads=2,
                num_key_value_heads=2,
                hidden_dim=32,
                intermediate_dim=64,
            ),
            llama_bpe_tokenizer,
        ),
    }
    found = {}
    for i, (name, (backbone, tokenizer)) in enumerate(built.items()):
        _randomize(backbone, i)
        folder = base / name
        backbone.save_to_preset(str(folder))
        tokenizer.save_to_preset(str(folder))
        ids = np.random.default_rng(5).integers(0, backbone.vocabulary_size, size=(2, 10)).astype("int32")
        found[name] = {
            "folder": folder,
            "ids": ids,
            "logits": _backbone_logits(backbone, ids),
            "text_ids": [int(t) for t in np.asarray(tokenizer(TEXT)).reshape(-1)],
        }
    return found


@pytest.mark.parametrize("family", ["gpt2", "llama", "llama_bpe"])
def test_keras_hub_preset_imports_with_the_backbones_logits_and_tokenizer(presets, tmp_path, family):
    from llmtui.tokenizers import TextTokenizer

    preset = presets[family]
    result = runner.invoke(app, ["import", str(preset["folder"]), "--out-dir", str(tmp_path), "--name", family])
    assert result.exit_code == 0, result.output
    run = tmp_path / family
    np.testing.assert_allclose(_our_logits(run, preset["ids"]), preset["logits"], atol=ATOL, rtol=0)
    tokenizer = TextTokenizer.load(run / "tokenizer")
    assert tokenizer.encode(TEXT) == preset["text_ids"]
    assert tokenizer.eos_id is not None
    if family == "llama_bpe":  # characters outside the vocabulary come back through their bytes
        assert tokenizer.decode(tokenizer.encode("café 東京 zebra 9")) == "café 東京 zebra 9"


@needs_torch
def test_finetune_from_a_pretrained_base_then_generate_and_export(hf_folders, tmp_path):
    """`[finetune] base` = a Transformers folder: imported once (reused by a second fine-tune), LoRA domain
    training runs, the run keeps the base's tokenizer and chat template, and it generates and exports."""
    from llmtui.pipeline import pipeline_for
    from llmtui.tokenizers import TextTokenizer

    corpus = write_corpus(tmp_path / "corpus", files=3, lines=30)
    recipe = tiny_recipe_dict(
        corpus, tmp_path / "runs", finetune={"base": str(hf_folders / "llama"), "task": "domain", "method": "lora"}
    )
    recipe["run"]["name"] = "ft"
    recipe["train"].update(steps=4, eval_every=1000, checkpoint_every=1000, jit_compile=False)
    pipeline_for(recipe_from_dict(recipe), base_dir=tmp_path).execute()
    run = tmp_path / "runs" / "ft"
    imported = list((tmp_path / "runs" / "imported").iterdir())
    assert len(imported) == 1 and (imported[0] / "model" / "import.json").is_file()
    report = json.loads((run / "eval" / "report.json").read_text())
    assert "domain_val" in report["finetune"] and "base_val" not in report["finetune"]
    assert TextTokenizer.load(run / "tokenizer").special_names["eos"] == "<|endoftext|>"
    assert (run / "tokenizer" / "chat_template.jinja").is_file()
    stamp = (imported[0] / "model" / "final.keras").stat().st_mtime_ns
    recipe["run"]["name"] = "ft2"
    pipeline_for(recipe_from_dict(recipe), base_dir=tmp_path).execute(until="model")
    assert (imported[0] / "model" / "final.keras").stat().st_mtime_ns == stamp  # reused, not imported again
    result = runner.invoke(app, ["generate", str(run), "-p", "the model", "--max-tokens", "4", "--temperature", "0"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export", str(run), "--format", "hf", "--out", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|endoftext|>" and "<|{{ m['role'] }}|>" in config["chat_template"]
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["rms_norm_eps"] == pytest.approx(1e-5)


@needs_torch
def test_preflight_refuses_a_base_too_large_before_reading_its_weights(hf_folders, tmp_path):
    recipe = tmp_path / "ft.toml"
    recipe.write_text(
        f'[run]\nname = "big"\n[finetune]\nbase = "{hf_folders / "llama"}"\nmethod = "full"\n'
        "[train]\nmax_memory_gb = 0.000001\n",
        encoding="utf-8",
    )
    summary = run_llmtui("model", "summary", str(recipe), cwd=tmp_path)
    assert summary.returncode == 1 and "pretrained base" in summary.stdout and "lora" in summary.stdout
    vocab = json.loads((hf_folders / "llama" / "config.json").read_text())["vocab_size"]
    assert re.search(rf"vocabulary\s+│\s+{vocab:,}\s+│ the base's config \(llama, hf\)", summary.stdout)
    done = run_llmtui("finetune", str(recipe), cwd=tmp_path)
    assert done.returncode != 0 and "pre-flight check for the pretrained base" in done.stderr
    assert "finetune.method = 'lora'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "runs" / "imported").exists()


@needs_torch
def test_an_imported_run_is_evaluated_on_text_files_and_says_it_has_no_validation_text(hf_folders, tmp_path):
    result = runner.invoke(app, ["import", str(hf_folders / "gpt2"), "--out-dir", str(tmp_path), "--name", "g"])
    assert result.exit_code == 0, result.output
    done = run_llmtui("eval", str(tmp_path / "g"), cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "no validation text of its own" in done.stderr and "--data FILE" in done.stderr
    text = tmp_path / "t.txt"
    text.write_text(TEXT + "\n" + TEXT + "\n", encoding="utf-8")
    result = runner.invoke(app, ["eval", str(tmp_path / "g"), "--data", str(text)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "g" / "eval" / "report.json").read_text())
    assert report["files"][str(text)]["tokens"] > 0 and "loss" not in report
