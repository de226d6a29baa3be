"""Fine-tuning: SFT examples, presets per model family, QLoRA trainer, export, tiny test models."""
