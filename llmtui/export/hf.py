"""The Hugging Face Transformers export: a folder that `AutoModelForCausalLM.from_pretrained` and
`AutoTokenizer.from_pretrained` load as they are.

| arch | Transformers class | what is mapped |
| --- | --- | --- |
| gpt | `GPT2LMHeadModel` | our fused `qkv` Dense is GPT-2's `c_attn` Conv1D as it is (both (in, out), query/key/value then head-major columns); `out`, `mlp_in`, `mlp_out` are `c_proj`, `c_fc`, `mlp.c_proj`; LayerNorms (eps 1e-5), tanh GELU (`gelu_new`), learned positions; tied or untied output embedding |
| llama | `LlamaForCausalLM` | `qkv` split into `q_proj`/`k_proj`/`v_proj` (torch's Linear stores (out, in): transposed), grouped-query heads; `mlp_in`'s gate and value halves into `gate_proj`/`up_proj`; RMSNorm scales (eps 1e-6); rotary base as `rope_theta` (keras-hub's rotary embedding and Transformers' both rotate halves, so no permutation); tied or untied output embedding |

Not mappable: lstm, gru and rnn (Transformers has no such causal-LM class to load them into) and token
encodings with a projection (`model.projection`). The tokenizer is the run's own `tokenizer.json`
(`PreTrainedTokenizerFast`), with its special tokens and the run's chat template in `tokenizer_config.json`.

`hf_state_dict` (our weights under Transformers' names) is also what the GGUF export starts from.
"""  # noqa: E501  (a Markdown table in the docstring: one row, one line)

from __future__ import annotations

import json
import shutil
from pathlib import Path

from llmtui.export.common import LOGITS_ATOL, ExportError, ExportResult, max_difference, weight_or_zeros

HF_ARCHS = {"gpt": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}
WEIGHTS_FILE = "model.safetensors"
# Transformers on PyTorch sums in another order than Keras: allowed |logit difference| as a share of the
# largest |logit| (float32 on both sides), never below LOGITS_ATOL.
CROSS_FRAMEWORK_RTOL = 1e-5

LOAD_CODE = """\
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("{path}")
model = AutoModelForCausalLM.from_pretrained("{path}")
ids = tokenizer("some text", return_tensors="pt").input_ids
print(tokenizer.decode(model.generate(ids, max_new_tokens=20, do_sample=False)[0]))"""


def hf_problem(model_config) -> str | None:
    """Why a run with this `[model]` section cannot become a Transformers (or GGUF) model, or None."""
    if model_config.arch not in HF_ARCHS:
        return (
            f"model.arch = {model_config.arch!r}: Transformers and llama.cpp have no recurrent causal-LM "
            f"class to load it into (gpt → GPT2LMHeadModel, llama → LlamaForCausalLM)"
        )
    if model_config.embedding == "pretrained" and model_config.projection:
        return (
            "model.projection = true: the token embedding is narrower or wider than the model and a learned "
            "projection follows it, which neither GPT-2 nor Llama has"
        )
    return None


def _np(variable):
    import keras
    import numpy as np

    return np.asarray(keras.ops.convert_to_numpy(variable), dtype="float32")


def _blocks(model, model_config) -> list:
    return [model.get_layer(f"block_{i}") for i in range(model_config.layers)]


def _embeddings(model) -> tuple:
    """(input table (V, C), output matrix (V, C) or None when tied)."""
    embedding = model.get_layer("token_embedding")
    if getattr(embedding, "projection", None) is not None:  # hf_problem turns these away first
        raise ExportError(
            "a token embedding with a projection has no Transformers counterpart",
            hint="use --format keras or --format savedmodel",
        )
    reverse = getattr(embedding, "reverse_embeddings", None)
    return _np(embedding.embeddings), None if reverse is None else _np(reverse).T


def hf_state_dict(model, model_config) -> dict:
    """Our model's weights as {Transformers parameter name: float32 array}, in Transformers' layouts."""
    table, output = _embeddings(model)
    blocks = _blocks(model, model_config)
    weights = {}
    if model_config.arch == "gpt":
        weights["transformer.wte.weight"] = table
        weights["transformer.wpe.weight"] = _np(model.get_layer("position_embedding").position_embeddings)
        for i, block in enumerate(blocks):
            p = f"transformer.h.{i}."
            # GPT-2's Conv1D keeps (in, out) like a Keras Dense kernel, and c_attn's columns are query, key,
            # value, each head after head: exactly our fused qkv.
            for ours, theirs in ((block.attention_norm, "ln_1"), (block.mlp_norm, "ln_2")):
                weights[p + theirs + ".weight"] = _np(ours.gamma)
                weights[p + theirs + ".bias"] = _np(weight_or_zeros(ours, "beta", ours.gamma.shape[0]))
            for ours, theirs in (
                (block.attention.qkv, "attn.c_attn"),
                (block.attention.out, "attn.c_proj"),
                (block.mlp_in, "mlp.c_fc"),
                (block.mlp_out, "mlp.c_proj"),
            ):
                weights[p + theirs + ".weight"] = _np(ours.kernel)
                weights[p + theirs + ".bias"] = _np(weight_or_zeros(ours, "bias", ours.kernel.shape[1]))
        final = model.get_layer("final_norm")
        weights["transformer.ln_f.weight"] = _np(final.gamma)
        weights["transformer.ln_f.bias"] = _np(weight_or_zeros(final, "beta", final.gamma.shape[0]))
    else:
        weights["model.embed_tokens.weight"] = table
        for i, block in enumerate(blocks):
            p = f"model.layers.{i}."
            attention = block.attention
            kernel = _np(attention.qkv.kernel)  # (C, (H + 2K) * D)
            q_end = attention.heads * attention.head_dim
            k_end = q_end + attention.kv_heads * attention.head_dim
            # torch's Linear stores (out, in): every kernel is transposed.
            weights[p + "self_attn.q_proj.weight"] = kernel[:, :q_end].T
            weights[p + "self_attn.k_proj.weight"] = kernel[:, q_end:k_end].T
            weights[p + "self_attn.v_proj.weight"] = kernel[:, k_end:].T
            weights[p + "self_attn.o_proj.weight"] = _np(attention.out.kernel).T
            mlp_in = _np(block.mlp_in.kernel)  # (C, 2M): silu(gate half) * value half
            weights[p + "mlp.gate_proj.weight"] = mlp_in[:, : block.mlp_dim].T
            weights[p + "mlp.up_proj.weight"] = mlp_in[:, block.mlp_dim :].T
            weights[p + "mlp.down_proj.weight"] = _np(block.mlp_out.kernel).T
            weights[p + "input_layernorm.weight"] = _np(block.attention_norm.scale)
            weights[p + "post_attention_layernorm.weight"] = _np(block.mlp_norm.scale)
        weights["model.norm.weight"] = _np(model.get_layer("final_norm").scale)
    if output is not None:
        weights["lm_head.weight"] = output
    import numpy as np

    return {name: np.ascontiguousarray(value) for name, value in weights.items()}


def hf_config(model, model_config, tokenizer) -> dict:
    """`config.json` for the Transformers class of the run's arch."""
    table, output = _embeddings(model)
    vocab_size, blocks = int(table.shape[0]), _blocks(model, model_config)
    common = {
        "architectures": [HF_ARCHS[model_config.arch]],
        "vocab_size": vocab_size,
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id,
        "tie_word_embeddings": output is None,
        "torch_dtype": "float32",
        "dtype": "float32",
        "use_cache": True,
        "initializer_range": 0.02,
    }
    if model_config.arch == "gpt":
        return {
            "model_type": "gpt2",
            **common,
            "n_positions": model_config.context,
            "n_ctx": model_config.context,
            "n_embd": model_config.dim,
            "n_layer": model_config.layers,
            "n_head": model_config.heads,
            "n_inner": blocks[0].mlp_dim,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": blocks[0].norm_epsilon,
            "resid_pdrop": model_config.dropout,
            "embd_pdrop": model_config.embedding_dropout,
            "attn_pdrop": model_config.attention_dropout,
            "scale_attn_weights": True,
        }
    attention = blocks[0].attention
    return {
        "model_type": "llama",
        **common,
        "hidden_size": model_config.dim,
        "intermediate_size": blocks[0].mlp_dim,
        "num_hidden_layers": model_config.layers,
        "num_attention_heads": attention.heads,
        "num_key_value_heads": attention.kv_heads,
        "head_dim": attention.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": model_config.context,
        "rms_norm_eps": blocks[0].norm_epsilon,
        "rope_theta": float(model_config.rope_base),
        "rope_parameters": {"rope_type": "default", "rope_theta": float(model_config.rope_base)},
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": model_config.attention_dropout,
        "pretraining_tp": 1,
    }


def tokenizer_config(tokenizer, context: int, template: str) -> dict:
    """`tokenizer_config.json`: a `PreTrainedTokenizerFast` with our special tokens and chat template.

    Our tokenizer adds no special tokens to encoded text (training text holds `<eos>` only between
    documents), so neither does this one.
    """
    names = tokenizer.special_names
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": names["bos"],
        "eos_token": names["eos"],
        "pad_token": names["pad"],
        "unk_token": names.get("unk"),
        "add_bos_token": False,
        "add_eos_token": False,
        "model_max_length": context,
        "clean_up_tokenization_spaces": False,
        "chat_template": template,
    }


def generation_config(tokenizer, generate_config) -> dict:
    """`generation_config.json`: the recipe's `[generate]` defaults in Transformers' names."""
    sample = generate_config.temperature > 0 and generate_config.beams == 1
    config = {
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id,
        "max_new_tokens": generate_config.max_tokens,
        "do_sample": sample,
        "num_beams": generate_config.beams,
    }
    if sample:
        config.update(temperature=generate_config.temperature, top_k=generate_config.top_k, top_p=generate_config.top_p)
    return config


def template_summary(template: str) -> str:
    from llmtui.tokenizers.chat import LINES_TEMPLATE

    if template == LINES_TEMPLATE:
        return "one line per turn, as `llmtui chat` writes a conversation (the run has no chat_template.jinja)"
    return "the run's tokenizer/chat_template.jinja"


def write_safetensors(weights: dict, path: Path) -> None:
    """`weights` as one safetensors file with the metadata Transformers expects of PyTorch weights."""
    from safetensors.numpy import save_file

    save_file(weights, str(path), metadata={"format": "pt"})


def transformers_logits(folder: Path, sample_ids, **load_options):
    """Logits of `AutoModelForCausalLM.from_pretrained(folder)` on `sample_ids`, or None without torch and
    transformers (and accelerate, which Transformers' GGUF loader needs)."""
    import importlib.util

    needed = ("torch", "transformers", "accelerate") if "gguf_file" in load_options else ("torch", "transformers")
    if any(importlib.util.find_spec(name) is None for name in needed):
        return None
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **load_options).eval()
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(sample_ids), dtype=torch.long)).logits.numpy()


def cross_framework_atol(reference, atol: float) -> float:
    import numpy as np

    return max(atol, LOGITS_ATOL, CROSS_FRAMEWORK_RTOL * float(np.max(np.abs(reference))))


def export_hf(
    model,
    model_config,
    tokenizer,
    tokenizer_json: Path,
    template: str,
    generate_config,
    out: Path,
    sample_ids,
    reference_logits,
    atol: float = LOGITS_ATOL,
) -> ExportResult:
    """Write the Transformers folder at `out`; load it back in Transformers when torch is installed."""
    problem = hf_problem(model_config)
    if problem:
        raise ExportError(
            f"cannot export a Transformers model: {problem}",
            hint="use --format keras or --format savedmodel, which take any llmtui model",
        )
    files = []

    def write_json(name: str, data: dict) -> None:
        path = out / name
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        files.append(path)

    write_json("config.json", hf_config(model, model_config, tokenizer))
    write_safetensors(hf_state_dict(model, model_config), out / WEIGHTS_FILE)
    files.append(out / WEIGHTS_FILE)
    shutil.copy2(tokenizer_json, out / "tokenizer.json")
    files.append(out / "tokenizer.json")
    write_json("tokenizer_config.json", tokenizer_config(tokenizer, model_config.context, template))
    write_json(
        "special_tokens_map.json",
        {f"{role}_token": name for role, name in tokenizer.special_names.items() if name is not None},
    )
    write_json("generation_config.json", generation_config(tokenizer, generate_config))
    notes = [
        f"{HF_ARCHS[model_config.arch]}, float32 weights in {WEIGHTS_FILE}; tokenizer: "
        "PreTrainedTokenizerFast over this run's tokenizer.json (adds no <bos>/<eos> to text, like llmtui)",
        "chat template (tokenizer_config.json): " + template_summary(template),
    ]
    got = transformers_logits(out, sample_ids)
    diff = None
    if got is None:
        notes.append("not loaded back: install torch and transformers to check it against the run's model")
    else:
        diff = max_difference(
            reference_logits,
            got,
            f"Transformers' {HF_ARCHS[model_config.arch]} loaded back",
            cross_framework_atol(reference_logits, atol),
        )
    return ExportResult(
        format="hf", path=out, files=files, load_code=LOAD_CODE.format(path=out), notes=notes, max_logit_diff=diff
    )
