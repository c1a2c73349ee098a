"""How much of a trained model a fine-tune may change: everything, low-rank adapters (LoRA), or all but the
lower layers.

LoRA uses Keras' own `Dense.enable_lora`: the kernel is frozen and a product A·B of rank r (B starting at
zero) is learned beside it. Keras merges A·B into the kernel when the model is saved, so the saved model is a
plain model of the base architecture.
"""

from __future__ import annotations

from llmtui.errors import RecipeError

LORA_VARIABLES = ("lora_kernel_a", "lora_kernel_b")


def lora_targets(model) -> list:
    """The projections of every transformer block: attention (qkv, out) and MLP (in, out)."""
    from llmtui.models.transformer import DecoderBlock

    targets = []
    for layer in model.layers:
        if isinstance(layer, DecoderBlock):
            targets += [layer.attention.qkv, layer.attention.out, layer.mlp_in, layer.mlp_out]
    return targets


def apply_lora(model, rank: int, alpha: float, arch: str) -> list[str]:
    """Add rank-`rank` adapters to every block projection and freeze every other weight of `model`."""
    targets = lora_targets(model)
    if not targets:
        raise RecipeError(
            f"finetune.method = 'lora' needs a transformer (gpt or llama); this model is {arch}",
            hint="use finetune.method = 'full' or 'freeze'",
        )
    for layer in targets:
        kernel = layer.kernel
        smallest = min(int(kernel.shape[0]), int(kernel.shape[1]))
        if rank > smallest:
            raise RecipeError(
                f"finetune.lora_rank = {rank} is larger than layer {layer.path} ({kernel.shape[0]} × "
                f"{kernel.shape[1]}): a rank-{rank} update of it is no longer low-rank",
                hint=f"use finetune.lora_rank <= {smallest}",
            )
    for layer in targets:
        layer.enable_lora(rank, lora_alpha=alpha or rank)
    for variable in model.weights:
        if not variable.path.endswith(LORA_VARIABLES):
            variable.trainable = False
    return [layer.path for layer in targets]


def freeze_lower_layers(model, count: int, arch: str, layers: int) -> list[str]:
    """Freeze the token and position embeddings and the lowest `count` blocks (or recurrent layers)."""
    if count > layers:
        raise RecipeError(
            f"finetune.freeze_layers = {count} but the base model has {layers} layers",
            hint=f"use at most {layers - 1} to leave something to train, or method = 'lora'",
        )
    prefix = "block" if arch in ("gpt", "llama") else arch
    names = ["token_embedding", "position_embedding"] + [f"{prefix}_{i}" for i in range(count)]
    frozen = []
    for layer in model.layers:
        if layer.name in names:
            layer.trainable = False
            frozen.append(layer.name)
    return frozen


def parameter_counts(model) -> dict[str, int]:
    """Trainable and total parameters (weights only; random-generator states are not parameters)."""
    import math

    def size(variables) -> int:
        return int(sum(math.prod(int(d) for d in v.shape) for v in variables if "seed_generator" not in v.path))

    return {"trainable": size(model.trainable_weights), "total": size(model.weights)}


def adapt_model(model, config, arch: str, layers: int, labels: int, seed: int):
    """The model a fine-tune trains, made from the base's `model`: adapters or frozen layers as `config`
    ([finetune]) says, and a classification head over `labels` classes for that task.

    Returns (model, names of the adapted or frozen layers). The pipeline and the wizard's parameter count
    both build it here.
    """
    from llmtui.finetune.classifier import build_classifier

    adapted: list[str] = []
    if config.method == "lora":
        adapted = apply_lora(model, config.lora_rank, config.lora_alpha, arch)
    elif config.method == "freeze":
        adapted = freeze_lower_layers(model, config.freeze_layers, arch, layers)
    if config.task == "classification":
        model = build_classifier(model, labels, config.pooling, seed)
    return model, adapted


def training_memory_bytes(counts: dict[str, int], bytes_per_value: int = 4) -> int:
    """Weights, plus gradients and Adam's two moments for the trainable ones (activations come on top)."""
    return bytes_per_value * (counts["total"] + 3 * counts["trainable"])
