"""Cleaning steps and filters, one at a time, and the report entries they leave."""

from __future__ import annotations

from collections import Counter

import pytest

from llmtui.config import recipe_from_dict
from llmtui.data.cleaning import Cleaner, duplicate_ngram_share, scrub_pii, top_ngram_share
from llmtui.data.prepare import prepare_data, read_split
from llmtui.errors import DataError, RecipeError


def cleaner(**data) -> Cleaner:
    return Cleaner(recipe_from_dict({"data": data}).data)


def test_default_cleaning():
    raw = "Cafe\u0301  \r\nline\x07 two\t \n\n\n\nend  "
    assert cleaner().clean(raw).text == "Caf\u00e9\nline two\n\nend"


def test_mojibake_is_repaired_and_counted():
    result = cleaner().clean("The caf\u00c3\u00a9 served cr\u00c3\u00a8me br\u00c3\u00bbl\u00c3\u00a9e")
    assert result.text == "The caf\u00e9 served cr\u00e8me br\u00fbl\u00e9e" and result.repaired
    off = cleaner(clean={"fix_encoding": False}).clean("caf\u00c3\u00a9")
    assert off.text == "caf\u00c3\u00a9" and not off.repaired


def test_nfkc_lowercase_markup_and_allowed_characters():
    assert cleaner(clean={"normalize": "nfkc"}).clean("\ufb01ne \u2460").text == "fine 1"
    assert cleaner(clean={"normalize": "nfc"}).clean("\ufb01ne").text == "\ufb01ne"
    assert cleaner(lowercase=True).clean("MiXeD").text == "mixed"
    markup = cleaner(clean={"strip_markup": True}).clean("<p>Fish &amp; chips</p><!-- c --> a < b and b > c")
    assert markup.text == "Fish & chips a < b and b > c"
    ascii_only = cleaner(clean={"allowed_chars": "a-z ."}).clean("ok. caf\u00e9 \u2603 done.")
    assert ascii_only.text == "ok. caf  done."  # runs of spaces stay (indentation)
    raw = cleaner(clean={"whitespace": False, "control_chars": False}).clean("a  b\x07\n")
    assert raw.text == "a  b\x07"


def test_pii_scrubbing():
    counts = Counter()
    text = (
        "Mail jane.doe@example.com or call +44 20 7946 0958 / (555) 123-4567; server 192.168.1.20. "
        "Released 2023-01-15, version 3.11.7, 12 apples."
    )
    out = scrub_pii(text, ["email", "phone", "ip"], counts)
    assert out == (
        "Mail <EMAIL> or call <PHONE> / <PHONE>; server <IP>. Released 2023-01-15, version 3.11.7, 12 apples."
    )
    assert counts == {"email": 1, "phone": 2, "ip": 1}
    assert scrub_pii(text, ["email"], Counter()).count("<") == 1


def test_gopher_measures():
    words = "the cat sat on the mat".split()
    assert top_ngram_share(words, 2) == 0.0  # no 2-gram repeats
    repeated = "buy now buy now buy now cheap".split()
    assert top_ngram_share(repeated, 2) > 0.7
    assert duplicate_ngram_share("a b c d e a b c d e".split(), 5) == 1.0
    assert duplicate_ngram_share("a b c d e f g h i j".split(), 5) == 0.0


def test_document_filters_are_named_by_their_recipe_key():
    c = cleaner(
        min_chars=5,
        filters={
            "max_chars": 200,
            "min_words": 3,
            "max_symbol_ratio": 0.1,
            "min_alpha_words": 0.8,
            "max_duplicate_lines": 0.3,
            "max_top_ngram": 0.3,
            "max_duplicate_ngrams": 0.3,
        },
    )
    assert c.rejected_by("tiny") == "min_chars"
    assert c.rejected_by("word " * 60) == "filters.max_chars"
    assert c.rejected_by("two words") == "filters.min_words"
    assert c.rejected_by("# # # # a heading with hashes") == "filters.max_symbol_ratio"
    assert c.rejected_by("12 34 56 78 90 words") == "filters.min_alpha_words"
    assert c.rejected_by("same line here\nsame line here\nsame line here\nother one") == "filters.max_duplicate_lines"
    assert c.rejected_by("spam eggs spam eggs spam eggs and more") == "filters.max_top_ngram"
    assert c.rejected_by("one two three four five six seven one two three four five") == "filters.max_duplicate_ngrams"
    assert c.rejected_by("A normal sentence, with ordinary words in it.") is None


def test_c4_line_filter():
    c = cleaner(filters={"c4_lines": True})
    result = c.clean("A proper sentence ends here.\nMenu\nEnable javascript to continue.\nAnother good line!")
    c.filter_lines(result)
    assert result.text == "A proper sentence ends here.\nAnother good line!"
    assert result.lines_removed == {"filters.c4_lines": 2}


def test_boilerplate_lines_across_documents_are_removed(tmp_path):
    for i in range(12):
        body = f"Story {i} tells of a place called town{i} and its people.\nIt rained there on day {i}.\n"
        (tmp_path / f"d{i:02d}.txt").write_text("Home | About | Contact\n" + body + "Copyright 2024 Example Ltd\n")
    config = recipe_from_dict(
        {"data": {"sources": ["*.txt"], "val_fraction": 0.2, "filters": {"boilerplate_min_docs": 5}}}
    ).data
    report = prepare_data(config, 0, tmp_path / "out", tmp_path)
    texts = [t for s in ("train", "val") for t in read_split(tmp_path / "out" / f"{s}.jsonl")]
    assert len(texts) == 12
    assert not any("Home | About" in t or "Copyright" in t for t in texts)
    assert all(t.startswith("Story") for t in texts)
    assert report.lines_removed == {"filters.boilerplate_min_docs": 24}
    assert not list((tmp_path / "out").glob("*spool*")) and not list((tmp_path / "out").glob("*.npy"))


def test_filters_and_pii_in_the_report(tmp_path):
    (tmp_path / "a.txt").write_text("Write to someone@example.org about the plan for the week ahead.")
    (tmp_path / "b.txt").write_text("#### ### ## # ...")
    (tmp_path / "c.txt").write_text("A good ordinary document with plenty of words in it.")
    config = recipe_from_dict(
        {"data": {"sources": ["*.txt"], "clean": {"scrub_pii": ["email"]}, "filters": {"max_symbol_ratio": 0.5}}}
    ).data
    report = prepare_data(config, 0, tmp_path / "out", tmp_path)
    assert report.dropped_by_filter == {"filters.max_symbol_ratio": 1}
    assert report.pii_scrubbed == {"email": 1}
    assert report.documents_kept == 2


def test_empty_corpus_names_the_filter_that_removed_everything(tmp_path):
    (tmp_path / "a.txt").write_text("only three words")
    (tmp_path / "b.txt").write_text("four words right here")
    config = recipe_from_dict({"data": {"sources": ["*.txt"], "filters": {"min_words": 10}}}).data
    with pytest.raises(DataError, match=r"filters.min_words removed 2.*loosen data.filters.min_words"):
        prepare_data(config, 0, tmp_path / "out", tmp_path)
    assert not list((tmp_path / "out").glob("*.jsonl*"))


def test_bad_cleaning_settings_are_recipe_errors():
    with pytest.raises(RecipeError, match="allowed_chars"):
        recipe_from_dict({"data": {"clean": {"allowed_chars": "z-a"}}})
    with pytest.raises(RecipeError, match="scrub_pii"):
        recipe_from_dict({"data": {"clean": {"scrub_pii": ["ssn"]}}})
    with pytest.raises(RecipeError, match="unknown key; did you mean 'min_words'"):
        recipe_from_dict({"data": {"filters": {"min_word": 3}}})
