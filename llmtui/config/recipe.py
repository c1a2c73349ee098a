"""The recipe: one validated section per pipeline stage.

Every field has a default and a one-line description (shown by `llmtui schema` and in editors).
Section and key names follow the recipe sketch in DESIGN.md; scripts around the project rely on them.
Each stage receives only its own section (plus `run`), never the whole recipe.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Section(BaseModel):
    """Base for every recipe section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)


class RunConfig(Section):
    """Where the run lives and how it is seeded."""

    name: str = Field("quickstart", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="Run name; the run folder is <out_dir>/<name>.")
    out_dir: str = Field("runs", min_length=1,
                         description="Folder that holds run folders; relative paths resolve against the working folder.")
    seed: int = Field(0, ge=0, description="Seed for data splitting, weight initialisation, batching and sampling.")
    backend: Literal["tensorflow", "jax", "torch"] = Field(
        "tensorflow", description="Keras backend; the KERAS_BACKEND environment variable overrides it.")


class SourceConfig(Section):
    """One data source with options (a plain string in `sources` is the same with defaults)."""

    path: str = Field(..., min_length=1,
                      description="A file, folder, glob pattern, or builtin:<name> corpus.")
    include: list[str] = Field(default_factory=lambda: ["*.txt", "*.md"],
                               description="Glob patterns of file names to read inside a folder.")
    exclude: list[str] = Field(default_factory=list, description="Glob patterns of file names to skip inside a folder.")


class DataConfig(Section):
    """Collecting and preparing the text."""

    sources: list[SourceConfig] = Field(
        default_factory=lambda: [SourceConfig(path="builtin:python-docs")], min_length=1,
        description="Text sources: paths, folders, globs or builtin:python-docs; a table per source for options.")
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5,
                                description="Share of documents held out for validation.")
    lowercase: bool = Field(False, description="Lowercase all text before building the vocabulary.")
    dedup: Literal["none", "exact"] = Field(
        "exact", description="Duplicate removal: none or exact (hash of whitespace-normalised text).")
    min_chars: int = Field(1, ge=1, description="Drop documents shorter than this many characters after cleaning.")
    max_documents: int = Field(0, ge=0, description="Read at most this many documents (0 = no limit).")
    chunk_chars: int = Field(4000, ge=100, description="Split longer documents at line breaks into chunks of about this size.")

    @field_validator("sources", mode="before")
    @classmethod
    def _strings_are_paths(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        items = []
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

    kind: Literal["char", "byte", "bpe", "wordpiece", "unigram"] = Field(
        "char", description="Tokenizer family.")
    vocab_size: int = Field(4096, ge=32, le=1_000_000,
                            description="Target vocabulary size (ignored by char and byte).")
    min_frequency: int = Field(1, ge=1, description="Characters or merges seen fewer times than this are dropped.")


class ModelConfig(Section):
    """The network architecture."""

    arch: Literal["gpt", "llama", "lstm", "gru", "rnn"] = Field(
        "gpt", description="Architecture: gpt (GPT-2 style), llama (RoPE, RMSNorm, SwiGLU, GQA), lstm, gru, rnn.")
    layers: int = Field(4, ge=1, le=256, description="Number of blocks (transformer) or stacked recurrent layers.")
    dim: int = Field(256, ge=8, le=65536, description="Width: embedding and hidden size.")
    heads: int = Field(4, ge=1, le=512, description="Attention heads (transformers only).")
    kv_heads: int = Field(0, ge=0, le=512,
                          description="Key/value heads for grouped-query attention (llama; 0 = same as heads).")
    rope_base: float = Field(10000.0, gt=0, description="Rotary position embedding base wavelength (llama).")
    mlp_ratio: float = Field(4.0, gt=0.0, le=16.0, description="MLP hidden size as a multiple of dim (transformers).")
    context: int = Field(256, ge=2, le=1_048_576, description="Tokens per training sequence.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0,
                           description="Residual dropout (transformers) or dropout between layers (recurrent).")
    embedding_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the token embeddings.")
    attention_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on attention probabilities.")
    embedding: Literal["learned"] = Field("learned", description="Token encoding: learned embeddings.")
    tie_embeddings: bool = Field(True, description="Share the input embedding with the output projection.")

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> "ModelConfig":
        if self.arch in ("gpt", "llama") and self.dim % self.heads:
            raise ValueError(f"model.dim ({self.dim}) must be a multiple of model.heads ({self.heads})")
        if self.kv_heads and self.heads % self.kv_heads:
            raise ValueError(f"model.heads ({self.heads}) must be a multiple of model.kv_heads ({self.kv_heads})")
        return self


class TrainConfig(Section):
    """Optimisation, regularisation, evaluation during training, checkpoints."""

    steps: int = Field(2000, ge=1, description="Optimizer steps to train for.")
    batch_size: int = Field(32, ge=1, description="Sequences per micro-batch (one forward/backward pass).")
    grad_accum_steps: int = Field(1, ge=1, le=1024,
                                  description="Micro-batches averaged into each optimizer step (effective batch = batch_size x this).")
    optimizer: Literal["adamw", "adam", "sgd", "adagrad", "rmsprop", "lion", "muon"] = Field(
        "adamw", description="Optimizer.")
    lr: float = Field(3e-4, gt=0.0, le=10.0, description="Peak learning rate.")
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="First-moment decay (adam, adamw, lion, muon's Adam part).")
    beta2: float = Field(0.95, ge=0.0, lt=1.0, description="Second-moment decay (adam, adamw, lion, muon's Adam part).")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="Momentum (sgd, rmsprop, muon).")
    nesterov: bool = Field(True, description="Nesterov momentum (sgd, muon).")
    schedule: Literal["constant", "cosine", "linear", "wsd"] = Field(
        "cosine", description="Learning-rate schedule after warmup; wsd = warmup, stable, then linear decay.")
    warmup_steps: int = Field(100, ge=0, description="Linear warmup steps from 0 to lr.")
    decay_fraction: float = Field(0.2, gt=0.0, le=1.0, description="Share of the steps spent decaying (wsd).")
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0,
                                description="Final learning rate as a share of lr (cosine, linear, wsd).")
    weight_decay: float = Field(0.1, ge=0.0, le=10.0,
                                description="Decoupled weight decay (adamw, lion, muon); never on biases or norms.")
    decay_embeddings: bool = Field(False, description="Apply weight decay to embeddings too.")
    grad_clip: float = Field(1.0, ge=0.0, description="Global gradient-norm clip (0 = off).")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Label smoothing of the next-token targets.")
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = Field(
        "float32", description="Numeric precision policy (mixed_float16 adds loss scaling).")
    eval_every: int = Field(200, ge=1, description="Evaluate on the validation split every this many steps.")
    eval_batches: int = Field(20, ge=1, description="Validation batches per periodic evaluation.")
    early_stopping_patience: int = Field(
        0, ge=0, description="Stop after this many evaluations without a better validation loss (0 = off).")
    checkpoint_every: int = Field(500, ge=1, description="Write a checkpoint every this many steps.")
    keep_checkpoints: int = Field(2, ge=1, description="How many recent checkpoints to keep (the best is kept apart).")
    log_every: int = Field(10, ge=1, description="Report training loss every this many steps.")
    jit_compile: bool = Field(True, description="XLA-compile the training step.")
    distribute: Literal["none", "data_parallel"] = Field(
        "none", description="Data parallel over every local device (keras.distribution on JAX, MirroredStrategy on TensorFlow).")
    peak_tflops: float = Field(0.0, ge=0.0,
                               description="Peak TFLOP/s of the device for the MFU estimate (0 = look it up or estimate).")
    max_memory_gb: float = Field(0.0, ge=0.0,
                                 description="Memory the pre-flight check allows (0 = what the machine has available).")


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


class Recipe(Section):
    """A whole llmtui recipe: one section per pipeline stage."""

    run: RunConfig = Field(default_factory=RunConfig, description="Run name, output folder, seed and backend.")
    data: DataConfig = Field(default_factory=DataConfig, description="Text sources and preparation.")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig, description="Vocabulary.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Architecture.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation.")
    generate: GenerateConfig = Field(default_factory=GenerateConfig, description="Sampling.")
