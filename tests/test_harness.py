"""`llmtui eval RUN --harness`: lm-evaluation-harness scores a run through our adapter, offline, on small tasks
whose data the test writes (multiple choice, rolling perplexity, generation); the adapter's log-likelihoods
equal our own scorer's (within 1e-3 nats: float32 sums in another order).

The run uses the byte tokenizer (one token per byte), so a text of exactly two context windows can be built.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from llmtui.config import recipe_from_dict
from tests.helpers import llmtui_env, run_llmtui, tiny_recipe_dict, write_corpus

pytestmark = pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="needs the test extra: lm_eval")
CONTEXT = 16

TASKS = {  # name: (output_type, extra YAML lines, data file)
    "llmtui_mc": (
        "multiple_choice",
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{answer}}"\nmetric_list:\n  - metric: acc\n',
        "mc.jsonl",
    ),
    "llmtui_ppl": (
        "loglikelihood_rolling",
        'doc_to_text: ""\ndoc_to_target: "{{text}}"\nmetric_list:\n'
        "  - metric: word_perplexity\n  - metric: bits_per_byte\n",
        "ppl.jsonl",
    ),
    "llmtui_gen": (
        "generate_until",
        'doc_to_text: "{{question}}"\ndoc_to_target: "{{choices[0]}}"\n'
        'generation_kwargs:\n  until: ["\\n"]\n  max_gen_toks: 4\n'
        "metric_list:\n  - metric: exact_match\n",
        "mc.jsonl",
    ),
}


@pytest.fixture(scope="module")
def harness_run(tmp_path_factory) -> dict:
    from llmtui.pipeline import Pipeline

    base = tmp_path_factory.mktemp("harness")
    recipe = tiny_recipe_dict(
        write_corpus(base / "corpus", files=3, lines=30),
        base / "runs",
        tokenizer={"kind": "byte"},
        model={"context": CONTEXT},
    )
    recipe["train"].update(steps=10, eval_every=1000, checkpoint_every=1000, jit_compile=False)
    Pipeline(recipe_from_dict(recipe), base_dir=base).execute(until="train")
    tasks = base / "tasks"
    tasks.mkdir()
    rows = [
        {"question": "the model reads", "choices": [" text", " dog", " blue"], "answer": 0},
        {"question": "learns to predict the next", "choices": [" character", " cat"], "answer": 0},
        {"question": "a small network trained on a small", "choices": [" corpus", " house"], "answer": 0},
    ]
    (tasks / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tasks / "ppl.jsonl").write_text(
        "".join(
            json.dumps({"text": t}) + "\n" for t in ["the model reads text and learns", "which letters follow which"]
        ),
        encoding="utf-8",
    )
    for name, (kind, extra, data) in TASKS.items():
        (tasks / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {tasks / data}\n"
            f"test_split: test\noutput_type: {kind}\n{extra}",
            encoding="utf-8",
        )
    return {"base": base, "run": base / "runs" / "tiny", "tasks": tasks}


def _eval(run: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_llmtui("eval", str(run), *args, cwd=cwd, env=llmtui_env(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1"))


def test_harness_tasks_score_the_run_and_land_in_the_report(harness_run):
    done = _eval(
        harness_run["run"],
        "--harness",
        ",".join(TASKS),
        "--harness-include",
        str(harness_run["tasks"]),
        cwd=harness_run["base"],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((harness_run["run"] / "eval" / "report.json").read_text())
    harness = report["harness"]
    assert 0.0 <= harness["llmtui_mc"]["acc"] <= 1.0 and harness["llmtui_mc"]["documents"] == 3
    assert harness["llmtui_ppl"]["word_perplexity"] > 1.0 and harness["llmtui_ppl"]["bits_per_byte"] > 0
    assert 0.0 <= harness["llmtui_gen"]["exact_match"] <= 1.0
    assert "## Benchmarks (lm-evaluation-harness)" in (harness_run["run"] / "eval" / "report.md").read_text()
    assert "llmtui_mc: acc" in done.stdout


def test_an_unknown_harness_task_is_a_clear_error(harness_run, tmp_path):
    done = _eval(harness_run["run"], "--harness", "no_such_task_xyz", cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "lm-eval has no task 'no_such_task_xyz'" in done.stderr and "--harness-include" in done.stderr


def test_adapter_log_likelihoods_equal_our_scorer(harness_run):
    from lm_eval.api.instance import Instance

    from llmtui.evaluation.harness import make_adapter
    from llmtui.evaluation.language_model import make_scorer, score_tokens
    from llmtui.runfolder import RunFolder, load_final_model
    from llmtui.tokenizers import TextTokenizer

    run = RunFolder(harness_run["run"])
    model, tokenizer = load_final_model(run), TextTokenizer.load(run.tokenizer_dir)
    adapter = make_adapter(model, tokenizer, CONTEXT)
    text = "the model reads text and learns to predict the next!"[: 2 * CONTEXT]  # 2 windows of byte tokens
    ids = tokenizer.encode(text)
    assert len(ids) == 2 * CONTEXT
    rolling = adapter.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])[0]
    ours = score_tokens(make_scorer(model, jit_compile=False), np.asarray([tokenizer.eos_id] + ids), CONTEXT, 2)
    assert ours["tokens"] == 2 * CONTEXT
    assert rolling == pytest.approx(-ours["nll_sum"], abs=1e-3)

    context, continuation = "the model", " reads"
    ((score, greedy),) = adapter.loglikelihood([Instance("loglikelihood", {}, (context, continuation), 0)])
    sequence = tokenizer.encode(context + continuation)
    logits = np.asarray(model(np.asarray([sequence[:-1]], np.int32), training=False), np.float64)[0]
    logits -= logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    n = len(tokenizer.encode(continuation))
    expected = sum(log_probs[len(sequence) - 1 - n + i, sequence[len(sequence) - n + i]] for i in range(n))
    assert score == pytest.approx(expected, abs=1e-3)
    assert greedy == all(
        log_probs[len(sequence) - 1 - n + i].argmax() == sequence[len(sequence) - n + i] for i in range(n)
    )
