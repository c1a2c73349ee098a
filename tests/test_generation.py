"""Generation: cached decoding against the full-window model, decoding methods, the CLI's generate and chat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from typer.testing import CliRunner

from llmtui.cli.app import app
from llmtui.config import recipe_from_dict
from llmtui.generation.search import (
    allowed_tokens,
    beam_search,
    first_stop,
    log_softmax,
    sample_next,
)
from tests.helpers import tiny_recipe_dict

ROOT = Path(__file__).resolve().parent.parent
CONTEXT = 12
VOCAB = 30
runner = CliRunner()


class CharTokenizer:
    """A stand-in tokenizer: one token per letter; id 0 is EOS (never in the text)."""

    alphabet = "abcdefghijklmnopqrstuvwxyz \n."
    eos_id = 0

    def encode(self, text: str) -> list[int]:
        return [self.alphabet.index(c) + 1 for c in text]

    def decode(self, ids) -> str:
        return "".join(self.alphabet[i - 1] for i in ids if i != self.eos_id)


def tiny_model(arch: str, **model):
    """A small model of `arch` with weights spread wide enough that its logits differ clearly by token."""
    from llmtui.models import build_model

    config = recipe_from_dict(
        {"model": {"arch": arch, "layers": 2, "dim": 32, "heads": 4, "context": CONTEXT, **model}}
    ).model
    built = build_model(config, VOCAB, seed=0)
    rng = np.random.default_rng(1)
    for variable in built.variables:
        if "float" in str(variable.dtype):
            variable.assign(np.asarray(variable) + rng.normal(0.0, 0.3, variable.shape).astype("float32"))
    return built


@pytest.fixture(scope="module")
def gpt_generator():
    """One tiny GPT and its generator, shared so the compiled programs are built once."""
    from llmtui.generation.sampler import Generator

    return Generator(tiny_model("gpt"), CharTokenizer(), CONTEXT)


ARCHS = [
    ("gpt", {}),
    ("llama", {"kv_heads": 2}),
    ("lstm", {}),
    ("gru", {}),
    ("rnn", {}),
    ("gpt", {"embedding": "onehot"}),
    ("gru", {"embedding": "onehot", "tie_embeddings": False}),
]


@pytest.mark.parametrize(
    "arch,model", ARCHS, ids=[f"{a}-{'-'.join(map(str, m.values())) or 'default'}" for a, m in ARCHS]
)
def test_cached_logits_match_the_full_window_model(arch, model):
    from llmtui.generation.decoder import decoder_for

    net = tiny_model(arch, **model)
    ids = np.random.default_rng(0).integers(1, VOCAB, size=(1, CONTEXT)).astype("int32")
    full = np.asarray(net(ids))[0]  # (T, V)
    decoder = decoder_for(net, CONTEXT)
    assert decoder is not None
    prompt = 5
    window = np.zeros((1, CONTEXT), dtype="int32")
    window[0, :prompt] = ids[0, :prompt]
    logits, state = decoder.step(window, decoder.initial_state(1), 0, prompt - 1)  # prefill
    np.testing.assert_allclose(logits[0], full[prompt - 1], atol=1e-4, rtol=1e-4)
    for t in range(prompt, CONTEXT):  # then one token per step
        logits, state = decoder.step(ids[:, t : t + 1], state, t, 0)
        np.testing.assert_allclose(logits[0], full[t], atol=1e-4, rtol=1e-4)
    assert np.abs(full).max() > 0.2  # the comparison is not between near-zero numbers


def test_the_decoder_reads_the_models_own_weights():
    from llmtui.generation.decoder import decoder_for

    net = tiny_model("gpt")
    decoder = decoder_for(net, CONTEXT)
    window = np.ones((1, CONTEXT), dtype="int32")
    before, _ = decoder.step(window, decoder.initial_state(1), 0, 3)
    final_norm = net.get_layer("final_norm")
    final_norm.beta.assign(np.asarray(final_norm.beta) + 1.0)  # like a training step between samples
    after, _ = decoder.step(window, decoder.initial_state(1), 0, 3)
    np.testing.assert_allclose(after[0], np.asarray(net(window[:, :4]))[0, 3], atol=1e-4, rtol=1e-4)
    assert not np.allclose(before, after)
    assert decoder_for(net, CONTEXT) is decoder  # built (and compiled) once per model


@pytest.mark.parametrize("arch", ["gpt", "llama", "lstm"])
def test_greedy_text_is_the_same_with_and_without_the_cache(arch):
    from llmtui.generation.sampler import Generator

    generator = Generator(tiny_model(arch, kv_heads=2 if arch == "llama" else 0), CharTokenizer(), CONTEXT)
    # 30 new tokens from a 5-token prompt run well past the 12-token context: the window restarts.
    cached = generator.generate_full("hello", 30, temperature=0, stop_at_eos=False)
    uncached = generator.generate_full("hello", 30, temperature=0, stop_at_eos=False, use_cache=False)
    assert cached.tokens == uncached.tokens and len(cached.tokens) == 30
    strict = Generator(generator.model, CharTokenizer(), CONTEXT, window_shift=1)  # strict sliding window
    assert strict.generate("hello", 20, temperature=0, stop_at_eos=False) == strict.generate(
        "hello", 20, temperature=0, stop_at_eos=False, use_cache=False
    )


def test_beam_search_with_one_beam_is_greedy_and_more_beams_score_at_least_as_well(gpt_generator):
    generator = gpt_generator
    greedy = generator.generate_full("the ca", 6, temperature=0, stop_at_eos=False)
    assert _model_beam(generator, "the ca", 1, 6) == greedy.tokens  # one beam is greedy decoding
    four = generator.generate_full("the ca", 6, beams=4, stop_at_eos=False)
    four_uncached = generator.generate_full("the ca", 6, beams=4, stop_at_eos=False, use_cache=False)
    assert four.tokens == four_uncached.tokens and len(four.tokens) == 6
    # Beam search's pick scores at least as well as greedy's (mean log-prob under the model itself).
    assert four.score >= _mean_log_prob(generator, "the ca", greedy.tokens) - 1e-6
    np.testing.assert_allclose(four.score, _mean_log_prob(generator, "the ca", four.tokens), atol=1e-4)


def _mean_log_prob(generator, prompt, tokens):
    ids = CharTokenizer().encode(prompt) + list(tokens)
    logits = np.asarray(generator.model(np.array([ids], dtype="int32")))[0]
    start = len(ids) - len(tokens)
    return float(np.mean([log_softmax(logits[i - 1])[ids[i]] for i in range(start, len(ids))]))


def _model_beam(generator, prompt, beams, max_tokens):
    rows = [CharTokenizer().encode(prompt)]

    def log_probs(parents, tokens):
        nonlocal rows
        if parents is not None:
            rows = [rows[p] + [int(t)] for p, t in zip(parents, tokens)]
        return log_softmax(np.asarray(generator.model(np.array(rows, dtype="int32")))[:, -1])

    return beam_search(log_probs, beams, max_tokens)[0]


def toy_log_probs(table):
    """A stub model: next-token probabilities chosen by the sequence so far (a dict of tuples)."""
    sequences = [()]

    def log_probs(parents, tokens):
        nonlocal sequences
        if parents is not None:
            sequences = [sequences[p] + (int(t),) for p, t in zip(parents, tokens)]
        with np.errstate(divide="ignore"):
            return np.log(np.array([table[s] for s in sequences]))

    return log_probs


def test_beam_search_finds_the_best_sequence_greedy_misses():
    # Tokens: 0 = EOS, 1 = "a", 2 = "b". Greedy takes "a" (0.6) and then faces a flat 1/3 split;
    # "b" (0.4) is followed by EOS at 0.99. Scores (mean log-prob over tokens incl. EOS):
    #   b EOS: (ln 0.4 + ln 0.99) / 2 = -0.463   a a / a b: (ln 0.6 + ln 0.34) / 2 = -0.795
    table = {
        (): [0.0, 0.6, 0.4],
        (1,): [0.33, 0.34, 0.33],
        (2,): [0.99, 0.005, 0.005],
        (1, 1): [1.0, 0.0, 0.0],
        (1, 2): [1.0, 0.0, 0.0],
        (2, 1): [1.0, 0.0, 0.0],
        (2, 2): [1.0, 0.0, 0.0],
    }
    greedy, _ = beam_search(toy_log_probs(table), beams=1, max_tokens=2, eos_id=0)
    assert greedy == [1, 1]
    best, score = beam_search(toy_log_probs(table), beams=2, max_tokens=2, eos_id=0)
    assert best == [2]  # the EOS ends it and is not returned
    assert score == pytest.approx((np.log(0.4) + np.log(0.99)) / 2)
    # Without EOS handling the EOS is an ordinary token.
    assert beam_search(toy_log_probs(table), beams=2, max_tokens=2, eos_id=None)[0] == [2, 0]


def test_beam_search_ends_a_hypothesis_when_told():
    table = {
        (): [0.0, 0.5, 0.5],
        (1,): [0.0, 0.9, 0.1],
        (2,): [0.0, 0.1, 0.9],
        (1, 1): [0.0, 0.5, 0.5],
        (1, 2): [0.0, 0.5, 0.5],
        (2, 1): [0.0, 0.5, 0.5],
        (2, 2): [0.0, 0.5, 0.5],
    }
    best, _ = beam_search(toy_log_probs(table), beams=2, max_tokens=3, eos_id=0, finished_fn=lambda s: len(s) == 2)
    assert len(best) == 2 and best in ([1, 1], [2, 2])


def test_stop_strings_cut_the_text(gpt_generator):
    generator = gpt_generator
    text = generator.generate("the ", 20, temperature=0, stop_at_eos=False)
    stop = text[4:6]
    cut = text[: text.find(stop)]
    result = generator.generate_full("the ", 20, temperature=0, stop_at_eos=False, stop=["zzzzz", stop])
    assert result.text == cut and result.finish == "stop"
    assert generator.generate("the ", 20, beams=3, stop_at_eos=False, stop=[stop]).find(stop) == -1
    pieces = []
    streamed = generator.generate("the ", 20, temperature=0, stop_at_eos=False, stop=[stop], on_text=pieces.append)
    assert "".join(pieces) == streamed == cut
    assert first_stop("abcabc", ["c", "b"]) == 1 and first_stop("abc", ["x", ""]) is None


def test_same_seed_same_text_and_sampling_respects_top_k_and_top_p():
    from llmtui.generation.sampler import Generator

    generator = Generator(tiny_model("lstm"), CharTokenizer(), CONTEXT)
    first = generator.generate("the ", 25, temperature=1.0, top_k=0, seed=7, stop_at_eos=False)
    assert generator.generate("the ", 25, temperature=1.0, top_k=0, seed=7, stop_at_eos=False) == first
    assert generator.generate("the ", 25, temperature=1.0, top_k=0, seed=7, stop_at_eos=False, use_cache=False) == first
    logits = np.array([3.0, 2.0, 1.0, 0.5, 0.0, -1.0])
    rng = np.random.default_rng(0)
    assert {sample_next(logits, rng, 1.0, 2, 1.0) for _ in range(300)} == {0, 1}
    # probabilities ~ .61 .22 .08 .05 .03 .01: top_p 0.8 keeps the first two, 0.85 the first three.
    assert {sample_next(logits, rng, 1.0, 0, 0.8) for _ in range(300)} == {0, 1}
    assert {sample_next(logits, rng, 1.0, 0, 0.85) for _ in range(400)} == {0, 1, 2}
    assert {sample_next(logits, rng, 5.0, 3, 0.999) for _ in range(300)} <= {0, 1, 2}
    assert sample_next(logits, rng, 0.0, 0, 1.0) == 0
    probs = allowed_tokens(logits, 0, 0.8)
    assert probs.sum() == pytest.approx(1.0) and np.count_nonzero(probs) == 2


@pytest.mark.parametrize("arch", ["gpt", "lstm"])
def test_the_compiled_sampling_loop_draws_the_host_samplers_tokens(arch):
    """Cached batch-1 sampling runs its token loop compiled, in chunks; for every setting it gives the tokens of
    the host loop (full-window path), through window restarts (context 12, 70 tokens) and chunk ends."""
    from llmtui.generation.loop import CHUNK
    from llmtui.generation.sampler import Generator

    generator = Generator(tiny_model(arch), CharTokenizer(), CONTEXT)
    assert 70 > 2 * CHUNK
    for temperature, top_k, top_p, seed in [(1.0, 0, 1.0, 3), (0.8, 5, 1.0, 4), (1.5, 0, 0.7, 5), (0.0, 0, 1.0, 0)]:
        cached = generator.generate_full("the ", 70, temperature, top_k, top_p, seed, stop_at_eos=False)
        host = generator.generate_full("the ", 70, temperature, top_k, top_p, seed, stop_at_eos=False, use_cache=False)
        assert cached.tokens == host.tokens and len(cached.tokens) == 70, (temperature, top_k, top_p)
    assert generator._loop is not None  # the compiled loop did the cached sampling
    # A new generator of the same model (one per sample during training) reuses the compiled programs.
    again = Generator(generator.model, CharTokenizer(), CONTEXT)
    again.generate("the ", 5, 1.0, 0, 1.0, 3, stop_at_eos=False)
    assert again._loop is generator._loop
    # Stop strings and the EOS end the text inside a chunk exactly where the host loop ends it.
    sample = generator.generate("the ", 40, 1.0, 0, 1.0, 9, stop_at_eos=False)
    stop = sample[15:17]
    for use_cache in (True, False):
        result = generator.generate_full(
            "the ", 40, 1.0, 0, 1.0, 9, stop_at_eos=False, stop=[stop], use_cache=use_cache
        )
        assert result.finish == "stop" and result.text == sample[: sample.index(stop)]


def test_a_prompt_longer_than_the_context_keeps_its_end_and_warns(gpt_generator):
    generator = gpt_generator
    long_prompt = "the quick brown fox jumps"  # 25 tokens, context 12
    result = generator.generate_full(long_prompt, 6, temperature=0, stop_at_eos=False)
    assert result.warning and "last 12 tokens" in result.warning and generator.last_warning == result.warning
    assert result.text == generator.generate(long_prompt[-CONTEXT:], 6, temperature=0, stop_at_eos=False)
    assert generator.generate_full("the", 3, temperature=0).warning is None
    assert (
        generator.generate_full(long_prompt, 6, temperature=0, stop_at_eos=False, use_cache=False).text == result.text
    )


def test_an_empty_prompt_starts_from_eos():
    from llmtui.generation.sampler import Generator

    generator = Generator(tiny_model("gru"), CharTokenizer(), CONTEXT)
    result = generator.generate_full("", 5, temperature=0, stop_at_eos=False)
    assert result.prompt_tokens == 1 and len(result.tokens) == 5


JAX_SCRIPT = """
import json, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from llmtui.backend import configure_backend
configure_backend("jax")
import keras, numpy as np
from tests.test_generation import CharTokenizer, tiny_model, CONTEXT
from llmtui.generation.decoder import decoder_for
from llmtui.generation.sampler import Generator
out = {"backend": keras.backend.backend()}
for arch in ("llama", "gru"):
    net = tiny_model(arch, kv_heads=2 if arch == "llama" else 0)
    ids = np.random.default_rng(0).integers(1, 30, size=(1, CONTEXT)).astype("int32")
    full = np.asarray(net(ids))[0]
    decoder = decoder_for(net, CONTEXT)
    window = np.zeros((1, CONTEXT), dtype="int32"); window[0, :4] = ids[0, :4]
    logits, state = decoder.step(window, decoder.initial_state(1), 0, 3)
    errors = [float(np.abs(logits[0] - full[3]).max())]
    for t in range(4, CONTEXT):
        logits, state = decoder.step(ids[:, t:t + 1], state, t, 0)
        errors.append(float(np.abs(logits[0] - full[t]).max()))
    generator = Generator(net, CharTokenizer(), CONTEXT)
    cached = generator.generate("hello", 20, temperature=0, stop_at_eos=False)
    uncached = generator.generate("hello", 20, temperature=0, stop_at_eos=False, use_cache=False)
    beams = generator.generate_full("hello", 6, beams=3, stop_at_eos=False)  # tokens: EOS decodes to no text
    out[arch] = {"error": max(errors), "same_text": cached == uncached, "beams": len(beams.tokens)}
print(json.dumps(out))
"""


def test_cached_generation_on_jax_in_a_subprocess():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    for arch in ("llama", "gru"):
        assert result[arch]["error"] < 1e-4 and result[arch]["same_text"] and result[arch]["beams"] == 6


# The command line on a real tiny run -------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from tests.helpers import write_corpus

    root = tmp_path_factory.mktemp("generation")
    corpus = write_corpus(root / "corpus")
    recipe = root / "tiny.toml"
    recipe.write_text(
        tomli_w.dumps(
            tiny_recipe_dict(
                corpus,
                root / "runs",
                train={"steps": 20},
                generate={"prompts": ["the "], "max_tokens": 12, "beams": 2, "stop": ["zz"]},
            )
        ),
        encoding="utf-8",
    )
    result = runner.invoke(app, ["run", str(recipe)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + result.stderr
    samples = json.loads((root / "runs" / "tiny" / "generate" / "samples.json").read_text(encoding="utf-8"))
    assert samples["samples"][0]["prompt"] == "the "  # the pipeline's generate stage ran with beams and stop
    return root / "runs" / "tiny"


def test_cli_generate_with_options_and_recipe_defaults(trained_run):
    run = str(trained_run)
    long_prompt = "the model reads text and learns " * 2
    base = ["generate", run, "--max-tokens", "10", "--temperature", "0", "--prompt", "the "]
    cached = runner.invoke(app, base + ["--prompt", long_prompt])
    assert cached.exit_code == 0, cached.output + cached.stderr
    assert cached.output.startswith("the ") and long_prompt in cached.output
    assert "only its last 16 tokens" in cached.stderr  # the long prompt is cut to the context, with a warning
    uncached = runner.invoke(app, base + ["--prompt", long_prompt, "--no-cache"])
    assert uncached.output == cached.output
    single = runner.invoke(app, base)
    assert single.exit_code == 0 and cached.output.startswith(single.output)
    continuation = single.output[len("the ") : -1]
    if len(continuation) > 3:
        stop = continuation[2:4]
        stopped = runner.invoke(app, base + ["--stop", stop, "--stop", "qqq"])
        assert stopped.output == "the " + continuation[: continuation.find(stop)] + "\n"
    defaults = runner.invoke(app, ["generate", run, "--beams", "3"])  # prompts and max_tokens from the recipe
    assert defaults.exit_code == 0, defaults.output + defaults.stderr
    assert defaults.output.startswith("the ")


def test_cli_chat_turns_reset_and_quit(trained_run):
    result = runner.invoke(
        app,
        ["chat", str(trained_run), "--max-tokens", "8", "--temperature", "0"],
        input="hello\n/reset\nthe model\n/quit\nnever read\n",
    )
    assert result.exit_code == 0, result.output + result.stderr
    assert "conversation cleared" in result.output and "Traceback" not in result.output
    assert result.output.count("> ") >= 3
    eof = runner.invoke(app, ["chat", str(trained_run), "--max-tokens", "4"], input="the\n")  # then Ctrl-D
    assert eof.exit_code == 0, eof.output + eof.stderr


def test_generate_and_chat_without_a_final_model_fail_cleanly(trained_run, tmp_path):
    import shutil

    copy = tmp_path / "untrained"
    shutil.copytree(trained_run, copy, ignore=shutil.ignore_patterns("*.keras", "checkpoints"))
    for command in ("generate", "chat"):
        result = runner.invoke(app, [command, str(copy)], input="/quit\n")
        assert result.exit_code == 1
        assert "no trained model" in result.stderr and "Traceback" not in result.output + result.stderr
