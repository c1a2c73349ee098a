"""The recipe: one validated section per pipeline stage.

Every field has a default and a one-line description (shown by `llmtui schema` and in editors).
Section and key names follow docs/DESIGN.md ("The recipe"); scripts around the project rely on them.
Each stage receives only its own section (plus `run`), never the whole recipe.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

RUN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class Section(BaseModel):
    """Base for every recipe section: unknown keys are errors, values are checked on assignment."""

    # Non-finite floats (inf, nan) are never a sensible setting; a boolean is refused where a number is meant
    # (pydantic would read true as 1).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info) -> Any:
        annotation = cls.model_fields[info.field_name].annotation
        if _has_bool(value) and _takes_numbers(annotation) and not _takes_bools(annotation):
            raise ValueError(f"expected a number, got {_short(value)} (a boolean)")
        return value


def _type_tree(annotation: Any) -> list[Any]:
    found, todo = [], [annotation]
    while todo:
        node = todo.pop()
        found.append(node)
        todo.extend(typing.get_args(node))
    return found


def _takes_bools(annotation: Any) -> bool:
    return any(node is bool or node is Any for node in _type_tree(annotation))


def _takes_numbers(annotation: Any) -> bool:
    return any(node in (int, float) for node in _type_tree(annotation))


def _has_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return any(isinstance(item, bool) for item in value)
    return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class RunConfig(Section):
    """Where the run lives and how it is seeded."""

    name: str = Field(
        "untitled",
        min_length=1,
        pattern=RUN_NAME_PATTERN,
        description="Run name; the run folder is <out_dir>/<name>. Not set in a recipe file: the "
        "file's name without .toml (mytext.toml -> runs/mytext).",
    )
    out_dir: str = Field(
        "runs",
        min_length=1,
        description="Folder that holds run folders; relative paths resolve against the working folder.",
    )
    seed: int = Field(0, ge=0, description="Seed for data splitting, weight initialisation, batching and sampling.")
    backend: Literal["tensorflow", "jax", "torch"] = Field(
        "tensorflow", description="Keras backend; the KERAS_BACKEND environment variable overrides it."
    )


class SourceConfig(Section):
    """One data source with options (a plain string in `sources` is the same with defaults)."""

    path: str = Field(
        ...,
        min_length=1,
        description="A file, folder, glob pattern, http(s) URL, hf:<dataset name>, or builtin:<name> corpus.",
    )
    include: list[str] = Field(
        default_factory=list,
        description="Glob patterns of file names to read inside a folder; empty = every "
        "supported format (.txt .md .jsonl .json .csv .tsv .parquet .html, "
        "optionally .gz/.zst/.bz2/.xz). Other files are counted as ignored.",
    )
    exclude: list[str] = Field(default_factory=list, description="Glob patterns of file names to skip inside a folder.")
    format: Literal["auto", "text", "markdown", "jsonl", "json", "csv", "tsv", "parquet", "html"] = Field(
        "auto",
        description="File format; auto decides by the file name (.txt .md .jsonl .json .csv .tsv .parquet "
        ".html, optionally .gz/.zst/.bz2/.xz).",
    )
    text_field: str = Field(
        "text",
        min_length=1,
        description="Where the text is: a JSON path such as meta.body or items.*.text "
        "(* = every item), or a CSV/Parquet/dataset column.",
    )
    encoding: str = Field(
        "auto",
        description="Text encoding: auto (UTF-8, else Windows-1252, counted as "
        "repaired_encoding) or a codec name read strictly (e.g. utf-8, latin-1).",
    )
    crawl: bool = Field(False, description="URL sources: follow links from the page.")
    max_depth: int = Field(1, ge=0, le=20, description="URL crawl: how many links away from the start page to go.")
    max_pages: int = Field(20, ge=1, le=100_000, description="URL crawl: at most this many page requests.")
    same_domain: bool = Field(True, description="URL crawl: only follow links to the start page's host.")
    subset: str = Field("", description="hf: sources: the dataset configuration (subset) name, if it has several.")
    split: str = Field("train", min_length=1, description="hf: sources: the dataset split to read.")
    limit: int = Field(0, ge=0, description="Read at most this many documents from this source (0 = no limit).")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        if value != "auto":
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(
                    f"unknown text encoding {value!r}; use auto or a codec name such as utf-8 or latin-1"
                ) from None
        return value


class CleanConfig(Section):
    """Cleaning steps applied to every document, in this order (each can be turned off)."""

    fix_encoding: bool = Field(True, description="Repair mojibake (UTF-8 read as another encoding) with ftfy.")
    normalize: Literal["none", "nfc", "nfkc"] = Field("nfc", description="Unicode normalisation form.")
    control_chars: bool = Field(True, description="Remove control characters other than tab and newline.")
    strip_markup: bool = Field(
        False, description="Remove HTML/XML tags and comments left in the text; decode entities."
    )
    scrub_pii: list[Literal["email", "phone", "ip"]] = Field(
        default_factory=list,
        description="Replace e-mail addresses, phone numbers and IP addresses by <EMAIL>, <PHONE>, <IP>.",
    )
    allowed_chars: str = Field(
        "",
        description="Keep only these characters (a regex character-class body such as "
        "'a-zA-Z0-9 .,;:!?\\n'); empty keeps all.",
    )
    whitespace: bool = Field(
        True, description="Unify line ends, drop trailing spaces, squeeze runs of spaces and blank lines."
    )

    @field_validator("allowed_chars")
    @classmethod
    def _valid_class(cls, value: str) -> str:
        import re

        if value:
            try:
                re.compile(f"[^{value}]")
            except re.error as exc:
                raise ValueError(f"allowed_chars {value!r} is not a valid character class: {exc}") from None
        return value


class FilterConfig(Section):
    """Line and document filters in the manner of the Gopher and C4 heuristics (0 or false = off)."""

    max_chars: int = Field(0, ge=0, description="Drop documents longer than this many characters (0 = off).")
    min_words: int = Field(0, ge=0, description="Drop documents with fewer words (Gopher: 50).")
    max_symbol_ratio: float = Field(
        0.0, ge=0.0, description="Drop documents with more '#' and '...' per word (Gopher: 0.1)."
    )
    min_alpha_words: float = Field(
        0.0, ge=0.0, le=1.0, description="Drop documents where fewer words contain a letter (Gopher: 0.8)."
    )
    max_duplicate_lines: float = Field(
        0.0, ge=0.0, le=1.0, description="Drop documents whose share of repeated lines is higher (Gopher: 0.3)."
    )
    max_top_ngram: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Drop documents whose most frequent word 2-gram covers a larger share of characters (Gopher: 0.2).",
    )
    max_duplicate_ngrams: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Drop documents whose repeated word 5-grams cover a larger share of characters (Gopher: 0.15).",
    )
    c4_lines: bool = Field(
        False,
        description="C4 line filter: keep lines that end in terminal punctuation and have at "
        "least 3 words; drop lines with 'javascript', 'lorem ipsum' or braces.",
    )
    boilerplate_min_docs: int = Field(
        0, ge=0, description="Remove lines that occur in at least this many documents (menus, footers; 0 = off)."
    )


class WebConfig(Section):
    """How URL sources are fetched: politely, with limits and a local cache."""

    user_agent: str = Field(
        "llmtui/0.1 (+language-model data collection)",
        min_length=1,
        description="User-Agent header sent with every request (and matched against robots.txt).",
    )
    timeout_s: float = Field(20.0, gt=0.0, description="Seconds to wait for a page before giving up.")
    retries: int = Field(2, ge=0, le=10, description="Retries after a timeout, connection error, 429 or 5xx.")
    backoff_s: float = Field(1.0, ge=0.0, description="Wait before the first retry; doubles on each further retry.")
    max_bytes: int = Field(5_000_000, ge=1, description="Skip pages larger than this many bytes.")
    rate_limit_s: float = Field(1.0, ge=0.0, description="Minimum seconds between two requests to the same host.")
    cache: bool = Field(True, description="Keep fetched pages in a local cache so a rerun does not fetch again.")
    cache_dir: str = Field("", description="Cache folder (empty = $XDG_CACHE_HOME/llmtui/web or ~/.cache/llmtui/web).")


class DataConfig(Section):
    """Collecting and preparing the text."""

    sources: list[SourceConfig] = Field(
        default_factory=lambda: [SourceConfig(path="builtin:python-docs")],
        min_length=1,
        description="Text sources: paths, folders, globs or builtin:python-docs; a table per source for options.",
    )
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5, description="Share of documents held out for validation.")
    lowercase: bool = Field(False, description="Lowercase all text before building the vocabulary.")
    dedup: Literal["none", "exact", "near"] = Field(
        "exact",
        description="Duplicate removal: none, exact (hash of whitespace-normalised text) or near "
        "(also MinHash LSH over word 5-grams).",
    )
    near_threshold: float = Field(
        0.8, gt=0.0, lt=1.0, description="Near dedup: estimated Jaccard similarity at which a document is a duplicate."
    )
    minhash_perms: int = Field(
        128, ge=16, le=1024, description="Near dedup: MinHash permutations (more = finer, slower)."
    )
    min_chars: int = Field(1, ge=1, description="Drop documents shorter than this many characters after cleaning.")
    max_documents: int = Field(0, ge=0, description="Read at most this many documents (0 = no limit).")
    chunk_chars: int = Field(
        4000, ge=100, description="Split longer documents at line breaks into chunks of about this size."
    )
    test_fraction: float = Field(
        0.0, ge=0.0, lt=0.5, description="Share of documents held out as a test split (test.jsonl)."
    )
    split_by: Literal["document", "chunk", "tail"] = Field(
        "document",
        description="Assign whole documents to a split (very long ones, over 64 chunks, by chunk), "
        "every chunk on its own, or (tail) hold out the end of the text in reading order: "
        "the last val_fraction for validation, as nanoGPT splits a text.",
    )
    contamination_ngram: int = Field(
        13,
        ge=0,
        le=64,
        description="Contamination check: word n-gram length shared between train and val/test/eval files (0 = off).",
    )
    eval_files: list[str] = Field(
        default_factory=list,
        description="Evaluation files (text, JSONL with a text field) checked for overlap with train.",
    )
    workers: int = Field(0, ge=0, le=256, description="Processes for cleaning and hashing (0 = one per CPU core).")
    engine: Literal["local", "dask"] = Field(
        "local",
        description="Where the data stage runs: local (a process pool on this machine) or dask (a Dask "
        "cluster: cleaning, filters, hashing, exact and near dedup, and the tokenizer stage's "
        "encoding run on its workers; needs pip install 'llmtui[cluster]'). The report and the "
        "token files are the same.",
    )
    engine_address: str = Field(
        "",
        description="dask: the scheduler of an existing cluster (e.g. "
        "tcp://10.0.0.5:8786); empty = start one on this machine with "
        "data.workers processes.",
    )
    engine_partition_mb: float = Field(
        4.0,
        gt=0.0,
        le=4096.0,
        description="dask: megabytes of text per task (small files go together, larger text and JSON Lines "
        "files are read in ranges of this size; a worker holds a few tasks at a time).",
    )
    clean: CleanConfig = Field(default_factory=CleanConfig, description="Cleaning steps.")
    filters: FilterConfig = Field(default_factory=FilterConfig, description="Line and document filters.")
    web: WebConfig = Field(default_factory=WebConfig, description="Fetching URL sources.")

    @model_validator(mode="after")
    def _splits_leave_train(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("data.val_fraction + data.test_fraction must leave at least 10% for training")
        return self

    @field_validator("sources", mode="before")
    @classmethod
    def _strings_are_paths(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        items: list[Any] = []
        for item in value:
            if isinstance(item, str):
                items.append({"path": item})
            elif isinstance(item, (dict, SourceConfig)):
                items.append(item)
            else:
                raise ValueError(f"each source is a path string or a table with a 'path' key, got {item!r}")
        return items


class TokenizerConfig(Section):
    """The vocabulary."""

    kind: Literal["char", "byte", "bpe", "wordpiece", "unigram", "word"] = Field(
        "char",
        description="Tokenizer family: char, byte, bpe, wordpiece, unigram, or word (whole words, the rest <unk>).",
    )
    vocab_size: int = Field(
        4096,
        ge=32,
        le=1_000_000,
        description="Target vocabulary size (ignored by char and byte); word: the most frequent "
        "words kept, special tokens included.",
    )
    min_frequency: int = Field(
        1,
        ge=1,
        description="Characters, merges or words seen fewer times than this are dropped (word: they become <unk>).",
    )
    word_pattern: str = Field(
        "",
        description="word: a regular expression whose matches are the words (e.g. "
        "\\w+|[^\\w\\s]); empty = split on whitespace. Text between matches "
        "is dropped.",
    )
    end_of_line: bool = Field(
        True,
        description="word: every line break is a token of its own (the classic "
        "word-level <eos> per line); false = line breaks are spaces.",
    )

    @field_validator("word_pattern")
    @classmethod
    def _valid_pattern(cls, value: str) -> str:
        import re

        if value:
            try:
                compiled = re.compile(value)
            except re.error as exc:
                raise ValueError(f"word_pattern {value!r} is not a valid regular expression: {exc}") from None
            if compiled.match(""):
                raise ValueError(f"word_pattern {value!r} matches the empty string; every word needs a character")
        return value


class ModelConfig(Section):
    """The network architecture."""

    arch: Literal["gpt", "llama", "lstm", "gru", "rnn"] = Field(
        "gpt", description="Architecture: gpt (GPT-2 style), llama (RoPE, RMSNorm, SwiGLU, GQA), lstm, gru, rnn."
    )
    layers: int = Field(4, ge=1, le=256, description="Number of blocks (transformer) or stacked recurrent layers.")
    dim: int = Field(256, ge=8, le=65536, description="Width: embedding and hidden size.")
    heads: int = Field(4, ge=1, le=512, description="Attention heads (transformers only).")
    kv_heads: int = Field(
        0, ge=0, le=512, description="Key/value heads for grouped-query attention (llama; 0 = same as heads)."
    )
    rope_base: float = Field(10000.0, gt=0, description="Rotary position embedding base wavelength (llama).")
    mlp_ratio: float = Field(4.0, gt=0.0, le=16.0, description="MLP hidden size as a multiple of dim (transformers).")
    context: int = Field(256, ge=2, le=1_048_576, description="Tokens per training sequence.")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Residual dropout (transformers) or dropout between layers (recurrent)."
    )
    embedding_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the token embeddings.")
    attention_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on attention probabilities.")
    embedding: Literal["learned", "onehot", "pretrained"] = Field(
        "learned",
        description="Token encoding: learned embeddings, one-hot inputs times a learned matrix, or "
        "embeddings initialised from Word2Vec/GloVe vectors (pretrained_path).",
    )
    pretrained_path: str = Field(
        "",
        description="Vectors file for embedding = pretrained (Word2Vec text or binary, "
        "GloVe text); relative paths resolve against the working folder.",
    )
    pretrained_format: Literal["auto", "word2vec", "word2vec_binary", "glove"] = Field(
        "auto", description="Format of pretrained_path; auto decides from its first line and its bytes."
    )
    freeze_steps: int = Field(
        0,
        ge=-1,
        description="Keep the token embedding fixed for this many training steps "
        "(0 = train it from the start, -1 = frozen for good).",
    )
    projection: bool = Field(
        False,
        description="When the vectors' size differs from dim, learn a projection to dim "
        "(false: a size mismatch is an error).",
    )
    tie_embeddings: bool = Field(True, description="Share the input embedding with the output projection.")
    bias: bool = Field(
        True,
        description="gpt: biases in the projections and LayerNorms, as GPT-2 has them; false = none, as "
        "nanoGPT trains by default (fewer kernels per step; exports write zeros where the GPT-2 format has "
        "biases). llama never has them; ignored by the recurrent models (see output_bias).",
    )
    recurrent_init: Literal["auto", "keras", "uniform"] = Field(
        "auto",
        description="rnn, lstm, gru: keras = Glorot input kernels, orthogonal recurrent kernels, unit "
        "forget bias; uniform = every weight and bias from U(±1/sqrt(dim)) (PyTorch's "
        "default); auto = the one measured better (bench/bench_quality.py).",
    )
    output_bias: bool = Field(
        True,
        description="rnn, lstm, gru: learn a bias per vocabulary entry added to the "
        "logits, as the classic word-level models do (ignored by gpt and "
        "llama, whose keras-hub exports have none).",
    )
    embedding_init: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="rnn, lstm, gru: the token embedding (and untied output matrix) "
        "starts from U(±this); 0 = auto (the one measured better).",
    )

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> ModelConfig:
        if self.arch in ("gpt", "llama") and self.dim % self.heads:
            raise ValueError(f"model.dim ({self.dim}) must be a multiple of model.heads ({self.heads})")
        if self.embedding == "pretrained" and not self.pretrained_path:
            raise ValueError(
                "model.embedding = 'pretrained' needs model.pretrained_path (a Word2Vec or GloVe "
                "vectors file; `llmtui embeddings train RECIPE` writes one)"
            )
        if self.kv_heads and self.heads % self.kv_heads:
            raise ValueError(f"model.heads ({self.heads}) must be a multiple of model.kv_heads ({self.kv_heads})")
        return self


class TrainConfig(Section):
    """Optimisation, regularisation, evaluation during training, checkpoints."""

    steps: int = Field(2000, ge=1, description="Optimizer steps to train for.")
    batch_size: int = Field(32, ge=1, description="Sequences per micro-batch (one forward/backward pass).")
    grad_accum_steps: int = Field(
        1,
        ge=1,
        le=1024,
        description="Micro-batches averaged into each optimizer step (effective batch = batch_size x this).",
    )
    optimizer: Literal["adamw", "adam", "sgd", "adagrad", "rmsprop", "lion", "muon"] = Field(
        "adamw", description="Optimizer."
    )
    lr: float = Field(
        3e-4,
        gt=0.0,
        le=100.0,
        description="Peak learning rate (plain SGD on recurrent models takes 20, as in the classic word-level recipe).",
    )
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="First-moment decay (adam, adamw, lion, muon's Adam part).")
    beta2: float = Field(0.95, ge=0.0, lt=1.0, description="Second-moment decay (adam, adamw, lion, muon's Adam part).")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="Momentum (sgd, rmsprop, muon).")
    nesterov: bool = Field(True, description="Nesterov momentum (sgd, muon).")
    schedule: Literal["constant", "cosine", "linear", "wsd", "plateau"] = Field(
        "cosine",
        description="Learning-rate schedule after warmup; wsd = warmup, stable, then linear decay; "
        "plateau = lr from the first step, multiplied by plateau_factor whenever the "
        "validation loss has not improved for plateau_patience evaluations (no warmup).",
    )
    plateau_factor: float = Field(
        0.25, gt=0.0, lt=1.0, description="plateau: what the learning rate is multiplied by on a plateau."
    )
    plateau_patience: int = Field(
        1,
        ge=1,
        description="plateau: evaluations without a better validation loss "
        "before the learning rate is cut (and again after as many).",
    )
    warmup_steps: int = Field(100, ge=0, description="Linear warmup steps from 0 to lr.")
    decay_fraction: float = Field(0.2, gt=0.0, le=1.0, description="Share of the steps spent decaying (wsd).")
    min_lr_ratio: float = Field(
        0.1, ge=0.0, le=1.0, description="Final learning rate as a share of lr (cosine, linear, wsd)."
    )
    weight_decay: float = Field(
        0.1, ge=0.0, le=10.0, description="Decoupled weight decay (adamw, lion, muon); never on biases or norms."
    )
    decay_embeddings: bool = Field(False, description="Apply weight decay to embeddings too.")
    grad_clip: float = Field(1.0, ge=0.0, description="Global gradient-norm clip (0 = off).")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Label smoothing of the next-token targets.")
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = Field(
        "auto",
        description="Numeric precision policy: auto picks the faster of float32 and mixed_bfloat16 for the "
        "device and model size; mixed_float16 adds loss scaling.",
    )
    stateful: bool = Field(
        False,
        description="rnn, lstm, gru: train on contiguous streams (the tokens cut into "
        "batch_size lanes read in order), carrying the recurrent state "
        "from batch to batch and resetting it at each end of text; "
        "evaluated the same way. false = random windows from a zero state.",
    )
    eval_every: int = Field(200, ge=1, description="Evaluate on the validation split every this many steps.")
    eval_batches: int = Field(20, ge=1, description="Validation batches per periodic evaluation.")
    early_stopping_patience: int = Field(
        0, ge=0, description="Stop after this many evaluations without a better validation loss (0 = off)."
    )
    early_stopping_min_delta: float = Field(
        0.0,
        ge=0.0,
        description="For early stopping, a validation loss must beat the best by more than this to "
        "count as better (as Keras' EarlyStopping min_delta).",
    )
    checkpoint_every: int = Field(500, ge=1, description="Write a checkpoint every this many steps.")
    keep_checkpoints: int = Field(2, ge=1, description="How many recent checkpoints to keep (the best is kept apart).")
    log_every: int = Field(10, ge=1, description="Report training loss every this many steps.")
    eval_samples: bool = Field(
        True,
        description="Write a text sample at each evaluation during training (the first "
        "one compiles the generator, which costs seconds on a CPU).",
    )
    jit_compile: bool = Field(
        True,
        description="XLA-compile the training step (bfloat16 on a TensorFlow CPU runs "
        "as a oneDNN graph instead, which is faster there); false: never XLA.",
    )
    distribute: Literal["none", "data_parallel", "model_parallel"] = Field(
        "none",
        description="data_parallel: the model on every device, each batch split (keras.distribution on JAX, "
        "MirroredStrategy on TensorFlow); model_parallel (JAX, gpt and llama): weights and "
        "optimizer state split over the mesh's model axis, batches over its data axis.",
    )
    mesh: list[int] = Field(
        default_factory=list,
        description="model_parallel: [data, model] device counts, e.g. "
        "[2, 4] on 8 devices (empty = every device on the model axis).",
    )
    peak_tflops: float = Field(
        0.0, ge=0.0, description="Peak TFLOP/s of the device for the MFU estimate (0 = look it up or estimate)."
    )
    max_memory_gb: float = Field(
        0.0, ge=0.0, description="Memory the pre-flight check allows (0 = what the machine has available)."
    )

    @model_validator(mode="after")
    def _mesh_fits_distribute(self) -> TrainConfig:
        if self.mesh and (len(self.mesh) != 2 or min(self.mesh) < 1):
            raise ValueError(f"train.mesh must be two device counts [data, model], each at least 1; got {self.mesh}")
        if self.mesh and self.distribute != "model_parallel":
            raise ValueError("train.mesh applies to train.distribute = 'model_parallel'")
        return self

    @model_validator(mode="after")
    def _plateau_has_no_warmup(self) -> TrainConfig:
        if self.schedule == "plateau" and self.warmup_steps:
            raise ValueError(
                "train.schedule = 'plateau' starts at train.lr and only ever lowers it: set train.warmup_steps = 0"
            )
        return self


class EvalConfig(Section):
    """Held-out evaluation after training."""

    max_batches: int = Field(0, ge=0, description="Validation batches in the final evaluation (0 = the whole split).")
    batch_size: int = Field(0, ge=0, description="Sequences per evaluation batch (0 = train.batch_size).")


class GenerateConfig(Section):
    """Samples written after training."""

    prompts: list[str] = Field(default_factory=lambda: ["The "], description="Prompts to continue.")
    max_tokens: int = Field(200, ge=1, le=100_000, description="Tokens to generate per prompt.")
    temperature: float = Field(0.8, ge=0.0, le=100.0, description="Sampling temperature (0 = greedy).")
    top_k: int = Field(40, ge=0, description="Sample from the k most likely tokens (0 = off).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling probability mass (1 = off).")
    seed: int = Field(0, ge=0, description="Seed for sampling.")
    beams: int = Field(
        1,
        ge=1,
        le=64,
        description="Beam search width (1 = sample or greedy; more = beam search, "
        "which ignores temperature, top_k and top_p).",
    )
    stop: list[str] = Field(
        default_factory=list,
        description="Stop generating when the text produced so far contains one of these strings (it is cut there).",
    )
    use_cache: bool = Field(
        True,
        description="Keep attention keys/values (transformers) or the recurrent state "
        "between tokens instead of recomputing the whole window.",
    )


class SpaceParam(Section):
    """One searched recipe field: a range (low, high; log scale or a step) or a list of choices."""

    low: float | None = Field(None, description="Lowest value of a range.")
    high: float | None = Field(None, description="Highest value of a range.")
    log: bool = Field(False, description="Sample the range on a log scale.")
    step: float | None = Field(
        None, gt=0, description="Spacing of a range's values (needed by grid for a float range)."
    )
    choices: list[Any] | None = Field(None, min_length=1, description="Values to choose from (categorical).")

    @model_validator(mode="after")
    def _range_or_choices(self) -> SpaceParam:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give low and high (a range) or choices (a list)")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("a range takes log or step, not both")
        return self

    @model_serializer(mode="wrap")
    def _without_unset(self, handler) -> dict:
        # TOML has no null: leave out the parts a parameter does not use.
        return {key: value for key, value in handler(self).items() if value is not None}


class TuneConfig(Section):
    """Hyperparameter search over recipe fields (`llmtui tune RECIPE`)."""

    method: Literal["grid", "random", "bayes"] = Field("bayes", description="Search: grid, random or bayes (TPE).")
    trials: int = Field(20, ge=1, le=100_000, description="Number of trials (finished and pruned ones count).")
    objective: Literal[
        "val_loss", "perplexity", "bits_per_byte", "accuracy", "macro_f1", "f1", "exact_match", "bleu", "chrf"
    ] = Field(
        "val_loss",
        description="What the final evaluation of each trial reports to the search: val_loss, "
        "perplexity, bits_per_byte (language models), or a fine-tuned task's accuracy, "
        "macro_f1 (classification), f1, exact_match (qa), bleu, chrf (translation).",
    )
    direction: Literal["minimize", "maximize"] = Field(
        "minimize", description="Whether to lower or raise the objective."
    )
    steps: int = Field(0, ge=0, description="train.steps of every trial (0 = the recipe's train.steps).")
    seconds: float = Field(
        0.0,
        ge=0.0,
        description="Stop a trial's training at its first validation evaluation after "
        "this many seconds of training (0 = no limit); that evaluation "
        "is then its objective.",
    )
    pruner: Literal["none", "median", "halving"] = Field(
        "median", description="Stop poor trials early on their validation loss: none, median or successive halving."
    )
    pruner_startup_trials: int = Field(2, ge=0, description="Median pruner: trials finished before any is pruned.")
    seed: int = Field(0, ge=0, description="Seed of the search (sampler).")
    space: dict[str, SpaceParam] = Field(
        default_factory=dict,
        description='Searched fields by recipe key path, e.g. "train.lr" = {low = 1e-4, high = 1e-2, log = true}.',
    )

    @model_validator(mode="after")
    def _direction_fits_objective(self) -> TuneConfig:
        lower_is_better = self.objective in ("val_loss", "perplexity", "bits_per_byte")
        if lower_is_better != (self.direction == "minimize"):
            wanted = "minimize" if lower_is_better else "maximize"
            raise ValueError(
                f"tune.objective = '{self.objective}' is better when {'lower' if lower_is_better else 'higher'}:"
                f" set tune.direction = '{wanted}'"
            )
        return self


class FinetuneConfig(Section):
    """Fine-tuning a trained run or a pretrained checkpoint (`llmtui finetune RECIPE`); the base's tokenizer and
    architecture are kept (a pretrained base trains on model.context tokens, at most its own length).

    task = "domain" continues next-token training on this recipe's [data] sources. The other tasks read
    examples from train_file (CSV, TSV or JSONL): classification trains a head on the backbone, qa and
    translation train the model to continue a prompt with the target (loss on the target tokens only).
    """

    base: str = Field(
        "",
        description="What to start from: a trained run (its folder, or its name under "
        "run.out_dir), a local Hugging Face model folder or keras-hub preset folder "
        "(GPT-2, Llama, Mistral), or an hf://... or kaggle://... handle (downloaded).",
    )
    task: Literal["domain", "classification", "qa", "translation", "chat"] = Field(
        "domain",
        description="domain (continue pretraining on [data]), classification, qa, translation or chat "
        "(conversations: loss on the assistant's turns).",
    )
    method: Literal["full", "lora", "freeze"] = Field(
        "full",
        description="Train every weight (full), low-rank adapters only (lora, merged into the saved "
        "model), or all but the lower freeze_layers layers (freeze).",
    )
    lora_rank: int = Field(8, ge=1, le=4096, description="Rank of the LoRA adapters (method = lora).")
    lora_alpha: float = Field(
        0.0, ge=0.0, description="LoRA scale numerator: updates are scaled by alpha / rank (0 = rank, a scale of 1)."
    )
    freeze_layers: int = Field(
        0, ge=0, description="method = freeze: keep the token embedding and the lowest this many layers fixed."
    )
    train_file: str = Field("", description="Task examples (classification, qa, translation): .csv, .tsv or .jsonl.")
    val_file: str = Field("", description="Held-out task examples; empty = val_fraction of train_file.")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Share of train_file held out when val_file is empty.")
    text_field: str = Field("text", min_length=1, description="classification: the column or key of the text.")
    label_field: str = Field("label", min_length=1, description="classification: the column or key of the label.")
    labels: list[str] = Field(
        default_factory=list,
        description="classification: the label set, in order (empty = the labels of train_file, sorted).",
    )
    pooling: Literal["last", "mean"] = Field(
        "last", description="classification: the text's vector is the last token's hidden state, or their mean."
    )
    input_field: str = Field("input", min_length=1, description="qa, translation: the column or key of the input.")
    target_field: str = Field(
        "target", min_length=1, description="qa, translation: the column or key of the answer or translation."
    )
    messages_field: str = Field(
        "messages",
        min_length=1,
        description="chat: the JSONL key of each conversation's list of messages "
        "({role: system|user|assistant, content})",
    )
    chat_template: str = Field(
        "",
        description="chat: a Jinja chat template file (.jinja); empty = the base's own "
        "template if it has one, else llmtui's (role lines, <eos> after each "
        "turn).",
    )
    prompt_template: str = Field(
        "{input}\n=> ",
        description="qa, translation: how an input becomes the prompt ({input} is replaced); the target follows it.",
    )
    max_answer_tokens: int = Field(
        64, ge=1, le=100_000, description="qa, translation: the longest answer generated when evaluating."
    )

    @field_validator("prompt_template")
    @classmethod
    def _has_input(cls, value: str) -> str:
        if "{input}" not in value:
            raise ValueError("the prompt template must contain {input}")
        return value

    @model_validator(mode="after")
    def _task_needs_examples(self) -> FinetuneConfig:
        if self.task != "domain" and not self.train_file:
            raise ValueError(
                f"finetune.task = '{self.task}' needs finetune.train_file (a CSV, TSV or JSONL file of examples)"
            )
        if self.method == "freeze" and self.freeze_layers == 0:
            raise ValueError("finetune.method = 'freeze' needs finetune.freeze_layers >= 1")
        return self


class Recipe(Section):
    """A whole llmtui recipe: one section per pipeline stage."""

    run: RunConfig = Field(default_factory=RunConfig, description="Run name, output folder, seed and backend.")
    data: DataConfig = Field(default_factory=DataConfig, description="Text sources and preparation.")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig, description="Vocabulary.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Architecture.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation.")
    generate: GenerateConfig = Field(default_factory=GenerateConfig, description="Sampling.")
    tune: TuneConfig = Field(default_factory=TuneConfig, description="Hyperparameter search (llmtui tune).")
    finetune: FinetuneConfig = Field(
        default_factory=FinetuneConfig, description="Fine-tuning a trained run (llmtui finetune)."
    )

    @model_validator(mode="after")
    def _stateful_needs_a_recurrent_model(self) -> Recipe:
        if self.train.stateful and self.model.arch not in ("rnn", "lstm", "gru"):
            raise ValueError(
                f"train.stateful carries a recurrent state between batches: it needs model.arch = "
                f"rnn, lstm or gru, not {self.model.arch!r}"
            )
        if self.train.stateful and self.train.distribute != "none":
            raise ValueError(
                "train.stateful keeps one state per lane of the batch: it cannot be combined with train.distribute"
            )
        return self

    @model_validator(mode="after")
    def _model_parallel_needs_a_transformer(self) -> Recipe:
        if self.train.distribute == "model_parallel" and self.model.arch not in ("gpt", "llama"):
            raise ValueError(
                f"train.distribute = 'model_parallel' splits gpt and llama models; model.arch is "
                f"'{self.model.arch}' (use data_parallel)"
            )
        return self
