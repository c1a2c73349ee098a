"""Training: the loop, optimizers, schedules, checkpoints and TensorBoard logging."""
