"""Tokenizer speed: our encoding against a direct `tokenizers` batch call, and BPE training on 100 MB.

Baselines are measured in the same run, on the same text:
- encoding: `TextTokenizer.encode_batch` in the pipeline's batches, and the pipeline's whole `encode_split`
  (JSON lines in, token file out), against one `tokenizers.Tokenizer.encode_batch` call over the same texts;
- training: `train_tokenizer` (kind bpe) against the same BpeTrainer called directly.

Text: ../shared/data/tinyshakespeare.txt when present (repeated to the sizes asked), else generated
English-like text. Results go to bench/results/bench_tokenizers.json.

    python bench/bench_tokenizers.py [--encode-mb 5] [--train-mb 100] [--vocab 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmtui.config import recipe_from_dict  # noqa: E402
from llmtui.tokenizers import train_tokenizer  # noqa: E402

SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
MB = 1_000_000


def base_text() -> tuple[str, str]:
    if SHAKESPEARE.exists():
        return SHAKESPEARE.read_text(encoding="utf-8"), str(SHAKESPEARE)
    rng = random.Random(0)
    words = (
        "the of and to in is was that for it with as his on be at by had not are but from or have an "
        "they which one you were all her she there would their we him been has when who will more no if "
        "out so said what up its about into than them can only other new some could time these two may "
        "then do first any my now such like our over man me even most made after also did many before "
        "must through back years where much your way well down should because each just those people"
    ).split()
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))).capitalize() + "." for _ in range(30_000)]
    return "\n".join(lines), "generated"


def documents(text: str, megabytes: float, chunk_chars: int = 4000) -> list[str]:
    """Chunks of about `chunk_chars` at line breaks (as the data stage makes them), repeated to `megabytes`."""
    chunks, current, size = [], [], 0
    for line in text.splitlines(keepends=True):
        current.append(line)
        size += len(line)
        if size >= chunk_chars:
            chunks.append("".join(current).strip())
            current, size = [], 0
    if current:
        chunks.append("".join(current).strip())
    out, total = [], 0
    while total < megabytes * MB:
        for chunk in chunks:
            out.append(chunk)
            total += len(chunk.encode("utf-8"))
            if total >= megabytes * MB:
                break
    return out


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def bench_encoding(text: str, megabytes: float, vocab: int, repeats: int) -> dict:
    from llmtui.data.tokens import ENCODE_BATCH, encode_split

    docs = documents(text, megabytes)
    size = sum(len(d.encode("utf-8")) for d in docs)
    config = recipe_from_dict({"tokenizer": {"kind": "bpe", "vocab_size": vocab}}).tokenizer
    tokenizer = train_tokenizer(config, iter(docs[: max(1, len(docs) // 4)]))
    backend = tokenizer.backend

    def direct() -> None:  # the baseline: one batch call of `tokenizers`, ids materialised
        for encoding in backend.encode_batch(docs, add_special_tokens=False):
            _ = encoding.ids  # materialised, as ours are

    def ours() -> None:  # our API, in the pipeline's batch size
        for start in range(0, len(docs), ENCODE_BATCH):
            tokenizer.encode_batch(docs[start : start + ENCODE_BATCH])

    with tempfile.TemporaryDirectory() as folder:
        split = Path(folder) / "train.jsonl"
        with open(split, "w", encoding="utf-8") as f:
            for doc in docs:
                f.write(json.dumps({"text": doc}) + "\n")

        def pipeline() -> None:  # the tokenizer stage's work: JSON lines in, uint16 token file out
            encode_split(tokenizer, split, Path(folder) / "train.bin")

        # Interleave so a noisy neighbour on a shared machine hits all three alike.
        seconds = {"direct": [], "ours": [], "pipeline": []}
        for _ in range(repeats):
            for name, fn in (("direct", direct), ("ours", ours), ("pipeline", pipeline)):
                seconds[name].append(best_of(1, fn))
    best = {name: min(values) for name, values in seconds.items()}
    mbps = {name: size / MB / value for name, value in best.items()}
    return {
        "megabytes": round(size / MB, 3),
        "documents": len(docs),
        "vocab_size": tokenizer.vocab_size,
        "tokens": sum(len(ids) for ids in tokenizer.encode_batch(docs)),
        "seconds": {k: round(v, 4) for k, v in best.items()},
        "mb_per_s": {k: round(v, 3) for k, v in mbps.items()},
        "ours_vs_direct": round(mbps["ours"] / mbps["direct"], 3),
        "pipeline_vs_direct": round(mbps["pipeline"] / mbps["direct"], 3),
        "within_20_percent": mbps["ours"] >= 0.8 * mbps["direct"],
    }


def bench_training(text: str, megabytes: float, vocab: int) -> dict:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from llmtui.tokenizers.text_tokenizer import SPECIAL_TOKENS

    docs = documents(text, megabytes)
    size = sum(len(d.encode("utf-8")) for d in docs)
    config = recipe_from_dict({"tokenizer": {"kind": "bpe", "vocab_size": vocab}}).tokenizer

    began = time.perf_counter()
    ours = train_tokenizer(config, iter(docs))
    ours_seconds = time.perf_counter() - began

    began = time.perf_counter()
    direct = Tokenizer(models.BPE())
    direct.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    direct.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    direct.train_from_iterator(docs, trainer=trainer)
    direct_seconds = time.perf_counter() - began
    return {
        "megabytes": round(size / MB, 3),
        "documents": len(docs),
        "vocab_size": ours.vocab_size,
        "seconds": {"ours": round(ours_seconds, 3), "direct": round(direct_seconds, 3)},
        "mb_per_s": {"ours": round(size / MB / ours_seconds, 3), "direct": round(size / MB / direct_seconds, 3)},
        "ours_vs_direct_time": round(ours_seconds / direct_seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encode-mb", type=float, default=5.0, help="Megabytes of text to encode.")
    parser.add_argument("--train-mb", type=float, default=100.0, help="Megabytes of text to train BPE on.")
    parser.add_argument("--vocab", type=int, default=4096, help="BPE vocabulary size.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed repeats of each encoding (best kept).")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bench_tokenizers.json")
    args = parser.parse_args()

    import tokenizers

    text, source = base_text()
    load_before = os.getloadavg()
    encoding = bench_encoding(text, args.encode_mb, args.vocab, args.repeats)
    print(
        f"encoding {encoding['megabytes']} MB: direct {encoding['mb_per_s']['direct']} MB/s, "
        f"ours {encoding['mb_per_s']['ours']} MB/s ({encoding['ours_vs_direct']:.2f}×), "
        f"pipeline encode_split {encoding['mb_per_s']['pipeline']} MB/s ({encoding['pipeline_vs_direct']:.2f}×)",
        flush=True,
    )
    training = bench_training(text, args.train_mb, args.vocab)
    print(
        f"BPE training on {training['megabytes']} MB (vocab {args.vocab}): ours {training['seconds']['ours']} s, "
        f"direct {training['seconds']['direct']} s",
        flush=True,
    )
    results = {
        "benchmark": "tokenizers",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "text": source,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "tokenizers": tokenizers.__version__,
            # Other work on the machine slows both sides alike; the ratios are what count.
            "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        },
        "encoding": encoding,
        "bpe_training": training,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
