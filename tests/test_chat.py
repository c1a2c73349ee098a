"""The `chat` fine-tuning task: conversations rendered by one chat template, the loss on the assistant's tokens
only, and the same token ids from our training code, `llmtui chat`'s rendering, Transformers'
apply_chat_template on the hf export and the tokenizer and template read from the GGUF export.

One tiny gpt base (byte-level BPE) is trained and chat-tuned once for the module on the shipped
assets/examples/chat.jsonl.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from llmtui.cli.app import app
from llmtui.config import recipe_from_dict
from tests.helpers import ROOT, llmtui_env, run_llmtui, tiny_recipe_dict, write_corpus

runner = CliRunner()
CHATS = ROOT / "assets" / "examples" / "chat.jsonl"
CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What does len return?"},
    {"role": "assistant", "content": "len() returns the number of items."},
    {"role": "user", "content": 'How do you say "the red cat" in French?'},
    {"role": "assistant", "content": 'In French it is "le chat rouge".'},
]

LOAD_SCRIPT = """
import json, sys
from gguf import GGUFReader
from transformers import AutoTokenizer
from transformers.utils import logging
logging.set_verbosity_error()
logging.disable_progress_bar()
hf, gguf_folder, messages = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
report = {}
for name, tokenizer in (("hf", AutoTokenizer.from_pretrained(hf)),
                        ("gguf", AutoTokenizer.from_pretrained(gguf_folder, gguf_file="model-f32.gguf"))):
    report[name] = {"ids": tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False),
                    "prompt": tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)}
field = GGUFReader(gguf_folder + "/model-f32.gguf").fields["tokenizer.chat_template"]
report["gguf_template"] = bytes(field.parts[field.data[0]]).decode("utf-8")
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory) -> dict:
    from llmtui.pipeline import Pipeline, pipeline_for

    base = tmp_path_factory.mktemp("chat")
    corpus = write_corpus(base / "corpus", files=3, lines=30)
    recipe = tiny_recipe_dict(
        corpus, base / "runs", tokenizer={"kind": "bpe", "vocab_size": 300}, model={"context": 96}
    )
    recipe["run"]["name"] = "base"
    recipe["train"].update(steps=6, eval_every=1000, checkpoint_every=1000, jit_compile=False)
    Pipeline(recipe_from_dict(recipe), base_dir=base).execute(until="train")
    recipe = tiny_recipe_dict(
        corpus,
        base / "runs",
        finetune={
            "base": "base",
            "task": "chat",
            "train_file": str(CHATS),
            "val_fraction": 0.05,
            "max_answer_tokens": 8,
        },
    )
    recipe["run"]["name"] = "chat"
    recipe["train"].update(steps=6, eval_every=1000, checkpoint_every=1000, jit_compile=False)
    pipeline_for(recipe_from_dict(recipe), base_dir=base).execute()
    return {"base": base, "run": base / "runs" / "chat"}


def test_chat_template_is_stored_with_the_tokenizer_and_the_report_scores_assistant_turns(chat_run):
    from llmtui.tokenizers.chat import CHAT_TEMPLATE

    run = chat_run["run"]
    assert (run / "tokenizer" / "chat_template.jinja").read_text() == CHAT_TEMPLATE
    report = json.loads((run / "eval" / "report.json").read_text())
    task = report["task"]
    assert task["kind"] == "chat" and task["assistant_tokens"] > 0 and np.isfinite(task["perplexity"])
    assert task["replies"] and all("reply" in r for r in task["replies"])


def test_loss_weighs_only_the_assistants_tokens(chat_run):
    from llmtui.finetune.tasks import encode_chat
    from llmtui.tokenizers import TextTokenizer
    from llmtui.tokenizers.chat import CHAT_TEMPLATE

    tokenizer = TextTokenizer.load(chat_run["run"] / "tokenizer")
    encoded = encode_chat(tokenizer, [CONVERSATION], CHAT_TEMPLATE, 256)
    weighted = encoded.targets[0][encoded.weights[0] > 0]
    learned = tokenizer.backend.decode(weighted.tolist(), skip_special_tokens=False)
    assert learned == "".join(m["content"] + "<eos>\n" for m in CONVERSATION if m["role"] == "assistant")
    assert encoded.truncated == 0
    short = encode_chat(tokenizer, [CONVERSATION], CHAT_TEMPLATE, 8)
    assert short.truncated == 1 and short.inputs.shape == (1, 8)


@pytest.mark.skipif(
    any(importlib.util.find_spec(n) is None for n in ("torch", "transformers", "accelerate", "gguf")),
    reason="needs the test extra: torch (CPU), transformers, accelerate, gguf",
)
def test_the_same_ids_in_training_llmtui_chat_transformers_and_gguf(chat_run, tmp_path):
    from llmtui.finetune.tasks import encode_chat
    from llmtui.tokenizers import TextTokenizer
    from llmtui.tokenizers.chat import chat_template, render_chat, special_token_names

    run = chat_run["run"]
    for fmt, extra in (("hf", []), ("gguf", ["--quantize", "f32"])):
        result = runner.invoke(app, ["export", str(run), "--format", fmt, "--out", str(tmp_path / fmt), *extra])
        assert result.exit_code == 0, result.output
    tokenizer = TextTokenizer.load(run / "tokenizer")
    template = chat_template(run / "tokenizer")
    encoded = encode_chat(tokenizer, [CONVERSATION], template, 256)
    length = int((encoded.inputs[0] != 0).sum())  # ids are never the padding id 0 here (<pad> is not in text)
    training_ids = encoded.inputs[0][:length].tolist() + [int(encoded.targets[0][length - 1])]
    chat_ids = tokenizer.encode(render_chat(template, CONVERSATION, **special_token_names(tokenizer)))
    prompt = render_chat(template, CONVERSATION[:-1], add_generation_prompt=True, **special_token_names(tokenizer))
    done = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(tmp_path / "hf"), str(tmp_path / "gguf"), json.dumps(CONVERSATION)],
        capture_output=True,
        text=True,
        env=llmtui_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert training_ids == chat_ids == found["hf"]["ids"] == found["gguf"]["ids"]
    assert found["hf"]["prompt"] == found["gguf"]["prompt"] == prompt  # what `llmtui chat` sends for a reply
    assert found["gguf_template"] == template


def test_llmtui_chat_talks_through_the_template(chat_run):
    done = run_llmtui(
        "chat",
        str(chat_run["run"]),
        "--max-tokens",
        "5",
        "--temperature",
        "0",
        input="What does len return?\n/quit\n",
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "chat with" in done.stdout and "Traceback" not in done.stderr


def test_a_conversation_with_an_unknown_role_is_a_clear_error(chat_run, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}) + "\n",
        encoding="utf-8",
    )
    recipe = tmp_path / "chat.toml"
    recipe.write_text(
        f'[run]\nname = "bad"\nout_dir = "{tmp_path / "runs"}"\n[finetune]\n'
        f'base = "{chat_run["base"] / "runs" / "base"}"\ntask = "chat"\ntrain_file = "{bad}"\n',
        encoding="utf-8",
    )
    done = run_llmtui("finetune", str(recipe), cwd=tmp_path, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"{bad}:1: message 2 has role 'robot'" in done.stderr and "system, user, assistant" in done.stderr
