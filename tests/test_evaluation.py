"""Evaluation: metrics against hand-computed values, the report pages, `llmtui eval`, `report` and `compare`."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llmtui.cli.app import app
from llmtui.config import recipe_from_dict
from llmtui.evaluation.language_model import summarize
from llmtui.evaluation.tasks import classification_metrics, normalize_answer, qa_metrics, translation_metrics
from llmtui.pipeline import Pipeline
from tests.helpers import tiny_recipe_dict, write_corpus

runner = CliRunner()


# Language-model metrics --------------------------------------------------------------------------
def test_summarize_on_fixed_scores():
    scores = {
        "nll_sum": 6.0,
        "correct": 1.0,
        "top_k_correct": 3.0,
        "tokens": 4,
        "windows": 2,
        "nll_by_position": [2.0, 4.0],
    }
    report = summarize(scores, bytes_per_token=2.0, vocab_size=10)
    assert report["loss"] == pytest.approx(1.5)
    assert report["perplexity"] == pytest.approx(math.exp(1.5))
    assert report["accuracy"] == pytest.approx(0.25)
    assert report["top5_accuracy"] == pytest.approx(0.75)
    assert report["bits_per_byte"] == pytest.approx(1.5 / math.log(2) / 2.0)
    assert report["uniform_loss"] == pytest.approx(math.log(10))
    assert report["loss_by_position"] == pytest.approx([1.0, 2.0])


# Next-token probabilities of the toy model, the same at every position; no two are equal (no ties).
TOY_PROBS = [0.4, 0.2, 0.15, 0.1, 0.06, 0.05, 0.03, 0.01]


def _constant_model():
    import keras
    from keras import ops

    class ConstantLogits(keras.layers.Layer):
        """Logits log(TOY_PROBS) at every position, whatever the input."""

        def call(self, ids):
            zeros = ops.expand_dims(ops.zeros_like(ids, dtype="float32"), -1)  # (B, T, 1)
            return zeros + ops.log(ops.convert_to_tensor(TOY_PROBS, "float32"))  # (B, T, V)

    ids = keras.Input(shape=(None,), dtype="int32")
    return keras.Model(ids, ConstantLogits()(ids))


def test_scores_of_a_fixed_logit_model_match_the_hand_computed_ones():
    from llmtui.evaluation.language_model import make_scorer, score_tokens

    # context 3 gives two windows: targets (2, 7, 0) and (0, 3, 5); batch 3 pads the second batch row.
    tokens = np.array([0, 2, 7, 0, 0, 3, 5], np.uint16)
    scores = score_tokens(make_scorer(_constant_model(), jit_compile=False), tokens, context=3, batch_size=3)
    report = summarize(scores, bytes_per_token=1.0, vocab_size=8)
    p = TOY_PROBS
    nll = [-math.log(p[t]) for t in (2, 7, 0, 0, 3, 5)]
    assert scores["tokens"] == 6 and scores["windows"] == 2
    assert report["loss"] == pytest.approx(sum(nll) / 6, rel=1e-5)
    assert report["perplexity"] == pytest.approx(math.exp(sum(nll) / 6), rel=1e-5)
    assert report["accuracy"] == pytest.approx(2 / 6)  # only the two targets 0 are the argmax
    # Tokens above the target: 2 -> 2, 7 -> 7, 0 -> 0, 0 -> 0, 3 -> 3, 5 -> 5: four have fewer than five.
    assert report["top5_accuracy"] == pytest.approx(4 / 6)
    by_position = [
        (-math.log(p[2]) - math.log(p[0])) / 2,
        (-math.log(p[7]) - math.log(p[3])) / 2,
        (-math.log(p[0]) - math.log(p[5])) / 2,
    ]
    assert report["loss_by_position"] == pytest.approx(by_position, rel=1e-5)
    assert report["bits_per_byte"] == pytest.approx(report["loss"] / math.log(2))


def test_token_scores_config_round_trip():
    from llmtui.evaluation.language_model import TokenScores

    layer = TokenScores(top_k=3, name="scores")
    assert TokenScores.from_config(layer.get_config()).top_k == 3


# Task metrics ------------------------------------------------------------------------------------
def test_classification_metrics_on_a_known_confusion_matrix():
    # rows true, columns predicted:   pos neg neutral
    matrix = [
        [3, 1, 0],  # pos
        [1, 2, 0],  # neg
        [1, 1, 0],
    ]  # neutral (never predicted)
    labels = ["pos", "neg", "neutral"]
    y_true, y_pred = [], []
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            y_true += [labels[i]] * count
            y_pred += [labels[j]] * count
    m = classification_metrics(y_true, y_pred, labels)
    assert set(m) == {"kind", "accuracy", "macro_f1", "per_class", "labels", "confusion_matrix"}
    assert m["kind"] == "classification" and m["labels"] == labels
    assert m["confusion_matrix"] == matrix
    assert m["accuracy"] == pytest.approx(5 / 9)
    # pos: precision 3/5, recall 3/4, F1 2/3; neg: 2/4, 2/3, F1 4/7; neutral: 0, 0, 0.
    assert m["per_class"]["pos"] == pytest.approx({"precision": 0.6, "recall": 0.75, "f1": 2 / 3, "support": 4})
    assert m["per_class"]["neg"] == pytest.approx({"precision": 0.5, "recall": 2 / 3, "f1": 4 / 7, "support": 3})
    assert m["per_class"]["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert m["macro_f1"] == pytest.approx(26 / 63)


def test_classification_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="'maybe' is not one of the labels"):
        classification_metrics(["yes"], ["maybe"], ["yes", "no"])
    with pytest.raises(ValueError, match="2 true labels but 1 predictions"):
        classification_metrics(["yes", "no"], ["yes"], ["yes", "no"])


def test_qa_metrics_on_known_pairs():
    assert normalize_answer("An  apple, the   Pie.") == "apple pie"
    m = qa_metrics(
        ["The Eiffel Tower!", "in 1889", "Paris France"], ["eiffel tower", ["1889", "the year 1889"], "London"]
    )
    # EM: 1, 0, 0. F1: 1; max(2/3 against "1889", 1/2 against "year 1889"); 0.
    assert m == {"kind": "qa", "exact_match": pytest.approx(1 / 3), "f1": pytest.approx(5 / 9)}
    assert qa_metrics([""], [""])["f1"] == 1.0 and qa_metrics(["x"], [""])["f1"] == 0.0


def test_translation_metrics():
    import sacrebleu

    same = translation_metrics(["the cat sat on the mat today"], ["the cat sat on the mat today"])
    assert same["kind"] == "translation"
    assert same["bleu"] == pytest.approx(100.0) and same["chrf"] == pytest.approx(100.0)
    disjoint = translation_metrics(["aaa bbb ccc ddd"], ["xxx yyy zzz www"])
    assert disjoint["bleu"] == pytest.approx(0.0) and disjoint["chrf"] == pytest.approx(0.0)
    hyps = ["the cat sat on a mat", "there is a dog in the garden"]
    refs = [["the cat sat on the mat", "a cat sat on the mat"], ["a dog is in the garden", "the garden has a dog"]]
    m = translation_metrics(hyps, refs)
    streams = [[r[0] for r in refs], [r[1] for r in refs]]  # sacrebleu's layout: one stream per reference
    assert m["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score)
    assert m["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, streams).score)
    assert 0 < m["bleu"] < 100


# Runs --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two tiny finished runs (a GPT and a GRU) shared by the tests below."""
    root = tmp_path_factory.mktemp("eval")
    corpus = write_corpus(root / "corpus")
    folders = {}
    for name, model, steps in (("small_gpt", {"arch": "gpt"}, 20), ("small_gru", {"arch": "gru"}, 10)):
        recipe = recipe_from_dict(
            tiny_recipe_dict(
                corpus, root / "runs", run={"name": name}, model=model, train={"steps": steps, "eval_every": 10}
            )
        )
        Pipeline(recipe, base_dir=root).execute()
        folders[name] = root / "runs" / name
    return folders


def _report(run: Path) -> dict:
    return json.loads((run / "eval" / "report.json").read_text(encoding="utf-8"))


def test_eval_stage_writes_the_report_keys_and_pages(runs):
    run = runs["small_gpt"]
    report = _report(run)
    for key in (
        "loss",
        "perplexity",
        "bits_per_byte",
        "accuracy",
        "tokens",
        "vocab_size",
        "uniform_loss",
        "top5_accuracy",
        "loss_by_position",
        "parameters",
        "train_steps",
    ):
        assert report[key] is not None, key
    assert report["perplexity"] == pytest.approx(math.exp(report["loss"]))
    assert report["accuracy"] <= report["top5_accuracy"] <= 1
    assert len(report["loss_by_position"]) == 16  # the recipe's context
    assert report["loss"] == pytest.approx(np.mean(report["loss_by_position"]))  # every window is full
    eval_dir = run / "eval"
    for name in ("report.md", "report.html", "training_curves.png", "loss_by_position.png"):
        assert (eval_dir / name).is_file(), name
    markdown = (eval_dir / "report.md").read_text(encoding="utf-8")
    assert "](training_curves.png)" in markdown and "](loss_by_position.png)" in markdown
    page = (eval_dir / "report.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 2
    assert f"{report['loss']:.4f}" in page and f"{report['perplexity']:.2f}" in page
    assert "top-5 accuracy" in page and f"{100 * report['top5_accuracy']:.2f}%" in page
    assert f"{report['parameters']:,}" in page
    assert "Step 10:" in page  # a sample logged during training


def test_write_report_after_generate_shows_the_samples(runs):
    from llmtui.evaluation.report import write_report

    run = runs["small_gpt"]
    written = write_report(run)
    assert set(written) >= {"report.md", "report.html", "training_curves.png", "loss_by_position.png"}
    sample = json.loads((run / "generate" / "samples.json").read_text(encoding="utf-8"))["samples"][0]
    page = (run / "eval" / "report.html").read_text(encoding="utf-8")
    assert "no generated samples yet" not in page
    import html

    assert html.escape(sample["prompt"] + sample["text"]) in page


def test_training_logs_read_without_tensorflow(runs):
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from llmtui.evaluation.tensorboard_logs import read_log_folder\n"
        "from llmtui.evaluation.report import write_report\n"
        "run = Path(sys.argv[1])\n"
        "train = read_log_folder(run / 'logs' / 'train')\n"
        "val = read_log_folder(run / 'logs' / 'val')\n"
        "assert [s for s, _ in train.scalars['loss']] == [5, 10, 15, 20], train.scalars['loss']\n"
        "assert {'lr', 'tokens_per_sec'} <= set(train.scalars)\n"
        "assert [s for s, _ in val.texts['sample']] == [10, 20]\n"
        "write_report(run)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(runs["small_gpt"])], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_eval_on_files_gives_bits_per_byte_from_their_bytes(runs, tmp_path):
    run = runs["small_gpt"]
    before = _report(run)
    plain = tmp_path / "plain.txt"
    text = "the model reads text and learns\nwhich letters follow which\n" * 3
    plain.write_text(text, encoding="utf-8")
    lines = tmp_path / "notes.jsonl"
    docs = ["the café reads text", "a small network learns the next character"]
    lines.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")

    result = runner.invoke(app, ["eval", str(run), "--data", str(plain), "--data", str(lines)])
    assert result.exit_code == 0, result.output
    assert "plain.txt" in result.output and "notes.jsonl" in result.output and "bits per byte" in result.output
    report = _report(run)
    for key in ("loss", "perplexity", "bits_per_byte", "accuracy", "top5_accuracy"):
        assert report[key] == before[key], key  # the validation metrics of the same model are kept

    plain_metrics = report["files"][str(plain)]
    # One ASCII document with the character tokenizer: one token per byte, plus the end-of-text token.
    assert plain_metrics["bytes"] == len(text) + 1 == plain_metrics["file_tokens"]
    assert plain_metrics["bits_per_byte"] == pytest.approx(plain_metrics["loss"] / math.log(2))
    assert plain_metrics["tokens"] == (len(text) // 16) * 16  # whole windows of 16 predictions

    notes = report["files"][str(lines)]
    assert notes["bytes"] == sum(len(d.encode("utf-8")) + 1 for d in docs)  # "é" is two bytes
    assert notes["file_tokens"] == sum(len(d) + 1 for d in docs)  # one token per character
    assert notes["bits_per_byte"] == pytest.approx(notes["loss"] / math.log(2) * notes["file_tokens"] / notes["bytes"])
    assert "notes.jsonl" in (run / "eval" / "report.md").read_text(encoding="utf-8")


def test_compare_two_runs(runs):
    gpt, gru = runs["small_gpt"], runs["small_gru"]
    result = runner.invoke(app, ["compare", str(gpt), str(gru)])
    assert result.exit_code == 0, result.output
    for text in ("small_gpt", "small_gru", "gpt", "gru", "perplexity", "bits per byte", "top-5 accuracy"):
        assert text in result.output, text

    result = runner.invoke(app, ["compare", str(gpt), str(gru), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    by_name = {entry["name"]: entry for entry in data["runs"]}
    assert by_name["small_gpt"]["arch"] == "gpt" and by_name["small_gru"]["steps"] == 10
    assert by_name["small_gru"]["val_loss"] == pytest.approx(_report(gru)["loss"])
    lower = min(by_name, key=lambda name: by_name[name]["val_loss"])
    assert data["best"]["val_loss"] == [lower] and data["best"]["perplexity"] == [lower]
    assert "arch" not in data["best"]  # facts are not ranked


def test_task_metrics_go_into_the_report_and_compare(runs, tmp_path):
    from llmtui.evaluation.report import record_task_metrics

    run = tmp_path / "classifier"
    shutil.copytree(runs["small_gru"], run)
    metrics = classification_metrics(["a", "b", "b", "a"], ["a", "b", "a", "a"], ["a", "b"])
    record_task_metrics(run, metrics)
    assert _report(run)["task"] == metrics
    assert _report(run)["loss"] == _report(runs["small_gru"])["loss"]  # the rest of the report is kept
    page = (run / "eval" / "report.html").read_text(encoding="utf-8")
    assert (run / "eval" / "confusion_matrix.png").is_file()
    assert "Confusion matrix" in page and page.count('src="data:image/png;base64,') == 3
    assert "macro-F1" in page and "Task: classification" in page

    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["compare", str(run), str(runs["small_gpt"]), "--json"])
    entry = next(e for e in json.loads(result.output)["runs"] if e["name"] == "classifier")
    assert entry["task_macro_f1"] == pytest.approx(metrics["macro_f1"])


def test_report_shows_fine_tuning_before_and_after_and_task_answers(runs, tmp_path):
    from llmtui.evaluation.report import write_report

    run = tmp_path / "domain"
    shutil.copytree(runs["small_gru"], run)
    report = _report(run)
    report["finetune"] = {
        "base": "runs/base",
        "method": "lora",
        "domain_val": {"before": {"perplexity": 31.25}, "after": {"perplexity": 12.5}},
        "base_val": {"before": {"perplexity": 9.75}, "after": {"perplexity": 10.5}},
    }
    report["answers"] = [{"input": "capital of France?", "target": "Paris", "prediction": "Lyon <b>"}]
    (run / "eval" / "report.json").write_text(json.dumps(report), encoding="utf-8")
    write_report(run)
    page = (run / "eval" / "report.html").read_text(encoding="utf-8")
    markdown = (run / "eval" / "report.md").read_text(encoding="utf-8")
    for text in ("31.25", "12.50", "9.75", "10.50", "lora", "capital of France?", "Paris"):
        assert text in page and text in markdown, text
    assert "Lyon &lt;b&gt;" in page  # escaped


def test_bad_run_folders_fail_cleanly(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["compare", str(empty), str(runs["small_gpt"])], ["eval", str(empty)], ["report", str(empty)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, args
        assert "is not a run folder" in result.stderr and "Traceback" not in result.output + result.stderr

    unevaluated = tmp_path / "unevaluated"
    unevaluated.mkdir()
    shutil.copy(runs["small_gpt"] / "recipe.toml", unevaluated / "recipe.toml")
    result = runner.invoke(app, ["compare", str(unevaluated), str(runs["small_gpt"])])
    assert result.exit_code == 1
    assert "no evaluation report" in result.stderr and "llmtui eval" in result.stderr

    result = runner.invoke(app, ["compare", str(tmp_path / "missing"), str(runs["small_gpt"])])
    assert result.exit_code == 1 and "no run folder" in result.stderr

    result = runner.invoke(app, ["eval", str(runs["small_gpt"]), "--data", str(tmp_path / "nope.txt")])
    assert result.exit_code == 1 and "no such file" in result.stderr
