"""`llmtui export --format hf|gguf`: the exports load in Hugging Face Transformers (a fresh Python process on
PyTorch) and give the run's logits, greedy continuations, token ids and chat rendering.

One tiny gpt run (tied embedding) and one tiny llama run (grouped-query heads, untied output) are trained once
for the module, both with a byte-level BPE vocabulary (llama.cpp's gpt2 tokenizer, which Transformers' GGUF
loader rebuilds exactly). Tolerances: float32 exports within 1e-4 of our logits (PyTorch sums in another order
than TensorFlow); GGUF f16 within 1% and Q8_0 within 5% of the largest |logit| (the rounding of the weights).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llmtui.cli.app import app
from llmtui.config import recipe_from_dict
from tests.helpers import llmtui_env, run_llmtui, tiny_recipe_dict, train_tiny_runs, write_corpus

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("torch", "transformers", "accelerate", "gguf")),
    reason="needs the test extra: torch (CPU), transformers, accelerate, gguf",
)

runner = CliRunner()
TEXT = "the model reads text and learns"
PROMPT = "the model"
NEW_TOKENS = 6
MESSAGES = [
    {"role": "system", "content": "a small network"},
    {"role": "user", "content": "the next character"},
    {"role": "assistant", "content": "of each line"},
]
FLOAT32_ATOL = 1e-4
ROUNDING_RTOL = {"f16": 0.01, "q8_0": 0.05}

RUNS = {
    "gpt": {"tokenizer": {"kind": "bpe", "vocab_size": 300}, "model": {"arch": "gpt"}},
    "llama": {
        "tokenizer": {"kind": "bpe", "vocab_size": 300},
        "model": {"arch": "llama", "heads": 4, "kv_heads": 2, "tie_embeddings": False},
    },
}
EXPORTS = [("hf", "f16"), ("gguf", "f32"), ("gguf", "q8_0")]  # (format, --quantize)

# A fresh interpreter, Transformers on PyTorch only: what a user of the exported files runs.
LOAD_SCRIPT = """
import json, sys
import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging
logging.set_verbosity_error()
logging.disable_progress_bar()
job = json.load(open(sys.argv[1]))
report = {}
for key, export in job["exports"].items():
    options = {"gguf_file": export["gguf_file"]} if export["gguf_file"] else {}
    extra = {"n_positions": export["context"]} if export["gguf_file"] and export["arch"] == "gpt" else {}
    model = AutoModelForCausalLM.from_pretrained(export["folder"], dtype=torch.float32, **options, **extra).eval()
    tokenizer = AutoTokenizer.from_pretrained(export["folder"], **options)
    with torch.no_grad():
        logits = model(torch.as_tensor(np.load(export["ids"]), dtype=torch.long)).logits.numpy()
        prompt = torch.as_tensor([export["prompt_ids"]], dtype=torch.long)
        greedy = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                max_new_tokens=job["new_tokens"], min_new_tokens=job["new_tokens"])
    np.save(export["logits_out"], logits)
    report[key] = {"class": type(model).__name__, "tokenizer": type(tokenizer).__name__,
                   "text_ids": tokenizer(job["text"], add_special_tokens=False).input_ids,
                   "greedy": greedy[0, len(export["prompt_ids"]):].tolist(),
                   "chat_ids": tokenizer.apply_chat_template(job["messages"], tokenize=True, return_dict=False),
                   "chat_text": tokenizer.apply_chat_template(job["messages"], tokenize=False),
                   "eos": tokenizer.eos_token, "pad": tokenizer.pad_token}
print(json.dumps(report))
"""


def _ours(run: Path) -> dict:
    """The run's own logits on fixed ids, its greedy continuation (llmtui's generator), ids and chat text."""
    from llmtui.generation.sampler import Generator
    from llmtui.runfolder import RunFolder, load_final_model
    from llmtui.tokenizers import TextTokenizer
    from llmtui.tokenizers.chat import chat_template, render_chat

    folder = RunFolder(run)
    model, tokenizer = load_final_model(folder), TextTokenizer.load(folder.tokenizer_dir)
    ids = np.random.default_rng(7).integers(0, model.output_shape[-1], size=(2, 12)).astype("int32")
    greedy = Generator(model, tokenizer, 16).generate_full(PROMPT, NEW_TOKENS, temperature=0.0, stop_at_eos=False)
    chat_text = render_chat(chat_template(folder.tokenizer_dir), MESSAGES)
    return {
        "ids": ids,
        "logits": np.asarray(model(ids, training=False)),
        "prompt_ids": tokenizer.encode(PROMPT),
        "greedy": greedy.tokens,
        "text_ids": tokenizer.encode(TEXT),
        "chat_text": chat_text,
        "chat_ids": tokenizer.encode(chat_text),
    }


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> dict:
    """Each run exported as hf, gguf f32 and gguf q8_0 (through the CLI), then loaded in one fresh process."""
    base = tmp_path_factory.mktemp("open_export")
    runs = train_tiny_runs(base, RUNS)
    ours, outputs, job = {}, {}, {"text": TEXT, "messages": MESSAGES, "new_tokens": NEW_TOKENS, "exports": {}}
    for arch, run in runs.items():
        ours[arch] = _ours(run)
        np.save(base / f"{arch}-ids.npy", ours[arch]["ids"])
        for fmt, quantize in EXPORTS:
            key = f"{arch}-{fmt}-{quantize}"
            out = base / "exports" / key
            result = runner.invoke(
                app, ["export", str(run), "--format", fmt, "--quantize", quantize, "--out", str(out)]
            )
            assert result.exit_code == 0, result.output
            outputs[key] = result.output
            job["exports"][key] = {
                "folder": str(out),
                "gguf_file": f"model-{quantize}.gguf" if fmt == "gguf" else None,
                "arch": arch,
                "context": 16,
                "ids": str(base / f"{arch}-ids.npy"),
                "prompt_ids": ours[arch]["prompt_ids"],
                "logits_out": str(base / f"{key}.npy"),
            }
    (base / "job.json").write_text(json.dumps(job), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(base / "job.json")],
        capture_output=True,
        text=True,
        env=llmtui_env(),
        cwd=base,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "base": base,
        "runs": runs,
        "ours": ours,
        "outputs": outputs,
        "report": report,
        "logits": {key: np.load(base / f"{key}.npy") for key in job["exports"]},
    }


@pytest.mark.parametrize("arch", sorted(RUNS))
def test_hf_folder_loads_in_transformers_with_our_logits_and_greedy_text(loaded, arch):
    key = f"{arch}-hf-f16"
    found, ours = loaded["report"][key], loaded["ours"][arch]
    assert found["class"] == {"gpt": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}[arch]
    np.testing.assert_allclose(loaded["logits"][key], ours["logits"], atol=FLOAT32_ATOL, rtol=0)
    assert found["greedy"] == ours["greedy"] and len(found["greedy"]) == NEW_TOKENS
    assert found["text_ids"] == ours["text_ids"]
    assert (found["eos"], found["pad"]) == ("<eos>", "<pad>")
    folder = loaded["base"] / "exports" / key
    assert {p.name for p in folder.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    }
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 3 and generation["max_new_tokens"] == 12
    assert "checked: loaded back" in loaded["outputs"][key]


@pytest.mark.parametrize("arch", sorted(RUNS))
@pytest.mark.parametrize("quantize", ["f32", "q8_0"])
def test_gguf_loads_in_transformers_gguf_loader(loaded, arch, quantize):
    key = f"{arch}-gguf-{quantize}"
    found, ours, got = loaded["report"][key], loaded["ours"][arch], loaded["logits"][key]
    assert found["class"] == {"gpt": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}[arch]
    if quantize == "f32":
        np.testing.assert_allclose(got, ours["logits"], atol=FLOAT32_ATOL, rtol=0)
        assert found["greedy"] == ours["greedy"]
    else:
        allowed = ROUNDING_RTOL[quantize] * float(np.max(np.abs(ours["logits"])))
        assert float(np.max(np.abs(got - ours["logits"]))) <= allowed
        assert float(np.max(np.abs(got - ours["logits"]))) > 0  # really rounded
    assert found["text_ids"] == ours["text_ids"]  # the tokenizer rebuilt from the GGUF metadata
    folder = loaded["base"] / "exports" / key
    assert sorted(p.name for p in folder.iterdir()) == ["Modelfile", "llmtui_export.json", f"model-{quantize}.gguf"]
    modelfile = (folder / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./model-{quantize}.gguf\n") and "PARAMETER num_ctx 16" in modelfile


def test_q8_0_file_is_smaller_and_stores_8_bit_blocks(loaded):
    from gguf import GGUFReader

    base = loaded["base"] / "exports"
    f32, q8 = base / "llama-gguf-f32" / "model-f32.gguf", base / "llama-gguf-q8_0" / "model-q8_0.gguf"
    types = {t.name: t.tensor_type.name for t in GGUFReader(str(q8)).tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    assert q8.stat().st_size < 0.5 * f32.stat().st_size


@pytest.mark.parametrize("arch", sorted(RUNS))
def test_chat_template_is_the_same_in_llmtui_transformers_and_gguf(loaded, arch):
    """The conversation rendered by llmtui, by apply_chat_template on the hf folder and on the GGUF's metadata
    gives the same text and the same token ids."""
    from gguf import GGUFReader

    ours = loaded["ours"][arch]
    for key in (f"{arch}-hf-f16", f"{arch}-gguf-f32"):
        assert loaded["report"][key]["chat_text"] == ours["chat_text"]
        assert ours["chat_text"] == "a small network\nthe next character\nof each line\n"
        assert loaded["report"][key]["chat_ids"] == ours["chat_ids"]
    reader = GGUFReader(str(loaded["base"] / "exports" / f"{arch}-gguf-f32" / "model-f32.gguf"))
    field = reader.fields["tokenizer.chat_template"]
    from llmtui.tokenizers.chat import LINES_TEMPLATE

    assert bytes(field.parts[field.data[0]]).decode("utf-8") == LINES_TEMPLATE


def _export_cli(*args: str) -> subprocess.CompletedProcess:
    return run_llmtui("export", *args, timeout=300)


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory) -> Path:
    from llmtui.pipeline import Pipeline

    base = tmp_path_factory.mktemp("lstm")
    recipe = tiny_recipe_dict(
        write_corpus(base / "corpus", files=2, lines=10), base / "runs", model={"arch": "lstm", "layers": 1, "dim": 16}
    )
    recipe["train"].update(steps=2, eval_every=1000, checkpoint_every=1000, jit_compile=False)
    Pipeline(recipe_from_dict(recipe), base_dir=base).execute(until="train")
    return base / "runs" / "tiny"


@pytest.mark.parametrize("fmt", ["hf", "gguf"])
def test_a_format_that_cannot_carry_the_model_is_refused_and_writes_nothing(lstm_run, tmp_path, fmt):
    out = tmp_path / "out"
    done = _export_cli(str(lstm_run), "--format", fmt, "--out", str(out))
    assert done.returncode != 0
    assert "model.arch = 'lstm'" in done.stderr and "Traceback" not in done.stderr
    assert "--format keras" in done.stderr  # the hint names what does carry it
    assert not out.exists()


def test_export_all_lists_what_each_format_could_not_carry(lstm_run, tmp_path):
    from llmtui.config import load_recipe
    from llmtui.export.exporter import plan_exports
    from llmtui.runfolder import RunFolder

    recipe = load_recipe(lstm_run / "recipe.toml")
    targets, skipped = plan_exports(RunFolder(lstm_run), "all", tmp_path / "all", recipe.model, "char")
    assert set(targets) == {"keras", "savedmodel"} and set(skipped) == {"preset", "hf", "gguf"}
    assert all("lstm" in why for why in skipped.values())


def test_gguf_refuses_a_vocabulary_llama_cpp_has_no_tokenizer_for():
    from llmtui.config.recipe import ModelConfig
    from llmtui.export.exporter import format_problem

    gpt = ModelConfig(arch="gpt")
    assert format_problem("gguf", gpt, "bpe") is None and format_problem("hf", gpt, "char") is None
    assert "tokenizer.kind = 'char'" in format_problem("gguf", gpt, "char")
    assert "tokenizer.kind = 'wordpiece'" in format_problem("gguf", gpt, "wordpiece")


def test_unknown_quantize_type_is_a_clear_error(loaded, tmp_path):
    done = _export_cli(
        str(loaded["runs"]["gpt"]), "--format", "gguf", "--quantize", "q4_k", "--out", str(tmp_path / "q")
    )
    assert done.returncode != 0 and "unknown GGUF tensor type 'q4_k'" in done.stderr
    assert "f32, f16, q8_0" in done.stderr and not (tmp_path / "q").exists()


LLAMA_CPP_SCRIPT = """
import json, sys
import numpy as np
from llama_cpp import Llama
job = json.load(open(sys.argv[1]))
report = {}
for key, export in job["exports"].items():
    if not export["gguf_file"]:
        continue
    llm = Llama(model_path=export["folder"] + "/" + export["gguf_file"], n_ctx=export["context"], logits_all=True,
                verbose=False)
    ids = np.load(export["ids"])[0].tolist()
    llm.eval(ids)
    report[key] = {"logits": np.asarray(llm.scores[:len(ids)]).tolist(),
                   "text_ids": llm.tokenize(job["text"].encode(), add_bos=False, special=False)}
print(json.dumps(report))
"""


@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed (PyPI has only its source, which compiles llama.cpp: too long for CI)",
)
def test_gguf_runs_in_llama_cpp_with_our_logits_and_ids(loaded):
    """llama.cpp itself (its Python bindings) reads the GGUF files: same logits (within its float32 kernels'
    rounding, or the Q8_0 tolerance) and the same token ids from the metadata's tokenizer."""
    job = json.loads((loaded["base"] / "job.json").read_text())
    done = subprocess.run(
        [sys.executable, "-c", LLAMA_CPP_SCRIPT, str(loaded["base"] / "job.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for key, found in report.items():
        arch, _, quantize = key.split("-")
        ours = loaded["ours"][arch]
        got = np.asarray(found["logits"])
        scale = float(np.max(np.abs(ours["logits"][0])))
        allowed = 1e-3 * max(1.0, scale) if quantize == "f32" else ROUNDING_RTOL[quantize] * scale
        assert float(np.max(np.abs(got - ours["logits"][0]))) <= allowed, key
        assert found["text_ids"] == ours["text_ids"], key
    assert len(report) == len([e for e in job["exports"].values() if e["gguf_file"]])


def test_gguf_labels_only_gpt2_split_byte_level_vocabularies_as_gpt2():
    """A byte-level BPE that splits text with another pattern (Llama 3's, say) must not be written as GPT-2's."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    from llmtui.export.gguf import gpt2_split_problem
    from llmtui.tokenizers import TextTokenizer

    ours = Tokenizer(models.BPE())
    ours.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    other = Tokenizer(models.BPE())
    other.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\p{N}{1,3}"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    names = {"pad": "<|endoftext|>", "unk": None, "bos": "<|endoftext|>", "eos": "<|endoftext|>"}
    assert gpt2_split_problem(TextTokenizer(ours, "bpe", special_names=names)) is None
    assert "its own pattern" in gpt2_split_problem(TextTokenizer(other, "bpe", special_names=names))
