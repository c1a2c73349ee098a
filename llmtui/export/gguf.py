"""The GGUF export: one `.gguf` file (llama.cpp, Ollama, LM Studio, Transformers' `gguf_file=`) and an Ollama
`Modelfile` beside it.

The tensors start from `hf_state_dict` (our weights under Transformers' names) and take llama.cpp's names
and layouts: every matrix is (out, in) (GPT-2's Conv1D matrices are transposed for it), and Llama's query
and key rows are reordered from the rotate-half layout to llama.cpp's interleaved pairs (Transformers' GGUF
loader undoes exactly that). The output matrix is always written (`output.weight`), tied or not, so no
reader has to guess. One-dimensional tensors (norms, biases) stay float32 in every type; a Q8_0 matrix
whose rows are not a multiple of 32 long is written float16 (what llama.cpp's converter does).

Tokenizer metadata: our byte-level BPE (`bpe`, `byte`) is llama.cpp's `gpt2` tokenizer (tokens, merges);
our SentencePiece unigram is its `llama` tokenizer (pieces with their scores). `char` and `wordpiece`
vocabularies have no GGUF counterpart and are refused before anything is written. The chat template is
stored as `tokenizer.chat_template`.
"""

from __future__ import annotations

import json
from pathlib import Path

from llmtui.export.common import LOGITS_ATOL, ExportError, ExportResult, max_difference

GGUF_TOKENIZERS = {"bpe": "gpt2", "byte": "gpt2", "unigram": "llama"}
MODELFILE = "Modelfile"
# Allowed |logit difference| from the run's model, as a share of the largest |logit|, after rounding the
# matrices to 16 bits or to 8-bit blocks (float32 is held to the Transformers export's tolerance).
ROUNDING_RTOL = {"f16": 0.01, "q8_0": 0.05}

LOAD_CODE = """\
# llama.cpp:  llama-cli -m {path} -p "some text"
# Ollama:     ollama create mymodel -f {modelfile} && ollama run mymodel
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("{folder}", gguf_file="{name}")
model = AutoModelForCausalLM.from_pretrained("{folder}", gguf_file="{name}"{extra})"""


def gguf_name(hf_name: str, arch: str) -> str:
    """llama.cpp's tensor name for a Transformers parameter of our gpt (GPT-2) or llama model."""
    if hf_name == "lm_head.weight":
        return "output.weight"
    if arch == "gpt":
        fixed = {
            "transformer.wte.weight": "token_embd.weight",
            "transformer.wpe.weight": "position_embd.weight",
            "transformer.ln_f.weight": "output_norm.weight",
            "transformer.ln_f.bias": "output_norm.bias",
        }
        parts = {
            "ln_1": "attn_norm",
            "attn.c_attn": "attn_qkv",
            "attn.c_proj": "attn_output",
            "ln_2": "ffn_norm",
            "mlp.c_fc": "ffn_up",
            "mlp.c_proj": "ffn_down",
        }
        layer_prefix = "transformer.h."
    else:
        fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
        parts = {
            "input_layernorm": "attn_norm",
            "self_attn.q_proj": "attn_q",
            "self_attn.k_proj": "attn_k",
            "self_attn.v_proj": "attn_v",
            "self_attn.o_proj": "attn_output",
            "post_attention_layernorm": "ffn_norm",
            "mlp.gate_proj": "ffn_gate",
            "mlp.up_proj": "ffn_up",
            "mlp.down_proj": "ffn_down",
        }
        layer_prefix = "model.layers."
    if hf_name in fixed:
        return fixed[hf_name]
    layer, _, rest = hf_name[len(layer_prefix) :].partition(".")
    part, _, kind = rest.rpartition(".")
    return f"blk.{layer}.{parts[part]}.{kind}"


def interleave_rotary_rows(weight, heads: int):
    """(heads * D, in) query/key rows from rotate-half order (per head: all first halves, then all second
    halves) to llama.cpp's order (per head: the pairs (i, i + D/2) next to each other)."""
    rows, cols = weight.shape
    half = rows // heads // 2
    return weight.reshape(heads, 2, half, cols).swapaxes(1, 2).reshape(rows, cols)


def gguf_tensors(model, model_config) -> dict:
    """{llama.cpp tensor name: float32 array in llama.cpp's layout} for our gpt or llama model."""
    from llmtui.export.hf import hf_state_dict

    weights = hf_state_dict(model, model_config)
    if "lm_head.weight" not in weights:  # tied: write the output matrix anyway (see the module's docstring)
        table = "transformer.wte.weight" if model_config.arch == "gpt" else "model.embed_tokens.weight"
        weights["lm_head.weight"] = weights[table]
    block = model.get_layer("block_0").attention
    tensors = {}
    for hf_name, value in weights.items():
        name = gguf_name(hf_name, model_config.arch)
        if (
            model_config.arch == "gpt"
            and value.ndim == 2
            and name.split(".")[-2] in ("attn_qkv", "attn_output", "ffn_up", "ffn_down")
        ):
            value = value.T  # GPT-2's Conv1D is (in, out); llama.cpp wants (out, in)
        elif name.endswith("attn_q.weight"):
            value = interleave_rotary_rows(value, block.heads)
        elif name.endswith("attn_k.weight"):
            value = interleave_rotary_rows(value, block.kv_heads)
        tensors[name] = value.astype("float32").copy(order="C")
    return tensors


def _encode_tensor(value, quantize: str):
    """(data to write, GGML type) for one tensor in the asked type."""
    import numpy as np
    from gguf import GGMLQuantizationType, quants

    if value.ndim == 1 or quantize == "f32":
        return value.astype(np.float32), GGMLQuantizationType.F32
    if quantize == "q8_0" and value.shape[-1] % 32 == 0:
        return quants.quantize(value, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0
    return value.astype(np.float16), GGMLQuantizationType.F16


def _tokenizer_metadata(writer, tokenizer, template: str) -> None:
    from gguf import TokenType

    kind = GGUF_TOKENIZERS[tokenizer.kind]
    vocab = tokenizer.backend.get_vocab(with_added_tokens=True)
    tokens = [None] * len(vocab)
    for piece, index in vocab.items():
        tokens[index] = piece
    special = {tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id}
    types = [int(TokenType.CONTROL if i in special else TokenType.NORMAL) for i in range(len(tokens))]
    if tokenizer.unk_id is not None:
        types[tokenizer.unk_id] = int(TokenType.UNKNOWN)
    writer.add_tokenizer_model(kind)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if kind == "gpt2":
        writer.add_tokenizer_pre("gpt-2")  # GPT-2's split pattern, which our ByteLevel pre-tokenizer uses
        model = json.loads(tokenizer.backend.to_str())["model"]
        writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])])
    else:
        model = json.loads(tokenizer.backend.to_str())["model"]
        scores = {piece: float(score) for piece, score in model["vocab"]}
        writer.add_token_scores([scores.get(piece, 0.0) for piece in tokens])
        writer.add_add_space_prefix(True)
    for add, token_id in (
        (writer.add_bos_token_id, tokenizer.bos_id),
        (writer.add_eos_token_id, tokenizer.eos_id),
        (writer.add_unk_token_id, tokenizer.unk_id),
        (writer.add_pad_token_id, tokenizer.pad_id),
    ):
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(False)  # like llmtui: text is encoded without <bos>
    writer.add_add_eos_token(False)
    writer.add_chat_template(template)


def _model_metadata(writer, model, model_config, quantize: str) -> None:
    from gguf import LlamaFileType

    block = model.get_layer("block_0")
    writer.add_name(f"llmtui {model_config.arch}")
    writer.add_context_length(model_config.context)
    writer.add_embedding_length(model_config.dim)
    writer.add_block_count(model_config.layers)
    writer.add_feed_forward_length(block.mlp_dim)
    writer.add_head_count(block.attention.heads)
    writer.add_file_type(
        {"f32": LlamaFileType.ALL_F32, "f16": LlamaFileType.MOSTLY_F16, "q8_0": LlamaFileType.MOSTLY_Q8_0}[quantize]
    )
    if model_config.arch == "gpt":
        writer.add_layer_norm_eps(block.norm_epsilon)
        return
    writer.add_head_count_kv(block.attention.kv_heads)
    writer.add_layer_norm_rms_eps(block.norm_epsilon)
    writer.add_rope_dimension_count(block.attention.head_dim)
    writer.add_rope_freq_base(float(model_config.rope_base))
    writer.add_vocab_size(int(model.get_layer("token_embedding").input_dim))


def check_gguf_file(path: Path, tensors: dict, quantize: str) -> None:
    """Read `path` back with the gguf package: every tensor present, with its shape and values (exactly in
    float32, within the rounding of the other types)."""
    import numpy as np
    from gguf import GGUFReader, quants

    reader = GGUFReader(str(path))
    found = {tensor.name: tensor for tensor in reader.tensors}
    if set(found) != set(tensors):
        raise ExportError(
            f"{path.name} read back holds other tensors than were written "
            f"(missing {sorted(set(tensors) - set(found))[:3]}, "
            f"extra {sorted(set(found) - set(tensors))[:3]})",
            hint="this is a bug in llmtui's GGUF export; use --format hf",
        )
    for name, expected in tensors.items():
        got = quants.dequantize(found[name].data, found[name].tensor_type).reshape(expected.shape)
        allowed = 0.0 if found[name].tensor_type.name == "F32" else 0.02 * float(np.max(np.abs(expected)) or 1.0)
        diff = float(np.max(np.abs(got.astype(np.float32) - expected))) if expected.size else 0.0
        if not diff <= allowed:
            raise ExportError(
                f"{path.name}: tensor {name} read back differs by {diff:.3g} (allowed {allowed:.3g})",
                hint="this is a bug in llmtui's GGUF export; use --format hf",
            )


def modelfile(gguf_file: str, template: str, model_config, generate_config, eos_token: str) -> str:
    """An Ollama Modelfile for the .gguf beside it: the chat layout and the recipe's sampling defaults."""
    from llmtui.tokenizers.chat import LINES_OLLAMA_TEMPLATE, LINES_TEMPLATE

    lines = [f"FROM ./{gguf_file}"]
    if template == LINES_TEMPLATE:
        # One line per turn (as `llmtui chat`): the reply is the next line.
        lines += [f'TEMPLATE """{LINES_OLLAMA_TEMPLATE}"""', 'PARAMETER stop "\\n"']
    else:
        lines.append(
            "# the run's chat template is Jinja (tokenizer.chat_template in the .gguf); write its Go form "
            "as TEMPLATE here if your Ollama version does not read it from the file"
        )
    lines += [
        f'PARAMETER stop "{eos_token}"',
        f"PARAMETER num_ctx {model_config.context}",
        f"PARAMETER temperature {generate_config.temperature:g}",
    ]
    if generate_config.top_k:
        lines.append(f"PARAMETER top_k {generate_config.top_k}")
    lines.append(f"PARAMETER top_p {generate_config.top_p:g}")
    return "\n".join(lines) + "\n"


def gguf_problem(tokenizer_kind: str) -> str | None:
    """Why a run's tokenizer of this kind cannot be written into GGUF metadata, or None when it can."""
    if tokenizer_kind not in GGUF_TOKENIZERS:
        return (
            f"tokenizer.kind = {tokenizer_kind!r}: llama.cpp's tokenizers are byte-level BPE (our bpe and byte) "
            "and SentencePiece (our unigram); a GGUF file must carry one of them"
        )
    return None


def gpt2_split_problem(tokenizer) -> str | None:
    """Why a byte-level BPE vocabulary cannot be labelled with GPT-2's split pattern (llama.cpp's `gpt-2`
    pre-tokenizer), or None: ours always can; an imported one (Llama 3's, for one) may split text otherwise."""
    pre = json.loads(tokenizer.backend.to_str()).get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return None
    if tokenizer.kind == "byte" and pre.get("type") == "ByteLevel":
        return None  # one token per byte: no split pattern changes the ids
    return (
        "this byte-level vocabulary splits text with its own pattern, not GPT-2's, and llmtui does not know "
        "llama.cpp's name for it"
    )


def export_gguf(
    model,
    model_config,
    tokenizer,
    template: str,
    generate_config,
    quantize: str,
    out: Path,
    sample_ids,
    reference_logits,
    atol: float = LOGITS_ATOL,
) -> ExportResult:
    """Write `out/model-<type>.gguf` and `out/Modelfile`; read the file back and, with torch installed, load
    it in Transformers and compare its logits with the run's model."""
    import numpy as np
    from gguf import GGUFWriter

    from llmtui.export.hf import HF_ARCHS, cross_framework_atol, hf_problem, transformers_logits

    problem = (
        hf_problem(model_config)
        or gguf_problem(tokenizer.kind)
        or (gpt2_split_problem(tokenizer) if GGUF_TOKENIZERS.get(tokenizer.kind) == "gpt2" else None)
    )
    if problem:
        raise ExportError(
            f"cannot export a GGUF file: {problem}",
            hint="use --format keras or --format savedmodel, which take any llmtui model",
        )
    name = f"model-{quantize}.gguf"
    path = out / name
    tensors = gguf_tensors(model, model_config)
    writer = GGUFWriter(str(path), {"gpt": "gpt2", "llama": "llama"}[model_config.arch])
    _model_metadata(writer, model, model_config, quantize)
    _tokenizer_metadata(writer, tokenizer, template)
    for tensor_name, value in tensors.items():
        data, ggml_type = _encode_tensor(value, quantize)
        writer.add_tensor(tensor_name, data, raw_dtype=ggml_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    check_gguf_file(path, tensors, quantize)
    (out / MODELFILE).write_text(
        modelfile(name, template, model_config, generate_config, tokenizer.special_names["eos"]), encoding="utf-8"
    )
    from llmtui.export.hf import template_summary

    notes = [
        f"{HF_ARCHS[model_config.arch]} layout as llama.cpp's {'gpt2' if model_config.arch == 'gpt' else 'llama'} "
        f"architecture; matrices {quantize.upper()}, norms and biases F32; read back and checked tensor by tensor",
        f"tokenizer: llama.cpp's {GGUF_TOKENIZERS[tokenizer.kind]} tokenizer from this run's vocabulary; chat "
        f"template: {template_summary(template)}",
        f"{MODELFILE}: for `ollama create NAME -f {out / MODELFILE}`",
    ]
    if tokenizer.kind == "unigram":
        notes.append(
            "llama.cpp segments SentencePiece text by merging pieces by score, which can split some words "
            "differently from our unigram tokenizer's best segmentation"
        )
    # Transformers' GGUF loader reads GPT-2's context length into n_ctx only; its position table is n_positions.
    extra = {"n_positions": model_config.context} if model_config.arch == "gpt" else {}
    got = transformers_logits(out, sample_ids, gguf_file=name, **extra)
    diff = None
    if got is None:
        notes.append("not loaded in Transformers: install torch, transformers and accelerate to compare its logits too")
    else:
        allowed = (
            cross_framework_atol(reference_logits, atol)
            if quantize == "f32"
            else ROUNDING_RTOL[quantize] * max(1.0, float(np.max(np.abs(reference_logits))))
        )
        diff = max_difference(reference_logits, got, f"Transformers' GGUF loader on {name}", allowed)
    return ExportResult(
        format="gguf",
        path=out,
        files=[path, out / MODELFILE],
        load_code=LOAD_CODE.format(
            path=path,
            modelfile=out / MODELFILE,
            folder=out,
            name=name,
            extra="".join(f", {k}={v}" for k, v in extra.items()),
        ),
        notes=notes,
        max_logit_diff=diff,
    )
