"""The report's pictures, drawn with matplotlib's Agg backend (no display needed) and returned as PNG bytes."""

from __future__ import annotations

import io


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def training_curves_png(
    train_loss: list[tuple[int, float]], val_loss: list[tuple[int, float]], lr: list[tuple[int, float]]
) -> bytes:
    """Train and validation loss against the step (left) and the learning rate (right)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for points, label, style in ((train_loss, "train", "-"), (val_loss, "validation", "o-")):
        if points:
            steps, values = zip(*points)
            left.plot(steps, values, style, label=label, markersize=4)
    left.set_xlabel("step")
    left.set_ylabel("loss (nats per token)")
    left.set_title("Loss")
    left.grid(alpha=0.3)
    if train_loss or val_loss:
        left.legend()
    if lr:
        steps, values = zip(*lr)
        right.plot(steps, values, color="tab:green")
    right.set_xlabel("step")
    right.set_ylabel("learning rate")
    right.set_title("Learning rate")
    right.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    right.grid(alpha=0.3)
    return _png(fig)


def loss_by_position_png(series: dict[str, list[float]]) -> bytes:
    """Mean loss at each position of the context window, one line per evaluated text."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(7, 3.6))
    for name, values in series.items():
        axis.plot(range(len(values)), values, marker="." if len(values) <= 64 else None, label=name)
    axis.set_xlabel("position t in the window (predicting token t + 1 from t + 1 tokens)")
    axis.set_ylabel("mean loss (nats)")
    axis.set_title("Loss by position")
    axis.grid(alpha=0.3)
    if len(series) > 1:
        axis.legend(fontsize="small")
    return _png(fig)


def confusion_matrix_png(matrix: list[list[int]], labels: list[str]) -> bytes:
    """Counts of (true, predicted) label pairs, rows = true label; each cell is annotated."""
    plt = _pyplot()
    size = max(3.5, 0.6 * len(labels) + 2)
    fig, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title("Confusion matrix")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            axis.text(
                j, i, str(count), ha="center", va="center", color="white" if peak and count > peak / 2 else "black"
            )
    return _png(fig)
