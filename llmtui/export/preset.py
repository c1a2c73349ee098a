"""The keras-hub preset export: our transformer's weights moved into keras-hub's own backbone class.

| arch | keras-hub backbone | what is mapped |
| --- | --- | --- |
| gpt | `GPT2Backbone` | fused `qkv` Dense split into the query/key/value EinsumDense kernels (C, H, D) and biases (H, D); `out` into the (H, D, C) output kernel; LayerNorms (eps 1e-5), tanh-GELU MLP, learned positions and the tied output embedding match GPT-2's |
| llama | `LlamaBackbone` | the same split with grouped-query heads (no biases); `mlp_in`'s first half (gate) and second half (value) into the gate and intermediate Dense layers; RMSNorm scales and their epsilon; rotary base into `rope_max_wavelength`; tied or untied output embedding (`tie_word_embeddings`) |

Not mappable: lstm, gru and rnn (keras-hub has no recurrent language-model backbone), GPT runs with
`tie_embeddings = false` (`GPT2Backbone` always ties its output projection to the token embedding) and token
encodings with a projection (`model.projection`: keras-hub's embedding has no projection). One-hot and
pretrained token encodings without a projection are a plain table at inference time, so they map.

Tokenizer: keras-hub's `GPT2Tokenizer` is a byte-level BPE, which our `bpe` and `byte` kinds are; it needs
an `<|endoftext|>` token, so our `<eos>` (same id) takes that name. `LlamaTokenizer` is a SentencePiece
model, which our `unigram` kind is; it needs `<s>` and `</s>`, the names our `<bos>` and `<eos>` take in the
exported proto. Other pairs export the backbone only (our Hugging Face tokenizer.json goes beside it).
Both keras-hub tokenizers skip our tokenizer's Unicode normalisation (and lowercasing), so text should be
normalised the way the data stage did it; ids on such text are checked equal at export time.
"""  # noqa: E501  (a Markdown table in the docstring: one row, one line)

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from llmtui.export.common import LOGITS_ATOL, ExportError, ExportResult, max_difference, weight_or_zeros

PRESET_ARCHS = ("gpt", "llama")
HF_TOKENIZER = Path("hf_tokenizer") / "tokenizer.json"
# Text on which a keras-hub tokenizer must give our ids before it is exported.
TOKENIZER_CHECK_TEXT = (
    "The model reads text and learns to predict the next token.\n"
    "Numbers 12, 345 and punctuation: (yes!) -- 'quotes' \"too\"; café, naïve, 東京."
)

LOAD_IMPORTS = "import keras_hub\nimport numpy as np\n"
TOKENIZER_LOAD_CODE = """\
tokenizer = keras_hub.tokenizers.Tokenizer.from_preset("{path}")
token_ids = np.asarray(tokenizer("some text"))[None, :]  # (1, time)
"""
BACKBONE_LOAD_CODE = """\
backbone = keras_hub.models.Backbone.from_preset("{path}")
hidden = backbone({{"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}})  # (batch, time, dim)
logits = backbone.token_embedding(hidden, reverse=True)  # (batch, time, vocab)"""
CAUSAL_LM_LOAD_CODE = """
# or generate: keras_hub.models.CausalLM.from_preset("{path}").generate("some text", max_length=64)"""


def preset_problem(model_config) -> str | None:
    """Why a run with this `[model]` section cannot become a keras-hub preset, or None when it can."""
    if model_config.arch not in PRESET_ARCHS:
        return (
            f"model.arch = {model_config.arch!r}: keras-hub has no recurrent language-model backbone to load "
            f"it into (presets exist for gpt → GPT2Backbone and llama → LlamaBackbone)"
        )
    if model_config.arch == "gpt" and not model_config.tie_embeddings:
        return (
            "model.tie_embeddings = false: keras-hub's GPT2Backbone always ties its output projection to the "
            "token embedding, so an untied GPT has no place for its output matrix"
        )
    if model_config.embedding == "pretrained" and model_config.projection:
        return (
            "model.projection = true: the token embedding is narrower or wider than the model and a learned "
            "projection follows it, which keras-hub's embedding layer does not have"
        )
    return None


def _np(variable):
    import keras

    return keras.ops.convert_to_numpy(variable)


def _assign(target, value, where: str) -> None:
    if tuple(target.shape) != tuple(value.shape):
        raise ExportError(
            f"cannot map {where}: keras-hub expects shape {tuple(target.shape)}, ours is {tuple(value.shape)}",
            hint="this is a bug in llmtui's export; use --format keras",
        )
    target.assign(value.astype(target.dtype))


def _split_heads(kernel, heads: int, head_dim: int):
    """(C, H*D) -> (C, H, D): the column h*D + d of a fused projection is head h, feature d."""
    return kernel.reshape(kernel.shape[0], heads, head_dim)


def _copy_attention(ours, theirs, where: str) -> None:
    """Our fused `qkv` and `out` Dense layers into keras-hub's four EinsumDense layers.

    `theirs` is keras-hub's attention layer's (query, key, value, output) EinsumDense layers.
    """
    query, key, value, output = theirs
    heads, kv_heads, head_dim = ours.heads, ours.kv_heads, ours.head_dim
    kernel = _np(ours.qkv.kernel)  # (C, (H + 2K) * D); merged LoRA weights included
    q_end, k_end = heads * head_dim, (heads + kv_heads) * head_dim
    _assign(query.kernel, _split_heads(kernel[:, :q_end], heads, head_dim), f"{where} query")
    _assign(key.kernel, _split_heads(kernel[:, q_end:k_end], kv_heads, head_dim), f"{where} key")
    _assign(value.kernel, _split_heads(kernel[:, k_end:], kv_heads, head_dim), f"{where} value")
    out_kernel = _np(ours.out.kernel)  # (H * D, C)
    _assign(output.kernel, out_kernel.reshape(heads, head_dim, out_kernel.shape[-1]), f"{where} output")
    if query.bias is not None:  # keras-hub's GPT-2 has biases; zeros where ours has none (`model.bias = false`)
        bias = weight_or_zeros(ours.qkv, "bias", kernel.shape[1])
        _assign(query.bias, bias[:q_end].reshape(heads, head_dim), f"{where} query bias")
        _assign(key.bias, bias[q_end:k_end].reshape(kv_heads, head_dim), f"{where} key bias")
        _assign(value.bias, bias[k_end:].reshape(kv_heads, head_dim), f"{where} value bias")
        _assign(output.bias, weight_or_zeros(ours.out, "bias", out_kernel.shape[-1]), f"{where} output bias")


def _copy_embedding(ours, theirs, tied: bool) -> None:
    if getattr(ours, "projection", None) is not None:  # preset_problem turns these away first
        raise ExportError(
            "a token embedding with a projection has no keras-hub counterpart",
            hint="use --format keras or --format savedmodel",
        )
    _assign(theirs.embeddings, _np(ours.embeddings), "token embedding")
    if not tied:
        _assign(theirs.reverse_embeddings, _np(ours.reverse_embeddings), "output embedding")


def _dtype(model) -> str:
    """The model's dtype policy name (float32, or mixed_bfloat16 for a run trained in mixed precision)."""
    return model.get_layer("block_0").dtype_policy.name


def gpt2_backbone(model, model_config):
    """A `keras_hub.models.GPT2Backbone` holding the weights of our gpt `model`."""
    import keras_hub

    blocks = [model.get_layer(f"block_{i}") for i in range(model_config.layers)]
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=int(model.get_layer("token_embedding").input_dim),
        num_layers=model_config.layers,
        num_heads=model_config.heads,
        hidden_dim=model_config.dim,
        intermediate_dim=blocks[0].mlp_dim,
        dropout=model_config.dropout,
        max_sequence_length=model_config.context,
        dtype=_dtype(model),
    )
    _copy_embedding(model.get_layer("token_embedding"), backbone.token_embedding, tied=True)
    _assign(
        backbone.position_embedding.position_embeddings,
        _np(model.get_layer("position_embedding").position_embeddings),
        "position embedding",
    )
    for i, (ours, theirs) in enumerate(zip(blocks, backbone.transformer_layers)):
        where = f"block_{i}"
        attention = theirs._self_attention_layer
        _copy_attention(
            ours.attention,
            (attention.query_dense, attention.key_dense, attention.value_dense, attention.output_dense),
            f"{where} attention",
        )
        for our_norm, their_norm in (
            (ours.attention_norm, theirs._self_attention_layer_norm),
            (ours.mlp_norm, theirs._feedforward_layer_norm),
        ):
            _assign(their_norm.gamma, _np(our_norm.gamma), f"{where} {our_norm.name} scale")
            offset = weight_or_zeros(our_norm, "beta", model_config.dim)
            _assign(their_norm.beta, offset, f"{where} {our_norm.name} offset")
        for our_dense, their_dense in (
            (ours.mlp_in, theirs._feedforward_intermediate_dense),
            (ours.mlp_out, theirs._feedforward_output_dense),
        ):
            _assign(their_dense.kernel, _np(our_dense.kernel), f"{where} {our_dense.name}")
            _assign(
                their_dense.bias, weight_or_zeros(our_dense, "bias", our_dense.units), f"{where} {our_dense.name} bias"
            )
    final = model.get_layer("final_norm")
    _assign(backbone.layer_norm.gamma, _np(final.gamma), "final_norm scale")
    _assign(backbone.layer_norm.beta, weight_or_zeros(final, "beta", model_config.dim), "final_norm offset")
    return backbone


def llama_backbone(model, model_config):
    """A `keras_hub.models.LlamaBackbone` holding the weights of our llama `model`."""
    import keras_hub

    blocks = [model.get_layer(f"block_{i}") for i in range(model_config.layers)]
    mlp_dim = blocks[0].mlp_dim
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=int(model.get_layer("token_embedding").input_dim),
        num_layers=model_config.layers,
        num_query_heads=model_config.heads,
        num_key_value_heads=blocks[0].kv_heads,
        hidden_dim=model_config.dim,
        intermediate_dim=mlp_dim,
        rope_max_wavelength=model_config.rope_base,
        layer_norm_epsilon=blocks[0].norm_epsilon,
        dropout=model_config.dropout,
        tie_word_embeddings=model_config.tie_embeddings,
        dtype=_dtype(model),
    )
    _copy_embedding(model.get_layer("token_embedding"), backbone.token_embedding, tied=model_config.tie_embeddings)
    for i, (ours, theirs) in enumerate(zip(blocks, backbone.transformer_layers)):
        where = f"block_{i}"
        attention = theirs._self_attention_layer
        _copy_attention(
            ours.attention,
            (attention._query_dense, attention._key_dense, attention._value_dense, attention._output_dense),
            f"{where} attention",
        )
        _assign(theirs._self_attention_layernorm.scale, _np(ours.attention_norm.scale), f"{where} attention_norm")
        _assign(theirs._feedforward_layernorm.scale, _np(ours.mlp_norm.scale), f"{where} mlp_norm")
        mlp_in = _np(ours.mlp_in.kernel)  # (C, 2M): silu(first half) * second half
        _assign(theirs._feedforward_gate_dense.kernel, mlp_in[:, :mlp_dim], f"{where} mlp_in gate half")
        _assign(theirs._feedforward_intermediate_dense.kernel, mlp_in[:, mlp_dim:], f"{where} mlp_in value half")
        _assign(theirs._feedforward_output_dense.kernel, _np(ours.mlp_out.kernel), f"{where} mlp_out")
    _assign(backbone.layer_norm.scale, _np(model.get_layer("final_norm").scale), "final_norm")
    return backbone


def backbone_logits(backbone, token_ids):
    """Next-token logits of a keras-hub backbone: its hidden states through the (reversed) token embedding."""
    import keras
    import numpy as np

    hidden = backbone({"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}, training=False)
    return keras.ops.convert_to_numpy(backbone.token_embedding(hidden, reverse=True))


def keras_hub_tokenizer(arch: str, tokenizer):
    """keras-hub's tokenizer for `arch` made from our `TextTokenizer`, or (None, why not)."""
    if arch == "gpt" and tokenizer.kind in ("bpe", "byte"):
        import keras_hub

        vocab = dict(tokenizer.backend.get_vocab(with_added_tokens=True))
        eos = tokenizer.special_names["eos"]
        if eos != "<|endoftext|>":
            vocab["<|endoftext|>"] = vocab.pop(eos)  # GPT-2's end token, at our end token's id
        model = json.loads(tokenizer.backend.to_str())["model"]
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        return keras_hub.models.GPT2Tokenizer(vocabulary=vocab, merges=merges), None
    if arch == "llama" and tokenizer.kind == "unigram":
        if tokenizer.sentencepiece_proto is None:
            return None, "this unigram tokenizer has no tokenizer.model (SentencePiece proto) beside it"
        import keras_hub

        return keras_hub.models.LlamaTokenizer(proto=_llama_proto(tokenizer.sentencepiece_proto)), None
    wanted = {
        "gpt": "a byte-level BPE (tokenizer.kind = 'bpe' or 'byte')",
        "llama": "a SentencePiece model (tokenizer.kind = 'unigram')",
    }[arch]
    return None, f"keras-hub's tokenizer for this family is {wanted}; this run's is tokenizer.kind = {tokenizer.kind!r}"


def _llama_proto(proto: bytes) -> bytes:
    """Our SentencePiece proto with `<bos>`/`<eos>` named `<s>`/`</s>` (what LlamaTokenizer looks for).

    They are control pieces, which SentencePiece never matches in text, so the renaming changes no ids.
    """
    from sentencepiece import sentencepiece_model_pb2

    spec = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]  # generated protobuf module
    spec.ParseFromString(proto)
    for piece in spec.pieces:
        piece.piece = {"<bos>": "<s>", "<eos>": "</s>"}.get(piece.piece, piece.piece)
    return spec.SerializeToString()


def _as_data_stage_wrote(text: str, tokenizer) -> str:
    """`text` in the Unicode form (and case) of the training text, which keras-hub's tokenizers expect."""
    import unicodedata

    if tokenizer.normalization != "none":
        text = unicodedata.normalize(tokenizer.normalization.upper(), text)
    return text.lower() if tokenizer.lowercase else text


def _matching_tokenizer(arch: str, tokenizer) -> tuple[Any | None, str | None]:
    """keras-hub's tokenizer when it gives our ids on the check text (after our normalisation), else why not."""
    import numpy as np

    try:
        theirs, why_not = keras_hub_tokenizer(arch, tokenizer)
    except ImportError as exc:  # keras-hub's tokenizers need TensorFlow (and tensorflow-text)
        return None, f"keras-hub's tokenizers need TensorFlow: {exc}"
    if theirs is None:
        return None, why_not
    text = _as_data_stage_wrote(TOKENIZER_CHECK_TEXT, tokenizer)
    expected = tokenizer.encode(text)
    got = [int(i) for i in np.asarray(theirs(text)).reshape(-1)]
    if got != expected:
        return None, (
            f"keras-hub's {type(theirs).__name__} built from this vocabulary gives other ids than ours "
            f"on a check text ({len(got)} vs {len(expected)} tokens)"
        )
    return theirs, None


def export_preset(
    model,
    model_config,
    tokenizer,
    tokenizer_json: Path,
    out: Path,
    sample_ids,
    reference_logits,
    atol: float = LOGITS_ATOL,
) -> ExportResult:
    """Write a keras-hub preset folder at `out` and load it back with `Backbone.from_preset`."""
    import keras_hub

    problem = preset_problem(model_config)
    if problem:
        raise ExportError(
            f"cannot export a keras-hub preset: {problem}",
            hint="use --format keras or --format savedmodel, which take any llmtui model",
        )
    build = {"gpt": gpt2_backbone, "llama": llama_backbone}[model_config.arch]
    backbone = build(model, model_config)
    # Check before writing: a mapping mistake must not leave a preset that loads and gives other logits.
    max_difference(reference_logits, backbone_logits(backbone, sample_ids), f"the {type(backbone).__name__}", atol)
    backbone.save_to_preset(str(out))
    notes = [f"{type(backbone).__name__}: {_backbone_summary(model_config, backbone)}"]
    theirs, why_not = _matching_tokenizer(model_config.arch, tokenizer)
    load_code = BACKBONE_LOAD_CODE.format(path=out)
    if theirs is not None:
        theirs.save_to_preset(str(out))
        load_code = (TOKENIZER_LOAD_CODE + BACKBONE_LOAD_CODE + CAUSAL_LM_LOAD_CODE).format(path=out)
        notes.append(
            f"tokenizer: keras-hub {type(theirs).__name__} with this run's vocabulary (same ids as ours; "
            f"it does not apply our {tokenizer.normalization.upper()} normalisation"
            f"{' or lowercasing' if tokenizer.lowercase else ''}); "
            + (
                "our <eos> is named <|endoftext|>"
                if model_config.arch == "gpt"
                else "our <bos>/<eos> are named <s>/</s>"
            )
        )
    else:
        notes.append(f"tokenizer: backbone only, no keras-hub tokenizer: {why_not}")
    (out / HF_TOKENIZER).parent.mkdir()
    shutil.copy2(tokenizer_json, out / HF_TOKENIZER)
    notes.append(f"{HF_TOKENIZER} is this run's Hugging Face tokenizer (tokenizers.Tokenizer.from_file)")
    load_code = LOAD_IMPORTS + load_code
    loaded = keras_hub.models.Backbone.from_preset(str(out))
    diff = max_difference(reference_logits, backbone_logits(loaded, sample_ids), "the preset loaded back", atol)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    return ExportResult(format="preset", path=out, files=files, load_code=load_code, notes=notes, max_logit_diff=diff)


def _backbone_summary(model_config, backbone) -> str:
    if model_config.arch == "gpt":
        return (
            f"{backbone.num_layers} layers, {backbone.num_heads} heads, width {backbone.hidden_dim}, "
            f"MLP {backbone.intermediate_dim}, {backbone.max_sequence_length} positions, tied output embedding"
        )
    tied = "tied" if backbone.tie_word_embeddings else "untied"
    return (
        f"{backbone.num_layers} layers, {backbone.num_query_heads} query / {backbone.num_key_value_heads} "
        f"key-value heads, width {backbone.hidden_dim}, MLP {backbone.intermediate_dim}, rope base "
        f"{backbone.rope_max_wavelength:g}, {tied} output embedding"
    )
