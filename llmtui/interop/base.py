"""Pretrained bases: what a Hugging Face folder or a keras-hub preset holds, whether our blocks express it, and
its import into a run folder.

| family | Hugging Face `model_type` | keras-hub backbone | our arch | exact when |
| --- | --- | --- | --- | --- |
| GPT-2 | `gpt2` | `GPT2Backbone` | gpt | tanh GELU (`gelu_new`), attention scaled by 1/sqrt(head size) only |
| Llama 1/2/3 | `llama` | `LlamaBackbone` | llama | no rope scaling (Llama 3.1+'s `llama3` rope type is refused), no biases, head size = width / heads |
| Mistral | `mistral` | `MistralBackbone` | llama | as Llama, and its sliding window (if any) at least the run's context |

Refused with the reason: Qwen2 (biases on query/key/value but none on the output projection: our block has
all biases or none), Gemma, Phi and every other family, and any config field above that differs.

The weights reach our model through one mapping (`load_hf_weights`, the inverse of the Transformers export's
`hf_state_dict`); a keras-hub preset's backbone weights are first named the Transformers way. The base's own
tokenizer (its `tokenizer.json`, special tokens and chat template; a keras-hub GPT-2 vocabulary and merges, or
a SentencePiece unigram or BPE model) becomes the run's tokenizer.
"""  # noqa: E501  (a Markdown table in the docstring: one row, one line)

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtui.errors import LlmtuiError

HUB_PREFIXES = ("hf://", "kaggle://")
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")
IMPORT_FILE = "import.json"  # in the run folder's model/: where the weights came from


class BaseImportError(LlmtuiError):
    """A pretrained base cannot be read, is not a family our blocks express exactly, or failed its check."""


@dataclass
class BaseSpec:
    """What a pretrained base is, read from its config alone (nothing loaded)."""

    source: str
    path: Path | None  # the local folder (None for a hub handle not downloaded yet)
    format: str  # "hf" or "keras_hub"
    family: str  # gpt2, llama, mistral
    model: dict  # our [model] section
    vocab_size: int
    norm_epsilon: float
    max_positions: int
    notes: list[str] = field(default_factory=list)

    @property
    def arch(self) -> str:
        return self.model["arch"]

    def model_config(self, context: int | None = None):
        """Our `ModelConfig` for this base, with the training window `context` (at most the base's positions)."""
        from llmtui.config.recipe import ModelConfig

        values = dict(self.model)
        if context:
            values["context"] = min(int(context), self.max_positions)
        return ModelConfig(**values)


def is_pretrained_source(name: str, base_dir: Path = Path(".")) -> bool:
    """Whether `[finetune] base` names a pretrained base (a hub handle, or a folder with a model config.json)
    rather than an llmtui run folder."""
    if name.startswith(HUB_PREFIXES):
        return True
    path = Path(name).expanduser()
    path = path if path.is_absolute() else base_dir / path
    return (path / "config.json").is_file() and not (path / "recipe.toml").is_file()


def resolve_source(source: str, base_dir: Path = Path(".")) -> Path:
    """A local folder for `source`: the folder itself, or a hub handle downloaded (the user's choice, at run
    time) into the local cache. Offline, a clear error."""
    if source.startswith("hf://"):
        return _download_hf(source.removeprefix("hf://"))
    if source.startswith("kaggle://"):
        return _download_kaggle(source.removeprefix("kaggle://"))
    path = Path(source).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.is_dir():
        raise BaseImportError(
            f"pretrained base {source!r}: no folder at {path}",
            hint="give a local Hugging Face model folder or keras-hub preset folder, or an "
            "hf://owner/name or kaggle://owner/model/keras/variant handle",
        )
    if not (path / "config.json").is_file():
        raise BaseImportError(
            f"{path} has no config.json: it is neither a Hugging Face model folder nor a keras-hub preset",
            hint="point at the folder that holds config.json",
        )
    return path


def _download_hf(repo: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise BaseImportError(
            f"hf://{repo} needs the huggingface_hub package to download",
            hint="pip install huggingface_hub, or download the folder yourself and give its path",
        ) from None
    try:
        return Path(
            snapshot_download(
                repo,
                allow_patterns=["*.json", "*.safetensors", "*.h5", "*.txt", "*.spm", "*.model", "*.jinja", "assets/*"],
            )
        )
    except Exception as exc:  # offline, unknown repository, gated model: all end here
        raise BaseImportError(
            f"could not download hf://{repo}: {type(exc).__name__}: {str(exc)[:300]}",
            hint="check the network (and a token for gated models: huggingface-cli login), or "
            "download the folder elsewhere and give its local path",
        ) from None


def _download_kaggle(handle: str) -> Path:
    try:
        import kagglehub
    except ImportError:
        raise BaseImportError(
            f"kaggle://{handle} needs the kagglehub package to download",
            hint="pip install kagglehub, or download the preset yourself and give its folder",
        ) from None
    try:
        return Path(kagglehub.model_download(handle))
    except Exception as exc:
        raise BaseImportError(
            f"could not download kaggle://{handle}: {type(exc).__name__}: {str(exc)[:300]}",
            hint="check the network and your Kaggle credentials, or download the preset "
            "elsewhere and give its local folder",
        ) from None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BaseImportError(f"cannot read {path}: {exc}", hint="is this a complete model folder?") from None


def read_base_spec(source: str, base_dir: Path = Path(".")) -> BaseSpec:
    """The base's architecture from its config.json (nothing else is read), or why our blocks cannot hold it."""
    path = resolve_source(source, base_dir)
    config = _read_json(path / "config.json")
    if "class_name" in config and "config" in config:
        return _keras_hub_spec(source, path, config)
    if "model_type" in config:
        return _hf_spec(source, path, config)
    raise BaseImportError(
        f"{path / 'config.json'} is neither a Transformers config (model_type) nor a keras-hub "
        "preset config (class_name)",
        hint="point at a Hugging Face model folder or keras-hub preset",
    )


def _refuse(path: Path, family: str, why: str) -> None:
    raise BaseImportError(
        f"{path}: cannot import this {family} model exactly: {why}",
        hint="llmtui imports GPT-2, Llama (1, 2, 3) and Mistral checkpoints whose blocks its "
        "gpt and llama architectures express",
    )


def _mlp_ratio(arch: str, dim: int, mlp_dim: int, path: Path, family: str) -> float:
    """The `model.mlp_ratio` that makes our builder's MLP exactly `mlp_dim` wide."""
    from llmtui.models.llama import swiglu_width

    if arch == "gpt":
        ratio = (mlp_dim + 0.5) / dim  # int(dim * ratio) == mlp_dim despite rounding
        if int(dim * ratio) != mlp_dim:
            _refuse(path, family, f"an MLP {mlp_dim} wide cannot be set through model.mlp_ratio")
        return ratio
    ratio = 3 * mlp_dim / (2 * dim)
    if swiglu_width(dim, ratio) != mlp_dim:
        _refuse(path, family, f"intermediate size {mlp_dim} is not a multiple of 32, which our SwiGLU width is")
    return ratio


def _gpt_model(path, family, layers, dim, heads, mlp_dim, positions, vocab, tied) -> dict:
    return {
        "arch": "gpt",
        "layers": layers,
        "dim": dim,
        "heads": heads,
        "context": positions,
        "mlp_ratio": _mlp_ratio("gpt", dim, mlp_dim, path, family),
        "tie_embeddings": tied,
        "dropout": 0.0,
        "embedding_dropout": 0.0,
        "attention_dropout": 0.0,
    }


def _llama_model(path, family, layers, dim, heads, kv_heads, mlp_dim, positions, rope_base, tied) -> dict:
    if dim % heads:
        _refuse(path, family, f"width {dim} is not a multiple of its {heads} heads")
    if heads % kv_heads:
        _refuse(path, family, f"{heads} query heads do not share {kv_heads} key/value heads evenly")
    return {
        "arch": "llama",
        "layers": layers,
        "dim": dim,
        "heads": heads,
        "kv_heads": 0 if kv_heads == heads else kv_heads,
        "context": positions,
        "rope_base": float(rope_base),
        "mlp_ratio": _mlp_ratio("llama", dim, mlp_dim, path, family),
        "tie_embeddings": tied,
        "dropout": 0.0,
        "embedding_dropout": 0.0,
        "attention_dropout": 0.0,
    }


def _hf_spec(source: str, path: Path, config: dict) -> BaseSpec:
    family = config["model_type"]
    vocab = int(config["vocab_size"])
    if family == "gpt2":
        activation = config.get("activation_function", "gelu_new")
        if activation not in GELU_TANH:
            _refuse(path, family, f"activation {activation!r}: our gpt block uses the tanh GELU (gelu_new)")
        if config.get("scale_attn_by_inverse_layer_idx") or not config.get("scale_attn_weights", True):
            _refuse(path, family, "its attention scores are scaled by layer depth or not at all")
        dim = int(config["n_embd"])
        mlp_dim = int(config.get("n_inner") or 4 * dim)
        positions = int(config["n_positions"])
        model = _gpt_model(
            path,
            family,
            int(config["n_layer"]),
            dim,
            int(config["n_head"]),
            mlp_dim,
            positions,
            vocab,
            bool(config.get("tie_word_embeddings", True)),
        )
        return BaseSpec(
            source, path, "hf", family, model, vocab, float(config.get("layer_norm_epsilon", 1e-5)), positions
        )
    if family in ("llama", "mistral"):
        dim, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        if config.get("head_dim") not in (None, dim // heads):
            _refuse(path, family, f"head size {config['head_dim']} differs from width / heads = {dim // heads}")
        if config.get("hidden_act", "silu") != "silu":
            _refuse(path, family, f"activation {config['hidden_act']!r}: our SwiGLU uses silu")
        if config.get("attention_bias") or config.get("mlp_bias"):
            _refuse(path, family, "its projections have biases; our llama block has none")
        rope = config.get("rope_parameters") or {}
        scaling = config.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
        if scaling and (scaling.get("rope_type") or scaling.get("type")) not in (None, "default"):
            _refuse(
                path,
                family,
                f"rope scaling {scaling.get('rope_type') or scaling.get('type')!r}: our rotary "
                "embedding has none (Llama 3.1 and later scale it)",
            )
        rope_base = rope.get("rope_theta", config.get("rope_theta", 10000.0))
        positions = int(config.get("max_position_embeddings", 2048))
        model = _llama_model(
            path,
            family,
            int(config["num_hidden_layers"]),
            dim,
            heads,
            kv_heads,
            int(config["intermediate_size"]),
            positions,
            rope_base,
            bool(config.get("tie_word_embeddings", False)),
        )
        spec = BaseSpec(source, path, "hf", family, model, vocab, float(config.get("rms_norm_eps", 1e-6)), positions)
        if family == "mistral" and config.get("sliding_window"):
            spec.max_positions = min(positions, int(config["sliding_window"]))
            spec.notes.append(
                f"Mistral's sliding window ({config['sliding_window']} tokens) bounds the context: "
                "within it, full causal attention is the same"
            )
        return spec
    if family == "qwen2":
        _refuse(
            path,
            family,
            "Qwen2's query/key/value projections have biases and its output projection none; "
            "our llama block has biases everywhere or nowhere",
        )
    _refuse(path, family, f"model_type {family!r} is not a family llmtui maps (gpt2, llama, mistral)")
    raise AssertionError  # unreachable: _refuse raises


def _keras_hub_spec(source: str, path: Path, preset: dict) -> BaseSpec:
    name, config = preset["class_name"], preset["config"]
    vocab = int(config["vocabulary_size"])
    if name == "GPT2Backbone":
        dim = int(config["hidden_dim"])
        positions = int(config["max_sequence_length"])
        model = _gpt_model(
            path,
            name,
            int(config["num_layers"]),
            dim,
            int(config["num_heads"]),
            int(config["intermediate_dim"]),
            positions,
            vocab,
            True,
        )
        return BaseSpec(source, path, "keras_hub", "gpt2", model, vocab, 1e-5, positions)
    if name in ("LlamaBackbone", "Llama3Backbone", "MistralBackbone"):
        if float(config.get("rope_scaling_factor", config.get("rope_position_scaling_factor", 1.0)) or 1.0) != 1.0:
            _refuse(path, name, "rope scaling: our rotary embedding has none")
        if config.get("rope_frequency_adjustment_factor") is not None:
            _refuse(path, name, "Llama 3.1-style rope frequency adjustment: our rotary embedding has none")
        heads = int(config["num_query_heads"])
        positions = int(config.get("max_sequence_length") or 4096)
        model = _llama_model(
            path,
            name,
            int(config["num_layers"]),
            int(config["hidden_dim"]),
            heads,
            int(config.get("num_key_value_heads") or heads),
            int(config["intermediate_dim"]),
            positions,
            config.get("rope_max_wavelength", 10000.0),
            bool(config.get("tie_word_embeddings", False)),
        )
        family = "mistral" if name == "MistralBackbone" else "llama"
        spec = BaseSpec(
            source, path, "keras_hub", family, model, vocab, float(config.get("layer_norm_epsilon", 1e-6)), positions
        )
        if config.get("sliding_window"):
            spec.max_positions = min(positions, int(config["sliding_window"]))
        return spec
    _refuse(
        path,
        name,
        f"keras-hub backbone {name}: llmtui maps GPT2Backbone, LlamaBackbone, Llama3Backbone and MistralBackbone",
    )
    raise AssertionError


def parameter_count(spec: BaseSpec) -> int:
    """Parameters of the base, from its config (what `llmtui model summary` and the pre-flight check use)."""
    from llmtui.models.cost import count_model_parameters

    return count_model_parameters(spec.model_config(), spec.vocab_size)[0]


# Weights ------------------------------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


def read_safetensors(path: Path) -> dict:
    """{name: float32 array} from a safetensors file, bfloat16 included (which numpy alone cannot read)."""
    import ml_dtypes  # noqa: F401  (Keras' dependency: numpy's bfloat16)
    import numpy as np

    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    weights = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        kind = _SAFETENSORS_DTYPES.get(info["dtype"])
        if kind is None:
            raise BaseImportError(
                f"{path}: tensor {name} is {info['dtype']}, not a float type llmtui reads",
                hint="save the checkpoint in float32, float16 or bfloat16",
            )
        dtype = np.dtype(ml_dtypes.bfloat16) if kind == "bfloat16" else np.dtype(kind)
        start, end = info["data_offsets"]
        weights[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(info["shape"]).astype(np.float32)
    return weights


def read_hf_weights(folder: Path) -> dict:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise BaseImportError(
            f"{folder} holds no *.safetensors weights",
            hint="save the model with save_pretrained(folder) (safetensors is its default)",
        )
    weights = {}
    for path in files:
        weights.update(read_safetensors(path))
    return weights


def _take(weights: dict, name: str, shape: tuple) -> Any:
    if name not in weights:
        raise BaseImportError(f"the checkpoint has no {name}", hint="is the folder complete (every shard)?")
    value = weights[name]
    if tuple(value.shape) != tuple(shape):
        raise BaseImportError(
            f"{name} has shape {tuple(value.shape)}, the config implies {tuple(shape)}",
            hint="the config.json and the weights do not belong together",
        )
    return value


def load_hf_weights(model, model_config, weights: dict, max_positions: int) -> None:
    """Assign Transformers-named `weights` (GPT-2 or Llama layouts) to our model: the inverse of `hf_state_dict`."""
    import numpy as np

    blocks = [model.get_layer(f"block_{i}") for i in range(model_config.layers)]
    embedding = model.get_layer("token_embedding")
    d = model_config.dim
    vocab = int(embedding.input_dim)
    if model_config.arch == "gpt":
        if not any(name.startswith("transformer.") for name in weights):  # the original GPT-2 files lack the prefix
            weights = {(n if n == "lm_head.weight" else "transformer." + n): v for n, v in weights.items()}
        embedding.embeddings.assign(_take(weights, "transformer.wte.weight", (vocab, d)))
        table = _take(weights, "transformer.wpe.weight", (max_positions, d))
        model.get_layer("position_embedding").position_embeddings.assign(table[: model_config.context])
        for i, block in enumerate(blocks):
            p = f"transformer.h.{i}."
            width = block.mlp_dim
            for ours, theirs in ((block.attention_norm, "ln_1"), (block.mlp_norm, "ln_2")):
                ours.gamma.assign(_take(weights, p + theirs + ".weight", (d,)))
                ours.beta.assign(_take(weights, p + theirs + ".bias", (d,)))
            for ours, theirs, shape in (
                (block.attention.qkv, "attn.c_attn", (d, 3 * d)),
                (block.attention.out, "attn.c_proj", (d, d)),
                (block.mlp_in, "mlp.c_fc", (d, width)),
                (block.mlp_out, "mlp.c_proj", (width, d)),
            ):
                ours.kernel.assign(_take(weights, p + theirs + ".weight", shape))
                ours.bias.assign(_take(weights, p + theirs + ".bias", (shape[1],)))
        final = model.get_layer("final_norm")
        final.gamma.assign(_take(weights, "transformer.ln_f.weight", (d,)))
        final.beta.assign(_take(weights, "transformer.ln_f.bias", (d,)))
        table_name = "transformer.wte.weight"
    else:
        embedding.embeddings.assign(_take(weights, "model.embed_tokens.weight", (vocab, d)))
        for i, block in enumerate(blocks):
            p = f"model.layers.{i}."
            attention = block.attention
            q, kv, width = attention.heads * attention.head_dim, attention.kv_heads * attention.head_dim, block.mlp_dim
            attention.qkv.kernel.assign(
                np.concatenate(
                    [
                        _take(weights, p + "self_attn.q_proj.weight", (q, d)).T,
                        _take(weights, p + "self_attn.k_proj.weight", (kv, d)).T,
                        _take(weights, p + "self_attn.v_proj.weight", (kv, d)).T,
                    ],
                    axis=1,
                )
            )
            attention.out.kernel.assign(_take(weights, p + "self_attn.o_proj.weight", (d, q)).T)
            block.mlp_in.kernel.assign(
                np.concatenate(
                    [
                        _take(weights, p + "mlp.gate_proj.weight", (width, d)).T,
                        _take(weights, p + "mlp.up_proj.weight", (width, d)).T,
                    ],
                    axis=1,
                )
            )
            block.mlp_out.kernel.assign(_take(weights, p + "mlp.down_proj.weight", (d, width)).T)
            block.attention_norm.scale.assign(_take(weights, p + "input_layernorm.weight", (d,)))
            block.mlp_norm.scale.assign(_take(weights, p + "post_attention_layernorm.weight", (d,)))
        model.get_layer("final_norm").scale.assign(_take(weights, "model.norm.weight", (d,)))
        table_name = "model.embed_tokens.weight"
    if not model_config.tie_embeddings:
        output = weights.get("lm_head.weight", weights[table_name])  # some untied configs still share the table
        embedding.reverse_embeddings.assign(_take({"lm_head.weight": output}, "lm_head.weight", (vocab, d)).T)


def keras_hub_weights(backbone, family: str) -> dict:
    """A keras-hub backbone's weights under Transformers' names (so one mapping fills our model)."""
    import keras
    import numpy as np

    def np_(variable):
        return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)

    weights = {}
    if family == "gpt2":
        weights["transformer.wte.weight"] = np_(backbone.token_embedding.embeddings)
        weights["transformer.wpe.weight"] = np_(backbone.position_embedding.position_embeddings)
        for i, layer in enumerate(backbone.transformer_layers):
            p = f"transformer.h.{i}."
            attention = layer._self_attention_layer
            dims = [attention.query_dense, attention.key_dense, attention.value_dense]
            weights[p + "attn.c_attn.weight"] = np.concatenate(
                [np_(x.kernel).reshape(np_(x.kernel).shape[0], -1) for x in dims], axis=1
            )
            weights[p + "attn.c_attn.bias"] = np.concatenate([np_(x.bias).reshape(-1) for x in dims])
            out = np_(attention.output_dense.kernel)
            weights[p + "attn.c_proj.weight"] = out.reshape(-1, out.shape[-1])
            weights[p + "attn.c_proj.bias"] = np_(attention.output_dense.bias)
            for norm, name in ((layer._self_attention_layer_norm, "ln_1"), (layer._feedforward_layer_norm, "ln_2")):
                weights[p + name + ".weight"], weights[p + name + ".bias"] = np_(norm.gamma), np_(norm.beta)
            for dense, name in (
                (layer._feedforward_intermediate_dense, "mlp.c_fc"),
                (layer._feedforward_output_dense, "mlp.c_proj"),
            ):
                weights[p + name + ".weight"], weights[p + name + ".bias"] = np_(dense.kernel), np_(dense.bias)
        weights["transformer.ln_f.weight"] = np_(backbone.layer_norm.gamma)
        weights["transformer.ln_f.bias"] = np_(backbone.layer_norm.beta)
        return weights
    weights["model.embed_tokens.weight"] = np_(backbone.token_embedding.embeddings)
    if getattr(backbone.token_embedding, "reverse_embeddings", None) is not None:
        weights["lm_head.weight"] = np_(backbone.token_embedding.reverse_embeddings).T
    for i, layer in enumerate(backbone.transformer_layers):
        p = f"model.layers.{i}."
        attention = layer._self_attention_layer
        for dense, name in (
            (attention._query_dense, "q_proj"),
            (attention._key_dense, "k_proj"),
            (attention._value_dense, "v_proj"),
        ):
            kernel = np_(dense.kernel)  # (C, H, D)
            weights[p + f"self_attn.{name}.weight"] = kernel.reshape(kernel.shape[0], -1).T
        out = np_(attention._output_dense.kernel)  # (H, D, C)
        weights[p + "self_attn.o_proj.weight"] = out.reshape(-1, out.shape[-1]).T
        weights[p + "mlp.gate_proj.weight"] = np_(layer._feedforward_gate_dense.kernel).T
        weights[p + "mlp.up_proj.weight"] = np_(layer._feedforward_intermediate_dense.kernel).T
        weights[p + "mlp.down_proj.weight"] = np_(layer._feedforward_output_dense.kernel).T
        weights[p + "input_layernorm.weight"] = np_(layer._self_attention_layernorm.scale)
        weights[p + "post_attention_layernorm.weight"] = np_(layer._feedforward_layernorm.scale)
    weights["model.norm.weight"] = np_(backbone.layer_norm.scale)
    return weights


# Tokenizers ---------------------------------------------------------------------------------------------


def _token_name(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


def hf_tokenizer(folder: Path, config: dict):
    """(TextTokenizer, chat template or None) from a Hugging Face folder's tokenizer.json and tokenizer_config.json."""
    from tokenizers import Tokenizer

    from llmtui.tokenizers import TextTokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise BaseImportError(
            f"{folder} has no tokenizer.json (a fast tokenizer)",
            hint="save one with AutoTokenizer.from_pretrained(...).save_pretrained(folder) "
            "(Transformers converts slow SentencePiece tokenizers)",
        )
    backend = Tokenizer.from_file(str(path))
    settings = _read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
    names = {}
    for role in ("bos", "eos", "pad", "unk"):
        name = _token_name(settings.get(f"{role}_token"))
        if name is None and config.get(f"{role}_token_id") is not None:
            name = backend.id_to_token(int(config[f"{role}_token_id"]))
        names[role] = name
    if names["eos"] is None:
        raise BaseImportError(
            f"{folder}: no end-of-text token in tokenizer_config.json or config.json",
            hint="llmtui separates documents with it; set eos_token in tokenizer_config.json",
        )
    names["bos"] = names["bos"] or names["eos"]
    names["pad"] = names["pad"] or names["eos"]
    template = settings.get("chat_template")
    if template is None and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    data = json.loads(backend.to_str())
    byte_level = "ByteLevel" in json.dumps(data.get("pre_tokenizer")) and data["model"]["type"] == "BPE"
    return TextTokenizer(backend, "bpe" if byte_level else "pretrained", False, "none", None, names), template


def keras_hub_tokenizer(folder: Path, family: str):
    """A TextTokenizer from a keras-hub preset's tokenizer assets (GPT-2 vocabulary and merges, or a
    SentencePiece unigram or BPE model for Llama/Mistral)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from llmtui.tokenizers import TextTokenizer
    from llmtui.tokenizers.text_tokenizer import _unigram_from_sentencepiece

    assets = folder / "assets" / "tokenizer"
    if family == "gpt2":
        vocab_path, merges_path = assets / "vocabulary.json", assets / "merges.txt"
        if not vocab_path.is_file() or not merges_path.is_file():
            raise BaseImportError(
                f"{folder}: no GPT-2 tokenizer (assets/tokenizer/vocabulary.json and merges.txt)",
                hint="save the tokenizer too: tokenizer.save_to_preset(folder)",
            )
        vocab = _read_json(vocab_path)
        merges: list[Any] = [
            tuple(line.split(" "))
            for line in merges_path.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#version")
        ]
        backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        end = "<|endoftext|>"
        backend.add_special_tokens([end])
        return TextTokenizer(backend, "bpe", False, "none", None, {"bos": end, "eos": end, "pad": end, "unk": None})
    proto_path = assets / "vocabulary.spm"
    if not proto_path.is_file():
        raise BaseImportError(
            f"{folder}: no SentencePiece model (assets/tokenizer/vocabulary.spm)",
            hint="save the tokenizer too: tokenizer.save_to_preset(folder)",
        )
    from sentencepiece import sentencepiece_model_pb2

    proto = proto_path.read_bytes()
    spec = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]  # generated protobuf module
    spec.ParseFromString(proto)
    if spec.trainer_spec.model_type == spec.trainer_spec.UNIGRAM:
        backend, kind = _unigram_from_sentencepiece(proto), "unigram"
    elif spec.trainer_spec.model_type == spec.trainer_spec.BPE:  # Llama 2's kind
        backend, kind = _bpe_from_sentencepiece(spec), "pretrained"
    else:
        raise BaseImportError(
            f"{proto_path}: a SentencePiece model of type {spec.trainer_spec.model_type}; llmtui "
            "reads unigram and BPE ones",
            hint="import the model's Hugging Face folder instead",
        )
    backend.normalizer = _sentencepiece_normalizer(spec.normalizer_spec)
    pieces = [p.piece for p in spec.pieces]
    control = [p.piece for p in spec.pieces if p.type == p.CONTROL]
    backend.add_special_tokens(control)

    def named(*candidates):
        return next((c for c in candidates if c in pieces), None)

    eos = named("</s>", "<eos>") or (control[-1] if control else None)
    if eos is None:
        raise BaseImportError(f"{proto_path} has no end-of-text piece (</s>)", hint="is this a Llama tokenizer?")
    names = {"bos": named("<s>", "<bos>") or eos, "eos": eos, "pad": named("<pad>") or eos, "unk": named("<unk>")}
    return TextTokenizer(backend, kind, False, "none", proto if kind == "unigram" else None, names)


def _bpe_from_sentencepiece(spec):
    """The `tokenizers` twin of a SentencePiece BPE model: its pieces at their ids, merges ranked by the score
    of the piece they make (SentencePiece merges the best-scoring pair first), bytes for unknown characters
    when the model has byte pieces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from llmtui.tokenizers.text_tokenizer import METASPACE

    vocab = {p.piece: i for i, p in enumerate(spec.pieces)}
    normal = {p.piece: p.score for p in spec.pieces if p.type in (p.NORMAL, p.USER_DEFINED)}
    merges = []
    for piece, score in normal.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                merges.append((score, vocab[left], vocab[right], (left, right)))
    merges.sort(key=lambda m: (-m[0], m[1], m[2]))
    byte_fallback = any(p.type == p.BYTE for p in spec.pieces)
    unk = next((p.piece for p in spec.pieces if p.type == p.UNKNOWN), None)
    backend = Tokenizer(
        models.BPE(
            vocab=vocab, merges=[m[3] for m in merges], unk_token=unk, byte_fallback=byte_fallback, fuse_unk=True
        )
    )
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="never", split=False)
    backend.decoder = decoders.Sequence(
        [decoders.Replace(METASPACE, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return backend


def _sentencepiece_normalizer(spec):
    """What SentencePiece does to text before segmenting it, as a `tokenizers` normaliser: its Unicode rule
    (nmt_nfkc is NFKC), extra whitespace removed, a "▁" before the text, "▁" for every space."""
    from tokenizers import Regex, normalizers

    from llmtui.tokenizers.text_tokenizer import METASPACE

    steps: list[Any] = [normalizers.NFKC()] if "nfkc" in spec.name else []
    if spec.remove_extra_whitespaces:
        steps += [normalizers.Strip(), normalizers.Replace(Regex(" {2,}"), " ")]
    if spec.add_dummy_prefix:
        steps.append(normalizers.Prepend(METASPACE))
    steps.append(normalizers.Replace(" ", METASPACE))
    return normalizers.Sequence(steps)


# The import ---------------------------------------------------------------------------------------------


def _check_logits(ours, reference, what: str) -> float:
    import numpy as np

    ours, reference = np.asarray(ours, np.float32), np.asarray(reference, np.float32)
    diff = float(np.max(np.abs(ours - reference)))
    allowed = max(1e-4, 1e-5 * float(np.max(np.abs(reference))))
    if not diff <= allowed:
        raise BaseImportError(
            f"the imported model's logits are up to {diff:.3g} away from {what} (allowed {allowed:.3g})",
            hint="this is a bug in llmtui's import; please report it",
        )
    return diff


def build_base_model(spec: BaseSpec, context: int):
    """Our model for `spec` holding the base's weights, and the largest logit difference from the base itself
    (keras-hub presets: checked against their backbone; Transformers folders: see `import_base`)."""
    import numpy as np

    from llmtui.models.build import BUILDERS

    assert spec.path is not None  # a local folder by now (read_base_spec downloads a hub handle)
    config = spec.model_config(context)
    model = BUILDERS[config.arch](config, spec.vocab_size, 0, norm_epsilon=spec.norm_epsilon)
    ids = np.random.default_rng(0).integers(0, spec.vocab_size, size=(2, min(config.context, 16))).astype("int32")
    if spec.format == "hf":
        load_hf_weights(
            model, config, read_hf_weights(spec.path), spec.max_positions if config.arch == "gpt" else config.context
        )
        return model, config, ids, None
    import keras
    import keras_hub

    backbone = keras_hub.models.Backbone.from_preset(str(spec.path))
    positions = spec.model["context"] if config.arch == "gpt" else config.context
    load_hf_weights(model, config, keras_hub_weights(backbone, spec.family), positions)
    hidden = backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)}, training=False)
    reference = keras.ops.convert_to_numpy(backbone.token_embedding(hidden, reverse=True))
    diff = _check_logits(
        model(ids, training=False), reference, f"keras-hub's {spec.path.name} {type(backbone).__name__}"
    )
    return model, config, ids, diff


def import_base(
    source: str, run_root: Path, context: int | None = None, base_dir: Path = Path("."), spec: BaseSpec | None = None
) -> dict:
    """Write an llmtui run folder at `run_root` holding the pretrained base `source`: recipe.toml, tokenizer/,
    model/final.keras, model/import.json, manifest.json. Keras must be configured. Returns import.json's data.

    The folder is written under a temporary name and renamed at the end, so a failed import leaves nothing a
    later command would trust.
    """

    from llmtui.config.loader import recipe_to_toml
    from llmtui.config.recipe import Recipe
    from llmtui.runfolder import RunFolder, TokenMeta, write_json_atomic, write_text_atomic, write_token_meta
    from llmtui.tokenizers.chat import TEMPLATE_FILE

    spec = spec or read_base_spec(source, base_dir)
    assert spec.path is not None  # a local folder by now (read_base_spec downloads a hub handle)
    if spec.format == "hf":
        tokenizer, template = hf_tokenizer(spec.path, _read_json(spec.path / "config.json"))
    else:
        tokenizer, template = keras_hub_tokenizer(spec.path, spec.family), None
    if tokenizer.vocab_size > spec.vocab_size:
        raise BaseImportError(
            f"the tokenizer has {tokenizer.vocab_size} tokens, the model only {spec.vocab_size} rows",
            hint="the tokenizer and the model do not belong together",
        )
    model, config, ids, diff = build_base_model(spec, context or spec.max_positions)
    if spec.format == "hf":
        from llmtui.export.hf import transformers_logits

        reference = transformers_logits(spec.path, ids)
        if reference is not None:
            diff = _check_logits(model(ids, training=False), reference, f"Transformers' model of {spec.path.name}")
    staging = run_root.with_name(run_root.name + ".importing")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        run = RunFolder(staging)
        recipe = Recipe.model_validate(
            {
                "run": {"name": run_root.name, "out_dir": str(run_root.parent)},
                "tokenizer": {
                    "kind": "unigram" if tokenizer.kind == "unigram" else "bpe",
                    "vocab_size": min(max(tokenizer.vocab_size, 32), 1_000_000),
                },
                "model": config.model_dump(mode="json"),
            }
        )
        staging.mkdir(parents=True)
        write_text_atomic(run.recipe_path, recipe_to_toml(recipe))
        tokenizer.save(run.tokenizer_dir)
        write_token_meta(run.tokenizer_dir, TokenMeta(vocab_size=spec.vocab_size, kind=tokenizer.kind))
        if template:
            (run.tokenizer_dir / TEMPLATE_FILE).write_text(template, encoding="utf-8")
        run.model_dir.mkdir(parents=True)
        model.save(run.final_model_path)
        info = {
            "source": source,
            "folder": str(spec.path),
            "format": spec.format,
            "family": spec.family,
            "arch": config.arch,
            "parameters": int(sum(math.prod(w.shape) for w in model.weights)),
            "vocab_size": spec.vocab_size,
            "context": config.context,
            "norm_epsilon": spec.norm_epsilon,
            "max_logit_diff": diff,
            "chat_template": bool(template),
            "notes": spec.notes,
        }
        write_json_atomic(run.model_dir / IMPORT_FILE, info)
        run.write_manifest({"stages": {}, "imported": info})
        if run_root.exists():
            shutil.rmtree(run_root)
        staging.rename(run_root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return info
