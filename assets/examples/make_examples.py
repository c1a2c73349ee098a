"""Writes the tiny task files the fine-tuning recipes use (run from this folder: python make_examples.py).

The examples are made from small word lists, so they are ours to ship and easy to check by eye:
- sentiment.csv: short opinions about software, labelled positive or negative;
- qa.jsonl: questions about Python built-ins, several phrasings of each, with short answers;
- translation.jsonl: English colour-and-noun phrases with their French translations;
- chat.jsonl: conversations (`messages` with system/user/assistant roles, the format of Transformers'
  apply_chat_template) in which an assistant answers about Python built-ins and translates phrases, some over
  two turns.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

HERE = Path(__file__).parent

SUBJECTS = ["this library", "the new release", "the documentation", "the tutorial", "the installer", "this editor",
            "the test suite", "the command line tool", "the error message", "the web page", "this package",
            "the update"]
POSITIVE = ["is clear and helpful", "works perfectly", "is fast and reliable", "is a joy to use",
            "saved me hours", "is well written", "made everything easy", "is excellent"]
NEGATIVE = ["is confusing and slow", "crashed again", "is broken", "wasted my afternoon", "is badly written",
            "made everything harder", "is terrible", "keeps failing"]

FACTS = [  # (function, what it returns or does)
    ("len", "the number of items"), ("abs", "the absolute value"), ("sorted", "a new sorted list"),
    ("sum", "the total of the items"), ("max", "the largest item"), ("min", "the smallest item"),
    ("str", "a string version of an object"), ("int", "an integer"), ("repr", "a printable representation"),
    ("type", "the type of an object"), ("id", "the identity of an object"), ("hash", "the hash value"),
    ("open", "a file object"), ("range", "an immutable sequence of numbers"), ("reversed", "a reverse iterator"),
    ("zip", "an iterator of tuples"), ("enumerate", "pairs of a count and a value"), ("iter", "an iterator"),
    ("round", "a number rounded to given digits"), ("chr", "the character of a code point"),
    ("ord", "the code point of a character"), ("bool", "True or False"), ("dir", "a list of names"),
    ("input", "a line read from input"),
]
QUESTIONS = ["What does {f} return?", "What is returned by {f}?", "Which value does {f}() give back?",
             "What do you get from {f}?"]

NOUNS = [("cat", "chat", "m"), ("dog", "chien", "m"), ("house", "maison", "f"), ("book", "livre", "m"),
         ("table", "table", "f"), ("car", "voiture", "f"), ("tree", "arbre", "m"), ("flower", "fleur", "f")]
COLOURS = [("red", "rouge", "rouge"), ("green", "vert", "verte"), ("blue", "bleu", "bleue"),
           ("black", "noir", "noire"), ("white", "blanc", "blanche")]
NUMBERS = [("two", "deux"), ("three", "trois"), ("four", "quatre"), ("five", "cinq")]


def sentiment(rng: random.Random) -> list[dict]:
    rows = [{"text": f"{s.capitalize()} {p}.", "label": "positive"} for s in SUBJECTS for p in POSITIVE]
    rows += [{"text": f"{s.capitalize()} {p}.", "label": "negative"} for s in SUBJECTS for p in NEGATIVE]
    rng.shuffle(rows)
    return rows


def questions(rng: random.Random) -> list[dict]:
    rows = [{"input": q.format(f=f), "target": answer} for f, answer in FACTS for q in QUESTIONS]
    rng.shuffle(rows)
    return rows


def translations(rng: random.Random) -> list[dict]:
    rows = []
    for english, french, gender in NOUNS:
        article = "le" if gender == "m" else "la"
        if french[0] in "aeiou":
            article = "l'"
        for colour, masculine, feminine in COLOURS:
            adjective = masculine if gender == "m" else feminine
            space = "" if article == "l'" else " "
            rows.append({"input": f"the {colour} {english}", "target": f"{article}{space}{french} {adjective}"})
            plural = adjective if adjective.endswith("s") else adjective + "s"
            for number, nombre in NUMBERS:
                rows.append({"input": f"{number} {colour} {english}s", "target": f"{nombre} {french}s {plural}"})
    rng.shuffle(rows)
    return rows


SYSTEM = ["You are a helpful assistant.", "You answer in one short sentence.", "You help with Python and French."]
GREETINGS = ["Hello!", "Hi there.", "Good morning."]
REPLIES = ["Hello! How can I help?", "Hi! What would you like to know?", "Good morning! Ask me anything."]


def chats(rng: random.Random) -> list[dict]:
    """Conversations: a question about a built-in or a phrase to translate, answered in one sentence; some
    start with a greeting, some ask a second question."""
    def python_turn() -> tuple[str, str]:
        function, answer = rng.choice(FACTS)
        return rng.choice(QUESTIONS).format(f=function), f"{function}() returns {answer}."

    def french_turn() -> tuple[str, str]:
        row = rng.choice(translations(random.Random(rng.random())))
        return f"How do you say \"{row['input']}\" in French?", f"In French it is \"{row['target']}\"."

    rows = []
    for _ in range(160):
        messages = [{"role": "system", "content": rng.choice(SYSTEM)}] if rng.random() < 0.5 else []
        if rng.random() < 0.25:
            i = rng.randrange(len(GREETINGS))
            messages += [{"role": "user", "content": GREETINGS[i]}, {"role": "assistant", "content": REPLIES[i]}]
        for _ in range(1 + (rng.random() < 0.3)):
            question, answer = (python_turn if rng.random() < 0.5 else french_turn)()
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        rows.append({"messages": messages})
    return rows


def main() -> None:
    rng = random.Random(0)
    with open(HERE / "sentiment.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(sentiment(rng))
    for name, rows in (("qa.jsonl", questions(rng)), ("translation.jsonl", translations(rng)),
                       ("chat.jsonl", chats(rng))):
        with open(HERE / name, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


if __name__ == "__main__":
    main()
