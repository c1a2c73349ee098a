"""A run's stages as objects: what each one is fingerprinted by and what it does (`base`), and those of
training a model from scratch (`pretraining`). Fine-tuning's are in `llmtui.finetune.stages`."""
