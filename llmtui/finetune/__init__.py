"""Fine-tuning a trained run: continue pretraining on a domain corpus, or learn a task (classification,
question answering, translation), by full training, LoRA adapters, or with the lower layers frozen."""
