"""Task examples from small files: CSV, TSV or JSON Lines, one example per row or line.

Every problem names the file and the line (a missing field, an empty value, a line that is not JSON), so a
person can fix the file without guessing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from llmtui.errors import DataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


def read_examples(path: Path, fields: list[str]) -> list[dict[str, str]]:
    """The examples of `path`, each a dict holding (at least) `fields` as non-empty strings."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown example file type {path.suffix!r}", hint="use .csv, .tsv or .jsonl")
    text = _example_text(path)
    rows = (
        _jsonl_rows(path, text) if kind == "jsonl" else _table_rows(path, text, "\t" if kind == "tsv" else ",", fields)
    )
    examples = []
    for line, row in rows:
        example = {}
        for name in fields:
            value = row.get(name)
            if value is None:
                raise DataError(
                    f"{path}:{line}: missing field {name!r}",
                    hint=f"each example needs {', '.join(repr(f) for f in fields)}; the field names are "
                    "set in [finetune] (text_field, label_field, input_field, target_field)",
                )
            value = str(value).strip() if not isinstance(value, str) else value.strip()
            if not value:
                raise DataError(f"{path}:{line}: field {name!r} is empty")
            example[name] = value
        examples.append(example)
    if not examples:
        raise DataError(f"{path}: no examples", hint="the file is empty")
    return examples


def read_conversations(path: Path, field: str = "messages") -> list[dict]:
    """The conversations of a JSONL file: each line {field: [{"role": system|user|assistant, "content": str}, ...]}
    (the format Transformers' apply_chat_template reads), with at least one assistant turn."""
    from llmtui.tokenizers.chat import ROLES

    if path.suffix.lower() != ".jsonl":
        raise DataError(
            f"{path}: chat examples are JSON lines (.jsonl), one conversation per line",
            hint=f'each line: {{"{field}": [{{"role": "user", "content": "..."}}, '
            '{"role": "assistant", "content": "..."}]}',
        )
    text = _example_text(path)
    conversations = []
    for line, row in _jsonl_rows(path, text):
        messages = row.get(field)
        if not isinstance(messages, list) or not messages:
            raise DataError(
                f"{path}:{line}: no list of messages under {field!r}",
                hint="set finetune.messages_field to the key that holds them",
            )
        clean = []
        for number, message in enumerate(messages, start=1):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                role = message.get("role") if isinstance(message, dict) else message
                raise DataError(
                    f"{path}:{line}: message {number} has role {role!r}", hint=f"roles are {', '.join(ROLES)}"
                )
            content = message.get("content")
            if not isinstance(content, str) or not content.strip():
                raise DataError(f"{path}:{line}: message {number} ({message['role']}) has no text content")
            clean.append({"role": message["role"], "content": content})
        if not any(m["role"] == "assistant" for m in clean):
            raise DataError(f"{path}:{line}: the conversation has no assistant turn to learn from")
        conversations.append({field: clean})
    if not conversations:
        raise DataError(f"{path}: no conversations", hint="the file is empty")
    return conversations


def _jsonl_rows(path: Path, text: str):
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, found {type(row).__name__}")
        yield number, row


def _table_rows(path: Path, text: str, delimiter: str, fields: list[str]):
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    header = reader.fieldnames or []
    missing = [f for f in fields if f not in header]
    if missing:
        raise DataError(
            f"{path}:1: the header has no column {missing[0]!r} (columns: {', '.join(header) or 'none'})",
            hint="name the columns in [finetune] (text_field, label_field, input_field, target_field)",
        )
    for row in reader:
        yield reader.line_num, row


def split_examples(examples: list[dict], val_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded shuffle, then the last `val_fraction` (at least one example) held out."""
    import random

    if len(examples) < 2:
        raise DataError(
            f"{len(examples)} example is too few to hold some out for validation",
            hint="add examples or give finetune.val_file",
        )
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    held = max(1, round(len(shuffled) * val_fraction))
    return shuffled[:-held], shuffled[-held:]


def _example_text(path: Path) -> str:
    """An example file's text: UTF-8, or a clear error naming the file."""
    if not path.is_file():
        raise DataError(f"{path}: no such file", hint="check finetune.train_file / finetune.val_file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})", hint="save the file as UTF-8") from None
