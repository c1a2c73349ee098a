"""Standard benchmarks through EleutherAI's lm-evaluation-harness: an adapter from its model interface to a run.

`LlmtuiLM` answers the harness's three kinds of request with the run's own model and tokenizer:
- loglikelihood(context, continuation): the continuation's summed log-probability and whether greedy decoding
  would produce it; the continuation's tokens are those of `context + continuation` past the context's own
  (so a merge across the boundary is scored as the model sees it);
- loglikelihood_rolling(text): the whole text's log-probability, from `<eos>`, in windows of the model's
  context (each window predicts new tokens with as much preceding text as fits);
- generate_until(context, until): greedy (or sampled, when asked) text from llmtui's generator, cut at a stop
  string.
Sequences are padded on the right to the model's context and scored in fixed-size batches (one compiled
program). `run_harness` runs tasks and stores their metrics in eval/report.json under `harness`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from llmtui.errors import LlmtuiError

BATCH = 8


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    logits -= logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def make_adapter(model, tokenizer, context: int, use_cache: bool = True):
    """An `lm_eval.api.model.LM` over our model (imported here: lm-eval is optional)."""
    from lm_eval.api.model import LM

    from llmtui.generation.sampler import Generator

    class LlmtuiLM(LM):
        def __init__(self):
            super().__init__()
            self.model, self.tokenizer, self.context = model, tokenizer, context
            self.generator = Generator(model, tokenizer, context, use_cache=use_cache)

        # Scoring -----------------------------------------------------------------------------------
        def _score(self, windows: list[tuple[list[int], int]]) -> list[tuple[float, bool]]:
            """For each (ids, n): the summed log-probability of the last n tokens of `ids` given the ones before
            (len(ids) <= context + 1), and whether each of them is the model's most likely next token."""
            out = []
            for start in range(0, len(windows), BATCH):
                chunk = windows[start : start + BATCH]
                batch = np.zeros((BATCH, self.context), np.int32)
                for row, (ids, _) in enumerate(chunk):
                    batch[row, : len(ids) - 1] = ids[:-1]
                log_probs = _log_softmax(np.asarray(self.model(batch, training=False)))
                for row, (ids, n) in enumerate(chunk):
                    positions = np.arange(len(ids) - 1 - n, len(ids) - 1)  # these predict the last n tokens
                    targets = np.asarray(ids[-n:])
                    picked = log_probs[row, positions, targets]
                    greedy = bool(np.all(log_probs[row, positions].argmax(-1) == targets))
                    out.append((float(picked.sum()), greedy))
            return out

        def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
            windows = []
            for request in requests:
                context, continuation = request.args
                context_ids = self.tokenizer.encode(context) if context else []
                whole = self.tokenizer.encode(context + continuation)
                continuation_ids = (
                    whole[len(context_ids) :]
                    if whole[: len(context_ids)] == context_ids
                    else self.tokenizer.encode(continuation)
                )
                if not continuation_ids:
                    raise LlmtuiError(
                        f"lm-eval asked for the log-likelihood of an empty continuation after {context[-40:]!r}",
                        hint="check the harness task's doc_to_target/choice",
                    )
                ids = ([self.tokenizer.eos_id] + context_ids if not context_ids else context_ids) + continuation_ids
                ids = ids[-(self.context + 1) :]  # the context's end when it does not all fit
                windows.append((ids, min(len(continuation_ids), len(ids) - 1)))
            return self._score(windows)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
            out = []
            for request in requests:
                (text,) = request.args
                full = [self.tokenizer.eos_id] + self.tokenizer.encode(text)
                windows, done = [], 0  # tokens full[1..done] are scored
                while done < len(full) - 1:
                    end = min(done + self.context, len(full) - 1)  # predict full[done+1 .. end]
                    begin = max(0, end - self.context)
                    windows.append((full[begin : end + 1], end - done))
                    done = end
                out.append(sum(score for score, _ in self._score(windows)))
            return out

        def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
            out = []
            for request in requests:
                context, settings = request.args
                until = settings.get("until") or []
                until = [until] if isinstance(until, str) else list(until)
                sample = settings.get("do_sample", False) and settings.get("temperature", 0.0) > 0
                result = self.generator.generate_full(
                    context,
                    int(settings.get("max_gen_toks", 64)),
                    temperature=float(settings.get("temperature", 0.0)) if sample else 0.0,
                    top_k=0,
                    stop=until,
                )
                out.append(result.text)
            return out

    return LlmtuiLM()


def run_harness(run, tasks: list[str], include: list[Path], limit: int | None, say=print) -> dict:
    """Score the run's model on lm-eval tasks (Keras configured); store and return {task: metrics}."""
    import logging
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")  # the harness's and datasets' progress bars
    for name in ("lm-eval", "lm_eval", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise LlmtuiError(
            "llmtui eval --harness needs EleutherAI's lm-evaluation-harness",
            hint="pip install 'lm_eval>=0.4,<0.5' (its tasks download their data the first time, "
            "unless --harness-include points at tasks with local data)",
        ) from None
    from llmtui.config import load_recipe
    from llmtui.evaluation.run_eval import model_digest, save_eval_report
    from llmtui.runfolder import load_final_model
    from llmtui.tokenizers import TextTokenizer

    recipe = load_recipe(run.recipe_path)
    for path in include:
        if not Path(path).is_dir():
            raise LlmtuiError(f"--harness-include {path}: no such folder", hint="give a folder of task YAML files")
    manager = TaskManager(include_path=[str(p) for p in include] or None)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise LlmtuiError(
            f"lm-eval has no task {', '.join(map(repr, unknown))}",
            hint="list them with `lm-eval ls tasks`, or add --harness-include FOLDER for your own",
        )
    adapter = make_adapter(
        load_final_model(run), TextTokenizer.load(run.tokenizer_dir), recipe.model.context, recipe.generate.use_cache
    )
    say(f"lm-eval {lm_eval.__version__ if hasattr(lm_eval, '__version__') else ''}: {', '.join(tasks)}")
    try:
        results = lm_eval.simple_evaluate(
            model=adapter,
            tasks=tasks,
            task_manager=manager,
            limit=limit,
            log_samples=False,
            bootstrap_iters=0,
            verbosity="ERROR",
        )
    except LlmtuiError:
        raise
    except Exception as exc:  # a task whose data cannot be read (offline download, missing file) ends here
        raise LlmtuiError(
            f"lm-eval could not run {', '.join(tasks)}: {type(exc).__name__}: {str(exc)[:400]}",
            hint="a standard task downloads its data set the first time; offline, use tasks whose "
            "data is local (--harness-include)",
        ) from None
    scores = {}
    for task, metrics in results["results"].items():
        scores[task] = {
            ("documents" if key == "sample_len" else key.split(",")[0]): value
            for key, value in metrics.items()
            if isinstance(value, (int, float))
            and not key.startswith("alias")
            and "stderr" not in key
            and not (isinstance(value, float) and math.isnan(value))
        }
    report = run.eval_report() or {}
    if report.get("model_digest") != model_digest(run):  # scores of another model do not carry over
        report = {}
    harness = dict(report.get("harness") or {})
    harness.update(scores)
    report["harness"] = harness
    if report.get("split") is None:
        report.setdefault("split", "harness")
    save_eval_report(run, report)
    return scores
