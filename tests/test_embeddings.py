"""Token encodings: one-hot inputs, pretrained Word2Vec/GloVe vectors (reading, mapping, errors), projection,
freezing, and Word2Vec trained on the corpus itself. Every file is written by the test; models are tiny."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmtui.config import recipe_from_dict
from llmtui.errors import RecipeError
from llmtui.models.pretrained import VectorsError, detect_format, map_onto_vocabulary, read_vectors
from llmtui.tokenizers import train_tokenizer
from tests.helpers import tiny_recipe_dict

WORDS = ["the", "cat", "sat", "on", "mat", "Dog"]
MATRIX = np.arange(len(WORDS) * 4, dtype=np.float32).reshape(len(WORDS), 4) / 10 - 1.0


def write_word2vec_text(path, words=WORDS, matrix=MATRIX, count=None):
    lines = [f"{count if count is not None else len(words)} {matrix.shape[1]}"]
    lines += [w + " " + " ".join(f"{v:.6f}" for v in row) for w, row in zip(words, matrix)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_word2vec_binary(path, words=WORDS, matrix=MATRIX):
    with open(path, "wb") as f:
        f.write(f"{len(words)} {matrix.shape[1]}\n".encode())
        for word, row in zip(words, matrix):
            f.write(word.encode("utf-8") + b" " + row.astype("<f4").tobytes() + b"\n")
    return path


def write_glove(path, words=WORDS, matrix=MATRIX):
    path.write_text(
        "".join(w + " " + " ".join(f"{v:.6f}" for v in row) + "\n" for w, row in zip(words, matrix)), encoding="utf-8"
    )
    return path


def model_config(**model):
    base = {"arch": "gpt", "layers": 1, "dim": 16, "heads": 2, "context": 8}
    return recipe_from_dict({"model": {**base, **model}}).model


@pytest.mark.parametrize(
    "writer,fmt",
    [(write_word2vec_text, "word2vec"), (write_word2vec_binary, "word2vec_binary"), (write_glove, "glove")],
)
def test_the_three_formats_read_the_same_vectors(tmp_path, writer, fmt):
    path = writer(tmp_path / "vectors")
    assert detect_format(path) == fmt
    vectors = read_vectors(path)
    assert (vectors.format, vectors.dim, vectors.count, vectors.words) == (fmt, 4, len(WORDS), WORDS)
    np.testing.assert_allclose(vectors.matrix, MATRIX, atol=1e-6)
    kept = read_vectors(path, keep={"cat", "mat", "absent"})
    assert kept.words == ["cat", "mat"] and kept.count == len(WORDS)


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "empty"),
        ("the 0.1 0.2 0.3\ncat 0.1 0.2\n", "line 2: 2 numbers where 3 were expected"),
        ("the 0.1 0.2 0.3\ncat 0.1 zero 0.3\n", "line 2: 'zero' is not a number"),
        ("3 2\nthe 0.1 0.2\ncat 0.3 0.4\n", "header promises 3 vectors but the file holds 2"),
        ("2 3\nthe 0.1 0.2 0.3\ncat 0.1 0.2\n", "line 3: 2 numbers where 3 were expected"),
    ],
)
def test_malformed_text_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(VectorsError, match=message) as caught:
        read_vectors(path)
    assert str(path) in str(caught.value)


def test_truncated_binary_file_is_a_clear_error(tmp_path):
    path = write_word2vec_binary(tmp_path / "v.bin")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    with pytest.raises(VectorsError, match=r"truncated: vector 6 of 6"):
        read_vectors(path)


def test_missing_file_and_wrong_format_name(tmp_path):
    with pytest.raises(VectorsError, match="vectors file not found") as caught:
        read_vectors(tmp_path / "nope.txt")
    assert "llmtui embeddings train" in str(caught.value)
    with pytest.raises(VectorsError, match="Word2Vec file starts with 'COUNT DIM'"):
        read_vectors(write_glove(tmp_path / "g.txt"), format="word2vec")


def test_vectors_map_onto_words_and_pieces_with_a_coverage_report(tmp_path):
    tok = train_tokenizer(
        recipe_from_dict({"tokenizer": {"kind": "wordpiece", "vocab_size": 60}}).tokenizer,
        iter(["the cat sat on the mat", "the Dog sat"] * 20),
    )
    pieces = [tok.token(i) for i in range(tok.vocab_size)]
    suffix = next(p for p in pieces if p.startswith("##"))
    words = ["the", "cat", "dog", suffix[2:], "unrelated"]  # "Dog" matches "dog" lowercased; "##x" matches "x"
    matrix = np.random.default_rng(0).normal(size=(len(words), 4)).astype(np.float32)
    table, report = map_onto_vocabulary(tok, write_glove(tmp_path / "g.txt", words, matrix), seed=0)
    assert table.shape == (tok.vocab_size, 4)
    np.testing.assert_allclose(table[tok.backend.token_to_id("cat")], matrix[1], atol=1e-6)
    np.testing.assert_allclose(table[tok.backend.token_to_id("Dog")], matrix[2], atol=1e-6)
    assert report["matched_by"]["lowercase"] >= 1
    assert report["pieces"]["covered"] >= 1 and report["whole_words"]["covered"] >= 3
    assert report["covered"] == sum(report["matched_by"].values())
    assert report["coverage"] == pytest.approx(report["covered"] / report["tokens"])
    assert report["tokens"] == tok.vocab_size - 4 and report["missing_examples"]
    assert np.isfinite(table).all()


def test_vectors_sharing_no_token_with_the_vocabulary_are_an_error(tmp_path):
    tok = train_tokenizer(recipe_from_dict({"tokenizer": {"kind": "char"}}).tokenizer, iter(["abc"]))
    with pytest.raises(VectorsError, match="none of the 3 tokens"):
        map_onto_vocabulary(tok, write_glove(tmp_path / "g.txt", ["xyz"], MATRIX[:1]))


def test_pretrained_dimension_mismatch_is_an_error_or_a_projection():
    from llmtui.models.embedding import pretrained_table, token_embedding

    table = np.random.default_rng(0).normal(size=(30, 12)).astype(np.float32)
    with pretrained_table(table):
        with pytest.raises(RecipeError, match=r"12-dimensional vectors but model.dim is 16") as caught:
            token_embedding(model_config(embedding="pretrained", pretrained_path="v.txt"), 30, seed=0)
        assert "model.projection = true" in str(caught.value)
        layer = token_embedding(model_config(embedding="pretrained", pretrained_path="v.txt", projection=True), 30, 0)
    out = layer(np.array([[1, 2, 3]]))
    assert tuple(out.shape) == (1, 3, 16)
    embeddings = np.asarray(layer.embeddings.numpy())
    # The vectors keep their directions: one common factor scales them to the model's initial spread.
    factor = embeddings[0, 0] / table[0, 0]
    np.testing.assert_allclose(embeddings, table * factor, rtol=1e-5)
    assert 0.005 < np.sqrt(np.mean(embeddings**2)) < 0.05


def test_pretrained_without_a_path_is_a_recipe_error():
    with pytest.raises(RecipeError, match="needs model.pretrained_path"):
        model_config(embedding="pretrained")


def test_one_hot_refuses_a_large_vocabulary():
    from llmtui.models import build_model

    with pytest.raises(RecipeError, match="at most 2,048 tokens; this one has 5,000") as caught:
        build_model(model_config(embedding="onehot"), 5000, seed=0)
    assert "tokenizer.kind = 'char'" in str(caught.value)


def _train(model, steps, vocab=24, seed=0, jit=True):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    return [_step(model, seed * 1000 + i, vocab) for i in range(steps)]  # a repeating sequence worth learning


def _step(model, seed, vocab=24):
    rng = np.random.default_rng(seed)
    pattern = np.arange(64) % 6 + 1
    windows = np.stack([pattern[s : s + 9] for s in rng.integers(0, 50, size=8)]) % vocab
    return float(model.train_on_batch(windows[:, :-1], windows[:, 1:], return_dict=True)["loss"])


@pytest.mark.parametrize("arch", ["gpt", "lstm"])
def test_one_hot_model_trains_and_its_loss_falls(arch, tmp_path):
    import keras

    from llmtui.models import build_model
    from llmtui.runfolder import RunFolder, load_final_model

    model = build_model(model_config(arch=arch, embedding="onehot"), 24, seed=0)
    losses = _train(model, 40)
    assert np.mean(losses[-5:]) < losses[0] - 0.5
    # Saved and loaded like any model.
    run = RunFolder(tmp_path)
    run.final_model_path.parent.mkdir(parents=True)
    model.save(run.final_model_path)
    x = np.array([[1, 2, 3, 4]])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(load_final_model(run)(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-5
    )


def test_pretrained_embedding_frozen_for_n_steps_then_trained_and_frozen_for_good():
    from llmtui.models import build_model
    from llmtui.models.embedding import pretrained_table

    table = np.random.default_rng(0).normal(size=(24, 16)).astype(np.float32)
    with pretrained_table(table):
        model = build_model(model_config(embedding="pretrained", pretrained_path="v.txt", freeze_steps=3), 24, 0)
    embedding = model.get_layer("token_embedding")
    start = np.array(embedding.embeddings.numpy())
    moved = []
    losses = []
    for step in range(12):  # XLA-compiled steps; the step counter lives in the layer
        losses += _train(model, 1, seed=step) if step == 0 else [_step(model, step)]
        moved.append(float(np.abs(embedding.embeddings.numpy() - start).max()))
    assert moved[:3] == [0.0, 0.0, 0.0] and moved[3] > 0 and moved[-1] > moved[3]
    assert np.mean(losses[-3:]) < losses[0]  # the pretrained path learns

    frozen = build_model(model_config(freeze_steps=-1, tie_embeddings=False), 24, 0)
    layer = frozen.get_layer("token_embedding")
    before = np.array(layer.embeddings.numpy())
    losses = _train(frozen, 20, jit=False)
    assert np.array_equal(before, layer.embeddings.numpy())  # frozen for good...
    assert losses[-1] < losses[0]  # ...while the rest (the untied output too) learns


def test_word2vec_on_the_corpus_writes_glove_that_covers_the_vocabulary(tmp_path):
    from llmtui.models.word2vec import token_sentences, train_word2vec
    from llmtui.models.word2vec import write_glove as save_glove

    texts = ["the cat sat on the mat and the dog sat on the log"] * 30
    tok = train_tokenizer(recipe_from_dict({"tokenizer": {"kind": "bpe", "vocab_size": 280}}).tokenizer, iter(texts))
    ids = np.array([i for t in texts for i in tok.encode(t) + [tok.eos_id]])
    pieces = [tok.token(i) for i in range(tok.vocab_size)]
    sentences = list(token_sentences(ids, pieces, tok.eos_id))
    assert len(sentences) == 30 and sentences[0][0] == pieces[tok.encode(texts[0])[0]]
    words, matrix, summary = train_word2vec(sentences, dim=8, epochs=2, workers=1, seed=0)
    assert matrix.shape == (len(words), 8) and summary["vectors"] == len(words)
    path = tmp_path / "vectors.txt"
    assert save_glove(path, words, matrix) == 0
    assert detect_format(path) == "glove"
    _, report = map_onto_vocabulary(tok, path)
    used = {tok.token(i) for i in set(ids.tolist())} - {"<eos>"}
    assert report["covered"] >= len(used)  # every token the corpus uses has a vector


@pytest.mark.slow
def test_pretrained_path_trains_through_the_pipeline(corpus, tmp_path):
    """Word2Vec on the run's own tokens, then a tiny GPT starting from them: coverage reported, loss falls."""
    from llmtui.events import EventRecorder, Message, Metrics
    from llmtui.models.word2vec import token_sentences, train_word2vec
    from llmtui.models.word2vec import write_glove as save_glove
    from llmtui.pipeline import Pipeline

    runs = tmp_path / "runs"
    first = Pipeline(recipe_from_dict(tiny_recipe_dict(corpus, runs)), base_dir=tmp_path)
    first.execute(until="tokenizer")
    from llmtui.data.tokens import load_tokens
    from llmtui.tokenizers import TextTokenizer

    tok = TextTokenizer.load(first.run.tokenizer_dir)
    sentences = list(
        token_sentences(
            load_tokens(first.run.tokenizer_dir, "train"), [tok.token(i) for i in range(tok.vocab_size)], tok.eos_id
        )
    )
    words, matrix, _ = train_word2vec(sentences, dim=24, epochs=2, workers=1, seed=0)
    save_glove(tmp_path / "vectors.txt", words, matrix)  # " " and "\n" cannot be stored: they start random

    recipe = recipe_from_dict(
        tiny_recipe_dict(
            corpus,
            runs,
            model={"embedding": "pretrained", "pretrained_path": "vectors.txt", "projection": True, "freeze_steps": 10},
        )
    )
    recorder = EventRecorder()
    Pipeline(recipe, base_dir=tmp_path, sinks=[recorder]).execute(until="train")
    report = json.loads((first.run.model_dir / "embedding_report.json").read_text(encoding="utf-8"))
    assert report["dim"] == 24 and report["coverage"] > 0.8
    assert any(e.text.startswith("pretrained vectors:") for e in recorder.of_type(Message))
    train = [e for e in recorder.of_type(Metrics) if e.split == "train"]
    assert train[-1].values["loss"] < train[0].values["loss"] - 0.3
